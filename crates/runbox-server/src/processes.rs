//! Background processes of a sandbox: start, look, wait (bounded), stop
//! (its whole tree).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use orchestrator_core::ProcessId;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::extract::{ApiJson, ApiPath};
use crate::model::{Encoding, ProcessRequest, WaitRequest};
use crate::problem::{ApiError, Problem};
use crate::result::RunResult;
use crate::sandboxes::{command_of, exec_result};

/// A started process.
#[derive(Debug, Serialize, ToSchema)]
pub struct Started {
    /// Its id within the sandbox.
    pub pid: String,
}

/// A process as it is now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessView {
    /// Its id.
    pub pid: String,
    /// Still running?
    pub running: bool,
    /// stdout so far (UTF-8, invalid sequences replaced).
    pub stdout: String,
    /// stderr so far.
    pub stderr: String,
    /// How it ended, once it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
}

/// `{"running": true}` of a wait that timed out.
#[derive(Debug, Serialize, ToSchema)]
pub struct StillRunning {
    /// Always true.
    pub running: bool,
}

fn pid_of(pid: &str) -> Result<ProcessId, ApiError> {
    ProcessId::new(pid).map_err(|_| ApiError::not_found(format!("no process {pid}")))
}

/// Start a background process.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/processes", tag = "processes",
    params(("id" = String, Path, description = "The sandbox")),
    request_body = ProcessRequest,
    responses(
        (status = 201, description = "Started", body = Started),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sandbox", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "Unsupported", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn start(
    State(app): State<crate::state::App>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ProcessRequest>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    app.check_open()?;
    let sb = app.sandbox(&who, &id)?;
    let cmd = command_of(&body.argv, &body.shell, &body.env, &body.workdir)?
        .output_limit(app.config.caps.default_output_bytes)
        .build()
        .map_err(ApiError::from)?;
    let pid = sb
        .served
        .orch
        .start_background(&sb.ws, &cmd)
        .await
        .map_err(|e| ApiError::of_command(&e))?;
    Ok((
        StatusCode::CREATED,
        Json(Started {
            pid: pid.as_str().into(),
        }),
    ))
}

/// A background process's output so far and, once it ended, its result.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/processes/{pid}", tag = "processes",
    params(("id" = String, Path, description = "The sandbox"), ("pid" = String, Path, description = "The process")),
    responses(
        (status = 200, description = "The process", body = ProcessView),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sandbox or process", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(app): State<crate::state::App>,
    Caller(who): Caller,
    ApiPath((id, pid)): ApiPath<(String, String)>,
) -> Result<Json<ProcessView>, ApiError> {
    let sb = app.sandbox(&who, &id)?;
    let p = pid_of(&pid)?;
    let snap = sb.served.orch.process_status(&sb.ws, &p).await?;
    let result = snap.status.as_ref().map(|status| {
        let out = orchestrator_core::ExecOutput {
            status: status.clone(),
            stdout: snap.stdout.clone(),
            stderr: snap.stderr.clone(),
            stdout_truncated: snap.stdout_truncated,
            stderr_truncated: snap.stderr_truncated,
            wall_time: Duration::ZERO,
            cpu_time: None,
            peak_memory: None,
        };
        let mut r = exec_result(&sb, &out, Encoding::Text);
        r.wall_time_ms = None;
        r
    });
    Ok(Json(ProcessView {
        pid,
        running: snap.status.is_none(),
        stdout: String::from_utf8_lossy(&snap.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&snap.stderr).into_owned(),
        result,
    }))
}

/// Wait for a background process, at most `timeout_ms`.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/processes/{pid}/wait", tag = "processes",
    params(("id" = String, Path, description = "The sandbox"), ("pid" = String, Path, description = "The process")),
    request_body = WaitRequest,
    responses(
        (status = 200, description = "It ended", body = RunResult),
        (status = 202, description = "Still running", body = StillRunning),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sandbox or process", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn wait(
    State(app): State<crate::state::App>,
    Caller(who): Caller,
    ApiPath((id, pid)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<WaitRequest>,
) -> Result<Response, ApiError> {
    let sb = app.sandbox(&who, &id)?;
    let p = pid_of(&pid)?;
    let ms = body.timeout_ms.unwrap_or(0);
    if ms > app.config.caps.timeout_ms {
        return Err(ApiError::invalid(format!(
            "timeout_ms = {ms} is above this server's cap of {}",
            app.config.caps.timeout_ms
        )));
    }
    let ended = sb
        .served
        .orch
        .wait_process(&sb.ws, &p, Some(Duration::from_millis(ms)))
        .await?;
    Ok(match ended {
        Some(out) => Json(exec_result(&sb, &out, Encoding::Text)).into_response(),
        None => (StatusCode::ACCEPTED, Json(StillRunning { running: true })).into_response(),
    })
}

/// Stop a background process and its whole tree.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/processes/{pid}", tag = "processes",
    params(("id" = String, Path, description = "The sandbox"), ("pid" = String, Path, description = "The process")),
    responses(
        (status = 204, description = "Stopped"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sandbox or process", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn stop(
    State(app): State<crate::state::App>,
    Caller(who): Caller,
    ApiPath((id, pid)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let sb = app.sandbox(&who, &id)?;
    let p = pid_of(&pid)?;
    // Known first: stopping an id the sandbox never had is not found.
    sb.served.orch.process_status(&sb.ws, &p).await?;
    sb.served.orch.stop(&sb.ws, Some(&p)).await?;
    Ok(StatusCode::NO_CONTENT)
}

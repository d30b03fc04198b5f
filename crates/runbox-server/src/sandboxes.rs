//! Sandboxes, the trait one to one: create (a recorded execution started
//! without a command), list, show, delete, extend the TTL, and exec a
//! command in one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use execution_service::{
    BackendPreference, CompleteOptions, ExecutionRecord, ExecutionRequest, StartOptions,
};
use orchestrator_core::{CommandSpec, LimitKind, ResourceLimits};
use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::auth::{Caller, Identity};
use crate::events::{self, OnDrop};
use crate::extract::{ApiJson, ApiPath};
use crate::input;
use crate::model::{ExecRequest, SandboxRequest, TtlRequest};
use crate::problem::{ApiError, Problem};
use crate::result::{limit_value, IsolationResult, LimitResult, RunResult};
use crate::state::{lock, rfc3339, App, Sandbox, SandboxView, KIND_LABEL, OWNER_LABEL};

/// `GET /v1/sandboxes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxList {
    /// The caller's live sandboxes.
    pub sandboxes: Vec<SandboxView>,
}

/// `POST /v1/sandboxes/{id}/ttl`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Expiry {
    /// The new expiry (RFC 3339, UTC).
    pub expires_at: String,
}

fn ttl(asked: Option<u64>, app: &App) -> Result<Duration, ApiError> {
    let max = app.config.max_sandbox_ttl;
    match asked {
        None => Ok(app.config.sandbox_ttl.min(max)),
        Some(0) => Err(ApiError::invalid("ttl_s must be at least 1")),
        Some(s) if Duration::from_secs(s) > max => Err(ApiError::invalid(format!(
            "ttl_s = {s} is above this server's maximum of {} s",
            max.as_secs()
        ))),
        Some(s) => Ok(Duration::from_secs(s)),
    }
}

/// How each limit asked for a sandbox is enforced, from its record.
fn limits_of(asked: &ResourceLimits, rec: &ExecutionRecord) -> BTreeMap<String, LimitResult> {
    asked
        .requested()
        .into_iter()
        .map(|(kind, value)| {
            let s = rec.limits_applied.iter().find(|l| l.kind == kind.name());
            (
                kind.name().to_string(),
                LimitResult {
                    requested: limit_value(&value),
                    enforced_by: s.and_then(|s| s.enforced_by.clone()),
                    note: s.map_or_else(
                        || Some("the backend did not report this limit".into()),
                        |s| s.note.clone(),
                    ),
                },
            )
        })
        .collect()
}

/// Removes a sandbox: out of the table, torn down, its record completed.
/// A teardown that fails puts it back, for a retry or the reaper.
pub async fn remove(app: &App, sb: &Arc<Sandbox>) -> Result<(), ApiError> {
    lock(&app.sandboxes).remove(sb.id.as_str());
    if let Err(e) = sb
        .served
        .service
        .complete(&sb.id, CompleteOptions::default())
        .await
    {
        tracing::error!(sandbox = %sb.id, error = %e, "sandbox teardown failed");
        lock(&app.sandboxes).insert(sb.id.to_string(), sb.clone());
        return Err(ApiError::from(&e));
    }
    Ok(())
}

/// A place among a token's sandboxes, held while one is being made (so
/// concurrent creates cannot pass the cap together).
struct Reservation(App, Identity);

impl Reservation {
    fn take(app: &App, who: &Identity) -> Result<Self, ApiError> {
        let table = lock(&app.sandboxes);
        let mut making = lock(&app.making);
        let owned = table.values().filter(|s| &s.owner == who).count();
        let pending = making.get(who).copied().unwrap_or(0);
        if owned + pending >= app.config.max_sandboxes_per_token {
            app.metrics.rejected("too_many_sandboxes");
            return Err(ApiError::too_many_sandboxes(format!(
                "this token holds {owned} sandboxes (and is making {pending}), the most it may; delete one first"
            )));
        }
        *making.entry(who.clone()).or_default() += 1;
        Ok(Self(app.clone(), who.clone()))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut making = lock(&self.0.making);
        if let Some(n) = making.get_mut(&self.1) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                making.remove(&self.1);
            }
        }
    }
}

async fn make(app: App, who: Identity, body: SandboxRequest) -> Result<Arc<Sandbox>, ApiError> {
    let ttl = ttl(body.ttl_s, &app)?;
    let _place = Reservation::take(&app, &who)?;
    let limits = input::limits(
        body.limits.as_ref(),
        body.strict.unwrap_or(false),
        &app.config.caps,
        false,
    )?;
    let served = app
        .backends
        .for_request(
            &app.config.default_backend,
            &body.backend,
            body.isolation,
            body.network,
            &body.image,
        )
        .await?;
    let backend = served.orch.name().to_string();
    let mut req = ExecutionRequest::sandbox_only()
        .limits(limits.clone())
        .backend(BackendPreference::Named(backend.clone()))
        .label(OWNER_LABEL, who.0.clone())
        .label(KIND_LABEL, "sandbox");
    if let Some(img) = &body.image {
        req = req.image(img.clone());
    }
    let id = served.service.submit(req).await?;
    let ws = served.service.start(&id, StartOptions::default()).await?;
    let rec = served.service.get(&id).await?;
    let isolation = match served.orch.isolation(&ws).await {
        Ok(r) => IsolationResult::new(&r),
        Err(e) => {
            tracing::warn!(sandbox = %id, error = %e, "no isolation report");
            IsolationResult::new(&orchestrator_core::IsolationReport::unreported(&backend))
        }
    };
    let sb = Arc::new(Sandbox {
        id: id.clone(),
        owner: who,
        served,
        backend,
        ws,
        expires: Mutex::new(SystemTime::now() + ttl),
        limits: limits_of(&limits, &rec),
        isolation,
    });
    lock(&app.sandboxes).insert(id.to_string(), sb.clone());
    app.metrics.sandbox_created();
    if app.check_open().is_err() {
        // Made while the server shut down: the drain may have passed.
        let _ = remove(&app, &sb).await;
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    Ok(sb)
}

/// Create a sandbox.
#[utoipa::path(post, path = "/v1/sandboxes", tag = "sandboxes", request_body = SandboxRequest,
    responses(
        (status = 201, description = "Created", body = SandboxView),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A strict limit cannot be enforced", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sandboxes", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "Unsupported", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<App>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<SandboxRequest>,
) -> Result<(StatusCode, Json<SandboxView>), ApiError> {
    app.check_open()?;
    // Made on a task of its own: a caller that goes away mid-way does not
    // cut the creation short, and what it made is removed at once.
    let abandoned = Arc::new(AtomicBool::new(false));
    let flag = abandoned.clone();
    let task_app = app.clone();
    let task = app.tasks.spawn(async move {
        let made = make(task_app.clone(), who, body).await;
        if let Ok(sb) = &made {
            if flag.load(Ordering::SeqCst) {
                let _ = remove(&task_app, sb).await;
            }
        }
        made
    });
    let mut guard = OnDrop::new(move || abandoned.store(true, Ordering::SeqCst));
    let made = task
        .await
        .map_err(|e| ApiError::internal(format!("sandbox creation failed: {e}")))?;
    guard.disarm();
    let sb = made?;
    Ok((StatusCode::CREATED, Json(sb.view())))
}

/// The caller's live sandboxes.
#[utoipa::path(get, path = "/v1/sandboxes", tag = "sandboxes",
    responses(
        (status = 200, description = "The sandboxes", body = SandboxList),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list(State(app): State<App>, Caller(who): Caller) -> Json<SandboxList> {
    let mut v: Vec<SandboxView> = lock(&app.sandboxes)
        .values()
        .filter(|s| s.owner == who)
        .map(|s| s.view())
        .collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    Json(SandboxList { sandboxes: v })
}

/// One sandbox.
#[utoipa::path(get, path = "/v1/sandboxes/{id}", tag = "sandboxes",
    params(("id" = String, Path, description = "The sandbox")),
    responses(
        (status = 200, description = "The sandbox", body = SandboxView),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sandbox", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(app): State<App>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SandboxView>, ApiError> {
    Ok(Json(app.sandbox(&who, &id)?.view()))
}

/// Remove a sandbox (idempotent: one already removed is 204 too).
#[utoipa::path(delete, path = "/v1/sandboxes/{id}", tag = "sandboxes",
    params(("id" = String, Path, description = "The sandbox")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sandbox", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(app): State<App>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if let Ok(sb) = app.sandbox(&who, &id) {
        remove(&app, &sb).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    if app.owned_record(&who, &id, "sandbox").await?.is_some() {
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(ApiError::not_found(format!("no sandbox {id}")))
}

/// Set a sandbox's TTL from now.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/ttl", tag = "sandboxes",
    params(("id" = String, Path, description = "The sandbox")),
    request_body = TtlRequest,
    responses(
        (status = 200, description = "The new expiry", body = Expiry),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sandbox", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn set_ttl(
    State(app): State<App>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TtlRequest>,
) -> Result<Json<Expiry>, ApiError> {
    let sb = app.sandbox(&who, &id)?;
    let at = SystemTime::now() + ttl(Some(body.ttl_s), &app)?;
    *lock(&sb.expires) = at;
    Ok(Json(Expiry {
        expires_at: rfc3339(at),
    }))
}

/// The command of an exec or a background process.
pub fn command_of(
    argv: &Option<Vec<String>>,
    shell: &Option<String>,
    env: &Option<BTreeMap<String, String>>,
    workdir: &Option<String>,
) -> Result<orchestrator_core::CommandSpecBuilder, ApiError> {
    let mut cmd = CommandSpec::new(input::command(argv, shell)?);
    for (k, v) in env.iter().flatten() {
        cmd = cmd.env(k.clone(), v.clone());
    }
    if let Some(w) = workdir {
        input::sandbox_path(w)?;
        cmd = cmd.workdir(w.clone());
    }
    Ok(cmd)
}

/// The result object of a command in sandbox `sb`.
pub(crate) fn exec_result(
    sb: &Sandbox,
    out: &orchestrator_core::ExecOutput,
    enc: crate::model::Encoding,
) -> RunResult {
    RunResult {
        backend: Some(sb.backend.clone()),
        workspace_id: Some(sb.ws.as_str().into()),
        execution_id: Some(sb.id.to_string()),
        limits: sb.limits.clone(),
        isolation: Some(sb.isolation.clone()),
        ..RunResult::of_output(out, enc)
    }
}

/// Run a command in a sandbox to its end.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/exec", tag = "sandboxes",
    params(("id" = String, Path, description = "The sandbox")),
    request_body = ExecRequest,
    responses(
        (status = 200, description = "The result", body = RunResult),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sandbox", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Queue full or unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn exec(
    State(app): State<App>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ExecRequest>,
) -> Result<Response, ApiError> {
    app.check_open()?;
    let sb = app.sandbox(&who, &id)?;
    let caps = &app.config.caps;
    let mut cmd = command_of(&body.argv, &body.shell, &body.env, &body.workdir)?;
    if body.timeout_ms.is_some() || !sb.limits.contains_key(LimitKind::WallTimeout.name()) {
        cmd = cmd.timeout(input::exec_timeout(body.timeout_ms, caps)?);
    }
    if !sb.limits.contains_key(LimitKind::OutputBytes.name()) {
        cmd = cmd.output_limit(caps.default_output_bytes);
    }
    if let Some(s) = &body.stdin {
        cmd = cmd.stdin(input::content(s, "stdin")?);
    }
    let enc = body.output_encoding.unwrap_or_default();
    let ticket = app
        .admission
        .enter()
        .inspect_err(|_| app.metrics.rejected("queue_full"))?;
    let sse = events::wanted(&headers);
    let (tx, rx) = mpsc::unbounded_channel();
    if sse {
        cmd = cmd.output(events::sink(tx));
    }
    let cmd = cmd.build().map_err(ApiError::from)?;
    let task_sb = sb.clone();
    let task = app.tasks.spawn(async move {
        let _slot = ticket
            .slot()
            .await
            .ok_or_else(|| ApiError::unavailable("the server is shutting down"))?;
        let out = task_sb
            .served
            .orch
            .run_command(&task_sb.ws, &cmd)
            .await
            .map_err(|e| ApiError::of_command(&e))?;
        Ok(exec_result(&task_sb, &out, enc))
    });
    let abort = task.abort_handle();
    let mut guard = OnDrop::new(move || abort.abort());
    let done = async move {
        task.await.unwrap_or_else(|e| {
            Err(ApiError::cancelled(format!(
                "the command was cut short: {e}"
            )))
        })
    };
    if sse {
        return Ok(events::response(rx, done, guard));
    }
    let r = done.await;
    guard.disarm();
    r.map(|r| Json(r).into_response())
}

//! One-shot runs: `POST /v1/runs` (wait, accepted, or events), their state,
//! their list and their cancellation. A waited run is driven in its
//! handler, the others on a task; a caller that waits and goes away
//! cancels it, and its sandbox goes with it.
//!
//! `prepare.rs` checks and stages a request; `drive.rs` runs it to its end.

mod drive;
mod prepare;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use execution_service::{ExecutionId, ListFilter};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use utoipa::IntoParams;

use crate::admission::Ticket;
use crate::auth::{Caller, Identity};
use crate::events::{self, OnDrop};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::model::RunRequest;
use crate::problem::{ApiError, Problem};
use crate::result::{RunList, RunPhase, RunResult, RunView};
use crate::state::{is_owned, lock, App, RunCell, RunStatus};

use drive::{cancel_guard, drive, outcome, submit};
use prepare::{prepare, Prepared};

/// `?wait=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RunQuery {
    /// `false`: answer 202 at once and run in the background (`true`,
    /// `false`, `1`, `0`, any case).
    #[serde(default, deserialize_with = "lenient_bool")]
    #[param(value_type = Option<bool>)]
    pub wait: Option<bool>,
}

/// A query flag as careless clients send it: `true`/`false` in any case
/// (Python's `False`), or `1`/`0`.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let s = String::deserialize(d)?;
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(Some(true)),
        "false" | "0" | "no" => Ok(Some(false)),
        _ => Err(serde::de::Error::custom(format!(
            "wait must be true or false, not {s:?}"
        ))),
    }
}

/// `?limit=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// How many (default 50, at most 1000).
    pub limit: Option<usize>,
}

/// What `POST /v1/runs?wait=false` answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The run.
    pub execution_id: String,
    /// Queued or running.
    pub state: RunPhase,
}

/// Run a command in a fresh sandbox.
#[utoipa::path(post, path = "/v1/runs", tag = "runs", params(RunQuery),
    request_body = RunRequest,
    responses(
        (status = 200, description = "The result", body = RunResult),
        (status = 202, description = "Accepted (`wait=false`)", body = Accepted),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Cancelled while waiting", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A strict limit cannot be enforced", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "Unsupported", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable or queue full", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<App>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<RunQuery>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RunRequest>,
) -> Result<Response, ApiError> {
    app.check_open()?;
    let prepared = prepare(&app, &who, &body).await?;
    let ticket = app
        .admission
        .enter()
        .inspect_err(|_| app.metrics.rejected("queue_full"))?;
    let started = Instant::now();
    let Prepared {
        request,
        served,
        limits,
        collect,
        scratch,
        encoding,
    } = prepared;
    let id = submit(&app, &served, request).await?;
    let ready = matches!(ticket, Ticket::Ready(_));
    let (tx, _) = watch::channel(RunStatus {
        phase: if ready {
            RunPhase::Running
        } else {
            RunPhase::Queued
        },
        result: None,
        error: None,
        failure: None,
    });
    let cell = Arc::new(RunCell {
        id: id.clone(),
        owner: who,
        status: tx,
        served,
        task: Mutex::new(None),
        joined: Mutex::new(None),
        teardown: Mutex::new(None),
    });
    lock(&app.runs).insert(cell.clone());
    let sse = events::wanted(&headers) && q.wait != Some(false);
    let (chunks_tx, chunks_rx) = mpsc::unbounded_channel();
    let sink = sse.then(|| events::sink(chunks_tx));
    let rx = cell.status.subscribe();
    let guard = cancel_guard(&app, &cell, started);
    let driving = drive(
        app.clone(),
        cell.clone(),
        ticket,
        sink,
        (limits, collect, scratch, encoding),
        started,
        guard,
    );
    if q.wait != Some(false) && !sse {
        // The caller waits: the run is driven right here, so a caller that
        // goes away drops it (its guard cancels the run), and a cancel
        // from another call ends it through the record.
        driving.await;
        return outcome(rx).await.map(|r| Json(r).into_response());
    }
    let task = app.tasks.spawn(driving);
    *lock(&cell.task) = Some(task.abort_handle());
    let abort = task.abort_handle();
    *lock(&cell.joined) = Some(task);

    if q.wait == Some(false) {
        let body = Accepted {
            execution_id: id.to_string(),
            state: cell.status.borrow().phase,
        };
        return Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, format!("/v1/runs/{id}"))],
            Json(body),
        )
            .into_response());
    }
    // Events: a client that closes the stream cancels the run.
    let guard = OnDrop::new(move || abort.abort());
    Ok(events::response(chunks_rx, outcome(rx), guard))
}

async fn view_of(app: &App, who: &Identity, id: &str) -> Result<RunView, ApiError> {
    if let Some(c) = lock(&app.runs).get(id).filter(|c| &c.owner == who) {
        return Ok(c.view());
    }
    let rec = app
        .owned_record(who, id, "run")
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    Ok(RunView::of_record(&rec))
}

/// A run's state and, once it has one, its result.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "The run's execution id")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(app): State<App>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunView>, ApiError> {
    view_of(&app, &who, &id).await.map(Json)
}

/// The caller's runs, newest first.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(ListQuery),
    responses(
        (status = 200, description = "The runs", body = RunList),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<App>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if limit > 1000 {
        return Err(ApiError::invalid("limit is at most 1000"));
    }
    let all = app
        .store
        .list(&ListFilter::all())
        .await
        .map_err(|e| ApiError::internal(format!("execution store: {e}")))?;
    let mut runs = Vec::new();
    for rec in all
        .iter()
        .rev()
        .filter(|r| is_owned(r, &who, "run"))
        .take(limit)
    {
        let live = lock(&app.runs).get(rec.id.as_str());
        runs.push(match live {
            Some(c) => c.view(),
            None => RunView::of_record(rec),
        });
    }
    Ok(Json(RunList { runs }))
}

/// Cancels a run: a queued one never starts, a running one has its sandbox
/// torn down. A run that already ended is shown as it ended.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "The run's execution id")),
    responses(
        (status = 200, description = "The run, cancelled (or as it ended)", body = RunView),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn cancel(
    State(app): State<App>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunView>, ApiError> {
    let cell = lock(&app.runs).get(&id).filter(|c| c.owner == who);
    if let Some(cell) = cell {
        if !cell.status.borrow().phase.is_terminal() {
            if let Some(t) = lock(&cell.task).as_ref() {
                t.abort();
            }
            let joined = lock(&cell.joined).take();
            let svc = cell.served.service.clone();
            let eid: ExecutionId = cell.id.clone();
            let _ = tokio::time::timeout(Duration::from_secs(15), async {
                // Gone for sure: its drop guards have spawned their
                // teardowns, which the waits below include.
                if let Some(j) = joined {
                    let _ = j.await;
                }
                let teardown = lock(&cell.teardown).take();
                if let Some(t) = teardown {
                    let _ = t.await;
                }
                let _ = svc.cancel(&eid).await;
                svc.wait_for_cleanups().await;
            })
            .await;
            cell.finish(RunPhase::Cancelled, None, Some("cancelled".into()));
        }
        return Ok(Json(cell.view()));
    }
    view_of(&app, &who, &id).await.map(Json)
}

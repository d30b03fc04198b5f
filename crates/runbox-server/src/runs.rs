//! One-shot runs: `POST /v1/runs` (wait, accepted, or events), their state,
//! their list and their cancellation. Each run is a task of its own; a
//! caller that waits and goes away cancels it, and its sandbox goes with it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use execution_service::{
    BackendPreference, ExecutionId, ExecutionRequest, ListFilter, ServiceError,
};
use orchestrator_core::ResourceLimits;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use utoipa::IntoParams;

use crate::admission::Ticket;
use crate::auth::{Caller, Identity};
use crate::backends::{BackendKey, Served};
use crate::collect::{collect, Collect};
use crate::events::{self, OnDrop};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::input;
use crate::model::{Encoding, RunRequest};
use crate::problem::{ApiError, Problem};
use crate::result::{RunList, RunPhase, RunResult, RunView};
use crate::state::{is_owned, lock, App, RunCell, RunStatus, KIND_LABEL, OWNER_LABEL};

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

/// A run made ready to submit.
struct Prepared {
    request: ExecutionRequest,
    served: Served,
    limits: ResourceLimits,
    collect: Vec<Collect>,
    scratch: Option<tempfile::TempDir>,
    encoding: Encoding,
}

/// The sandbox of a request: which backend instance, checked for images.
pub async fn backend_for(
    app: &App,
    backend: &Option<String>,
    isolation: Option<crate::model::Isolation>,
    network: Option<crate::model::Network>,
    image: &Option<String>,
) -> Result<Served, ApiError> {
    let name = backend
        .clone()
        .unwrap_or_else(|| app.config.default_backend.clone());
    let key = BackendKey {
        name: name.clone(),
        isolation: isolation.unwrap_or_default(),
        network,
    };
    if key.isolation == crate::model::Isolation::None
        && network == Some(crate::model::Network::None)
    {
        return Err(ApiError::invalid(
            "network \"none\" needs isolation: a sandbox without isolation has the host's network",
        ));
    }
    let served = app.backends.get(&key).await?;
    if let Some(img) = image {
        if img.trim().is_empty() {
            return Err(ApiError::invalid("`image` is empty"));
        }
        if !served.orch.capabilities().images {
            return Err(ApiError::invalid(format!(
                "the {name} backend does not use images; leave `image` out or pick a backend that runs them"
            )));
        }
    }
    Ok(served)
}

async fn prepare(app: &App, who: &Identity, body: &RunRequest) -> Result<Prepared, ApiError> {
    let argv = input::command(&body.argv, &body.shell)?;
    let caps = &app.config.caps;
    let limits = input::limits(
        body.limits.as_ref(),
        body.strict.unwrap_or(false),
        caps,
        true,
    )?;
    let files = body.files.as_deref().unwrap_or_default();
    let collect_paths = body.collect.as_deref().unwrap_or_default();
    if files.len() > caps.files || collect_paths.len() > caps.files {
        return Err(ApiError::invalid(format!(
            "at most {} entries in `files` and in `collect`",
            caps.files
        )));
    }
    let served = backend_for(
        app,
        &body.backend,
        body.isolation,
        body.network,
        &body.image,
    )
    .await?;
    // Only a run with files to stage pays for a scratch directory.
    let scratch = if files.is_empty() && collect_paths.is_empty() {
        None
    } else {
        Some(
            tempfile::Builder::new()
                .prefix("run-")
                .tempdir_in(&app.scratch)
                .map_err(|e| ApiError::internal(format!("cannot stage the run's files: {e}")))?,
        )
    };
    let staged = |name: String| {
        scratch
            .as_ref()
            .map(|d| d.path().join(name))
            .unwrap_or_default()
    };
    let mut req = ExecutionRequest::new(argv)
        .limits(limits.clone())
        .backend(BackendPreference::Named(served.orch.name().to_string()))
        .label(OWNER_LABEL, who.0.clone())
        .label(KIND_LABEL, "run");
    for (k, v) in body.env.iter().flatten() {
        req = req.env(k.clone(), v.clone());
    }
    if let Some(w) = &body.workdir {
        input::sandbox_path(w)?;
        req = req.workdir(w.clone());
    }
    if let Some(img) = &body.image {
        req = req.image(img.clone());
    }
    if let Some(s) = &body.stdin {
        req = req.stdin(input::content(s, "stdin")?);
    }
    for (i, f) in files.iter().enumerate() {
        input::sandbox_path(&f.path)?;
        let bytes = input::bytes(&f.text, &f.base64, &format!("files[{i}]"))?;
        let host = staged(format!("in-{i}"));
        tokio::fs::write(&host, bytes)
            .await
            .map_err(|e| ApiError::internal(format!("cannot stage files[{i}]: {e}")))?;
        req = req.file_in(host, f.path.clone());
    }
    let mut collect = Vec::new();
    for (i, p) in collect_paths.iter().enumerate() {
        input::sandbox_path(p)?;
        let host = staged(format!("out-{i}"));
        req = req.file_out(p.clone(), host.clone());
        collect.push(Collect {
            path: p.clone(),
            host,
        });
    }
    req.validate().map_err(ApiError::from)?;
    Ok(Prepared {
        request: req,
        served,
        limits,
        collect,
        scratch,
        encoding: body.output_encoding.unwrap_or_default(),
    })
}

/// Ends an aborted run: the record is cancelled (its sandbox torn down).
fn cancel_in_background(app: &App, cell: &Arc<RunCell>, started: Instant) {
    if cell.finish(RunPhase::Cancelled, None, Some("cancelled".into())) {
        app.metrics.run_ended("cancelled", started.elapsed());
        lock(&app.runs).ended(&cell.id);
    }
    let svc = cell.served.service.clone();
    let id = cell.id.clone();
    let task = app.tasks.spawn(async move {
        if let Err(e) = svc.cancel(&id).await {
            if !matches!(e, ServiceError::InvalidState { .. }) {
                tracing::warn!(execution = %id, error = %e, "cancel failed");
            }
        }
        svc.wait_for_cleanups().await;
    });
    *lock(&cell.teardown) = Some(task);
}

/// The guard of a run: if the future driving it is dropped before the end
/// (even before its first poll), the run is cancelled.
fn cancel_guard(app: &App, cell: &Arc<RunCell>, started: Instant) -> OnDrop {
    let (app, cell) = (app.clone(), cell.clone());
    OnDrop::new(move || cancel_in_background(&app, &cell, started))
}

/// Ends a run with the service's outcome: collects its files, finishes its
/// cell, counts it. Runs on a task of its own, so a caller that goes away
/// at this point cannot leave the run half-ended.
async fn conclude(
    app: App,
    cell: Arc<RunCell>,
    outcome: Result<execution_service::ExecutionResult, ServiceError>,
    prepared: (
        ResourceLimits,
        Vec<Collect>,
        Option<tempfile::TempDir>,
        Encoding,
    ),
    started: Instant,
) {
    let (limits, to_collect, scratch, enc) = prepared;
    let status = match outcome {
        Ok(r) => {
            let mut result = RunResult::of_execution(&limits, &r, enc);
            result.files = Some(if to_collect.is_empty() {
                Default::default()
            } else {
                collect(
                    &to_collect,
                    &r.copy_out_errors,
                    app.config.caps.collect_bytes,
                )
                .await
            });
            let status = result.status.clone();
            cell.finish(RunPhase::Completed, Some(Arc::new(result)), None);
            status
        }
        Err(e) => {
            let phase = if matches!(e, ServiceError::Cancelled(_)) {
                RunPhase::Cancelled
            } else {
                RunPhase::Failed
            };
            let api = ApiError::from(&e);
            cell.status.send_if_modified(|s| {
                if s.phase.is_terminal() {
                    return false;
                }
                *s = RunStatus {
                    phase,
                    result: None,
                    error: Some(api.detail.clone()),
                    failure: Some(api.clone()),
                };
                true
            });
            if phase == RunPhase::Cancelled {
                "cancelled"
            } else {
                "failed"
            }
            .to_string()
        }
    };
    app.metrics.run_ended(&status, started.elapsed());
    lock(&app.runs).ended(&cell.id);
    drop(scratch);
}

async fn drive(
    app: App,
    cell: Arc<RunCell>,
    ticket: Ticket,
    sink: Option<orchestrator_core::OutputSink>,
    prepared: (
        ResourceLimits,
        Vec<Collect>,
        Option<tempfile::TempDir>,
        Encoding,
    ),
    started: Instant,
    mut guard: OnDrop,
) {
    let mut ended = cell.status.subscribe();
    let slot = tokio::select! {
        slot = ticket.slot() => slot,
        // Cancelled while it waited (a run driven inline has no task to
        // abort).
        _ = ended.wait_for(|s| s.phase.is_terminal()) => {
            guard.disarm();
            lock(&app.runs).ended(&cell.id);
            return;
        }
    };
    let Some(_slot) = slot else {
        // Shutting down before it got a slot.
        guard.disarm();
        cancel_in_background(&app, &cell, started);
        return;
    };
    cell.status.send_if_modified(|s| {
        let queued = s.phase == RunPhase::Queued;
        if queued {
            s.phase = RunPhase::Running;
        }
        queued
    });
    let outcome = cell.served.service.execute_submitted(&cell.id, sink).await;
    guard.disarm();
    let ending = app.tasks.spawn(conclude(
        app.clone(),
        cell.clone(),
        outcome,
        prepared,
        started,
    ));
    let _ = ending.await;
}

/// Records the run. On a task of its own: a caller that goes away while
/// the record is written must not leave it pending forever, so whichever
/// of the two comes second, the record or the caller's departure, cancels
/// it.
async fn submit(
    app: &App,
    served: &Served,
    request: ExecutionRequest,
) -> Result<ExecutionId, ApiError> {
    #[derive(Default)]
    struct Handover {
        gone: bool,
        id: Option<ExecutionId>,
    }
    let shared = Arc::new(Mutex::new(Handover::default()));
    let svc = served.service.clone();
    let (task_shared, task_svc) = (shared.clone(), svc.clone());
    let task = app.tasks.spawn(async move {
        let id = task_svc.submit(request).await?;
        let gone = {
            let mut h = lock(&task_shared);
            h.id = Some(id.clone());
            h.gone
        };
        if gone {
            let _ = task_svc.cancel(&id).await;
        }
        Ok::<_, ServiceError>(id)
    });
    let guard_shared = shared.clone();
    let tasks = app.tasks.clone();
    let mut guard = OnDrop::new(move || {
        let id = {
            let mut h = lock(&guard_shared);
            h.gone = true;
            h.id.clone()
        };
        if let Some(id) = id {
            tasks.spawn(async move {
                let _ = svc.cancel(&id).await;
            });
        }
    });
    let id = task
        .await
        .map_err(|e| ApiError::internal(format!("recording the run failed: {e}")))??;
    guard.disarm();
    Ok(id)
}

/// Waits for the run's end and answers as a waiting caller gets it.
async fn outcome(mut rx: watch::Receiver<RunStatus>) -> Result<RunResult, ApiError> {
    let end = rx
        .wait_for(|s| s.phase.is_terminal())
        .await
        .map(|s| s.clone())
        .map_err(|_| ApiError::internal("the run ended without a result"))?;
    match (end.phase, end.result, end.failure) {
        (RunPhase::Completed, Some(r), _) => Ok((*r).clone()),
        (_, _, Some(f)) => Err(f),
        (phase, _, _) => Err(ApiError::cancelled(format!(
            "the run was {}",
            if phase == RunPhase::Cancelled {
                "cancelled"
            } else {
                "not completed"
            }
        ))),
    }
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
    Ok(RunView {
        execution_id: rec.id.to_string(),
        state: RunPhase::of(rec.state),
        result: RunResult::of_record(&rec),
        error: rec.error.clone(),
    })
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
            None => RunView {
                execution_id: rec.id.to_string(),
                state: RunPhase::of(rec.state),
                result: RunResult::of_record(rec),
                error: rec.error.clone(),
            },
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

//! A run's life after its request is checked: recorded (on a task, so a
//! caller that leaves cannot strand the record), waiting for a slot,
//! executed, concluded (files collected, cell finished, counted), or
//! cancelled when whatever drives it is dropped.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use execution_service::{ExecutionId, ExecutionRequest, ServiceError};
use orchestrator_core::ResourceLimits;
use tokio::sync::watch;

use crate::admission::Ticket;
use crate::backends::Served;
use crate::collect::{collect, Collect};
use crate::events::OnDrop;
use crate::model::Encoding;
use crate::problem::ApiError;
use crate::result::{RunPhase, RunResult};
use crate::state::{lock, App, RunCell, RunStatus};

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
pub(super) fn cancel_guard(app: &App, cell: &Arc<RunCell>, started: Instant) -> OnDrop {
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

pub(super) async fn drive(
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
pub(super) async fn submit(
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
pub(super) async fn outcome(mut rx: watch::Receiver<RunStatus>) -> Result<RunResult, ApiError> {
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

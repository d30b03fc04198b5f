//! [`ExecutionService::complete`] and [`ExecutionService::cancel`]: tearing
//! a sandbox down and ending its record.

use std::sync::Arc;

use orchestrator_core::Orchestrator;

use super::routing::Backend;
use tracing::Instrument;

use crate::error::ServiceError;
use crate::record::{now_ms, ExecutionId, ExecutionRecord, ExecutionState, ResultSummary};
use crate::store::{ExecutionStore, StoreError};

use super::{transition, ExecutionService, MAX_CAS_RETRIES};

/// Options of [`ExecutionService::complete`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompleteOptions {
    /// What the caller believes holds the sandbox. `None`: whatever the
    /// record says. `Some(b)` that contradicts the record is
    /// [`ServiceError::BackendMismatch`] and nothing is torn down.
    pub use_docker: Option<bool>,
}

impl ExecutionService {
    /// Tears down a running execution's sandbox on the backend its record
    /// names and marks it completed (with the background command's result
    /// when it has ended). Idempotent: completing an ended execution returns
    /// its record. A `use_docker` contradicting the record is
    /// [`ServiceError::BackendMismatch`]; a teardown failure is an error and
    /// leaves the record running, so the call can be retried.
    pub async fn complete(
        &self,
        id: &ExecutionId,
        opts: CompleteOptions,
    ) -> Result<ExecutionRecord, ServiceError> {
        let span = tracing::info_span!("complete", execution = %id);
        async {
            let rec = self.get(id).await?;
            if let (Some(requested), Some(recorded)) = (opts.use_docker, &rec.backend) {
                if requested != rec.used_docker() {
                    return Err(ServiceError::BackendMismatch {
                        id: id.clone(),
                        recorded: recorded.clone(),
                        recorded_docker: rec.used_docker(),
                        requested_docker: requested,
                    });
                }
            }
            match rec.state {
                s if s.is_terminal() => Ok(rec),
                ExecutionState::Pending | ExecutionState::Starting => {
                    Err(ServiceError::InvalidState {
                        id: id.clone(),
                        state: rec.state,
                        operation: "complete",
                    })
                }
                _ => {
                    let backend = self.backend_of(&rec)?;
                    let result = self.background_result(&rec, &backend.orchestrator).await;
                    self.teardown_and_finish(
                        &rec,
                        &backend,
                        ExecutionState::Completed,
                        result,
                        None,
                    )
                    .await
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The result of the record's background process, if it has ended.
    async fn background_result(
        &self,
        rec: &ExecutionRecord,
        orch: &Arc<dyn Orchestrator>,
    ) -> Option<ResultSummary> {
        let ws = rec.sandbox()?;
        let pid = rec
            .process_id
            .as_deref()
            .and_then(|p| orchestrator_core::ProcessId::new(p).ok())?;
        match orch.process_status(&ws, &pid).await {
            Ok(snap) => snap.status.map(|status| {
                let wall = rec
                    .started_at_ms
                    .map(|t| now_ms().saturating_sub(t))
                    .unwrap_or(0);
                ResultSummary {
                    status: status.name().to_string(),
                    exit_code: status.code(),
                    signal: status.signal(),
                    wall_ms: wall,
                    cpu_ms: None,
                    peak_memory: None,
                    stdout_bytes: snap.stdout.len() as u64,
                    stderr_bytes: snap.stderr.len() as u64,
                    stdout_truncated: snap.stdout_truncated,
                    stderr_truncated: snap.stderr_truncated,
                }
            }),
            Err(e) => {
                tracing::debug!(error = %e, "no background status");
                None
            }
        }
    }

    /// Tears a running execution's sandbox down, then moves the record to
    /// `target`. When teardown fails the record is left as it was and the
    /// error returned. When the record ended meanwhile (a concurrent
    /// complete or cancel), returns it as it is for `Completed` targets,
    /// and `Cancelled` otherwise.
    pub(super) async fn teardown_and_finish(
        &self,
        rec: &ExecutionRecord,
        backend: &Backend,
        target: ExecutionState,
        result: Option<ResultSummary>,
        error: Option<String>,
    ) -> Result<ExecutionRecord, ServiceError> {
        if let Some(ws) = rec.sandbox() {
            backend.cleanup(&ws).await?;
            tracing::info!(workspace = %ws, "sandbox removed");
        }
        let id = rec.id.clone();
        self.update_with(&id, |r| {
            if r.state == target {
                return Ok(()); // a concurrent identical call won; idempotent
            }
            if r.state.is_terminal() {
                return Err(if r.state == ExecutionState::Cancelled {
                    ServiceError::Cancelled(r.id.clone())
                } else {
                    ServiceError::InvalidState {
                        id: r.id.clone(),
                        state: r.state,
                        operation: "finish",
                    }
                });
            }
            transition(r, target, "finish")?;
            r.sandbox_released = r.sandbox_id.is_some();
            if result.is_some() {
                r.result = result.clone();
            }
            if error.is_some() {
                r.error = error.clone();
            }
            Ok(())
        })
        .await
    }

    /// Cancels an execution: a pending one is just marked; a starting or
    /// running one has its sandbox torn down first (a `start` or `execute`
    /// working on it then fails with [`ServiceError::Cancelled`]).
    /// Cancelling a cancelled execution returns it; a completed or failed
    /// one is [`ServiceError::InvalidState`].
    pub async fn cancel(&self, id: &ExecutionId) -> Result<ExecutionRecord, ServiceError> {
        let span = tracing::info_span!("cancel", execution = %id);
        async {
            for _ in 0..MAX_CAS_RETRIES {
                let rec = self.get(id).await?;
                match rec.state {
                    ExecutionState::Cancelled => return Ok(rec),
                    ExecutionState::Completed | ExecutionState::Failed => {
                        return Err(ServiceError::InvalidState {
                            id: id.clone(),
                            state: rec.state,
                            operation: "cancel",
                        })
                    }
                    ExecutionState::Running => {
                        let backend = self.backend_of(&rec)?;
                        return self
                            .teardown_and_finish(
                                &rec,
                                &backend,
                                ExecutionState::Cancelled,
                                None,
                                Some("cancelled".into()),
                            )
                            .await;
                    }
                    ExecutionState::Pending | ExecutionState::Starting => {
                        let mut released = false;
                        if let Some(ws) = rec.sandbox() {
                            self.backend_of(&rec)?.cleanup(&ws).await?;
                            released = true;
                        }
                        let mut next = rec.clone();
                        if next.transition(ExecutionState::Cancelled).is_err() {
                            continue;
                        }
                        next.error = Some("cancelled".into());
                        next.sandbox_released = released;
                        match self.inner.store.update(&next).await {
                            Ok(r) => return Ok(r),
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            Err(ServiceError::Store(StoreError::Database(
                format!("execution {id}: too many concurrent updates").into(),
            )))
        }
        .instrument(span)
        .await
    }
}

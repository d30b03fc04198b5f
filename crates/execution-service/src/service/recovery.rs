//! [`ExecutionService::recover`]: cleaning up after processes that died
//! holding executions.

use orchestrator_core::owner::Liveness;
use orchestrator_core::WorkspaceId;
use tracing::Instrument;

use crate::error::ServiceError;
use crate::record::{ExecutionId, ExecutionRecord, ExecutionState};
use crate::store::ListFilter;

use super::{transition, ExecutionService};

/// What [`ExecutionService::recover`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryReport {
    /// Executions whose owner was gone, now marked failed.
    pub recovered: Vec<RecoveredExecution>,
    /// Ended executions whose earlier teardown had failed, retried now.
    pub released: Vec<RecoveredExecution>,
    /// Active executions whose owner still runs (left alone).
    pub skipped_live: Vec<ExecutionId>,
    /// What each backend's own orphan scan removed: (backend, items).
    pub reaped: Vec<(String, Vec<String>)>,
    /// Problems met on the way (recovery goes on after each).
    pub errors: Vec<String>,
}

impl RecoveryReport {
    /// Nothing was found to do and nothing failed.
    pub fn is_clean(&self) -> bool {
        self.recovered.is_empty()
            && self.released.is_empty()
            && self.errors.is_empty()
            && self.reaped.iter().all(|(_, v)| v.is_empty())
    }
}

/// One execution handled by [`ExecutionService::recover`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredExecution {
    /// The execution.
    pub id: ExecutionId,
    /// State it was left in.
    pub previous_state: ExecutionState,
    /// The backend that held its sandbox.
    pub backend: Option<String>,
    /// The sandbox torn down.
    pub sandbox_id: Option<String>,
    /// The dead owner's pid.
    pub owner_pid: Option<u32>,
    /// Whether the sandbox teardown succeeded.
    pub cleaned: bool,
}

impl RecoveredExecution {
    fn of(rec: &ExecutionRecord, cleaned: bool) -> Self {
        Self {
            id: rec.id.clone(),
            previous_state: rec.state,
            backend: rec.backend.clone(),
            sandbox_id: rec.sandbox_id.clone(),
            owner_pid: rec.owner.as_ref().map(|o| o.pid),
            cleaned,
        }
    }
}

impl ExecutionService {
    /// Cleans up after processes that died holding executions: every record
    /// left starting or running whose owner process is gone (pid and start
    /// time checked, so a reused pid does not count as alive) has its
    /// sandbox torn down on the backend it names and is marked failed; ended
    /// records whose teardown had failed are retried; then every configured
    /// backend's own orphan scan runs. Executions owned by live processes
    /// (including this one) are left alone.
    pub async fn recover(&self) -> Result<RecoveryReport, ServiceError> {
        let span = tracing::info_span!("recover");
        async {
            let mut report = RecoveryReport::default();
            self.recover_dead_owners(&mut report).await?;
            self.retry_failed_teardowns(&mut report).await?;
            self.reap_orphans(&mut report).await;
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Active records whose owner is gone: tear down, mark failed.
    async fn recover_dead_owners(&self, report: &mut RecoveryReport) -> Result<(), ServiceError> {
        let active = self
            .list_filtered(&ListFilter::states(&[
                ExecutionState::Starting,
                ExecutionState::Running,
            ]))
            .await?;
        for rec in active {
            let dead = match &rec.owner {
                None => true,
                Some(o) => o.liveness() == Liveness::Dead,
            };
            if !dead {
                report.skipped_live.push(rec.id.clone());
                continue;
            }
            let owner_pid = rec.owner.as_ref().map(|o| o.pid);
            tracing::warn!(execution = %rec.id, ?owner_pid, "owner gone; recovering");
            let cleaned = match rec.sandbox() {
                Some(ws) => self.release_for_recovery(&rec, &ws, report).await,
                None => true,
            };
            let reason = format!(
                "owner process {} is gone; recovered{}",
                owner_pid
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into()),
                if cleaned {
                    ""
                } else {
                    " (sandbox teardown failed)"
                }
            );
            let res = self
                .update_with(&rec.id, |r| {
                    if r.state.is_active() {
                        transition(r, ExecutionState::Failed, "recover")?;
                        r.error = Some(reason.clone());
                    }
                    if r.sandbox_id.is_some() {
                        r.sandbox_released = cleaned;
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = res {
                report.errors.push(format!("{}: {e}", rec.id));
            }
            report.recovered.push(RecoveredExecution::of(&rec, cleaned));
        }
        Ok(())
    }

    /// Ended records whose teardown failed earlier: tear down again.
    async fn retry_failed_teardowns(
        &self,
        report: &mut RecoveryReport,
    ) -> Result<(), ServiceError> {
        let ended = self
            .list_filtered(&ListFilter::states(&[
                ExecutionState::Failed,
                ExecutionState::Cancelled,
            ]))
            .await?;
        for rec in ended {
            let Some(ws) = rec.sandbox() else { continue };
            if rec.sandbox_released {
                continue;
            }
            let cleaned = self.release_for_recovery(&rec, &ws, report).await;
            if cleaned {
                if let Err(e) = self
                    .update_with(&rec.id, |r| {
                        r.sandbox_released = true;
                        Ok(())
                    })
                    .await
                {
                    report.errors.push(format!("{}: {e}", rec.id));
                }
            }
            report.released.push(RecoveredExecution::of(&rec, cleaned));
        }
        Ok(())
    }

    /// Tears a record's sandbox down on its backend; a failure goes into
    /// the report. Whether it is gone.
    async fn release_for_recovery(
        &self,
        rec: &ExecutionRecord,
        ws: &WorkspaceId,
        report: &mut RecoveryReport,
    ) -> bool {
        let error = match self.backend_for_recovery(rec) {
            Ok(backend) => match backend.orchestrator.cleanup(ws).await {
                Ok(()) => return true,
                Err(e) => format!("{}: cleanup of {ws} failed: {e}", rec.id),
            },
            Err(e) => format!("{}: {e}", rec.id),
        };
        report.errors.push(error);
        false
    }

    /// Every configured backend's own orphan scan.
    async fn reap_orphans(&self, report: &mut RecoveryReport) {
        for (name, orch) in self.backends() {
            match orch.reap_orphans().await {
                Ok(items) => {
                    for i in &items {
                        tracing::info!(backend = name, item = %i, "reaped orphan");
                    }
                    report.reaped.push((name.to_string(), items));
                }
                Err(e) => report.errors.push(format!("reap_orphans on {name}: {e}")),
            }
        }
    }
}

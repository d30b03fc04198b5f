//! [`ExecutionService::start`]: provisioning a recorded execution's sandbox.

use std::sync::Arc;

use orchestrator_core::owner::Owner;
use orchestrator_core::{
    IsolationReport, LimitReport, Orchestrator, ResourceLimits, WorkspaceId, WorkspaceSpec,
};
use tracing::Instrument;

use crate::error::ServiceError;
use crate::record::{ExecutionId, ExecutionRecord, ExecutionState, IsolationSummary, LimitSummary};
use crate::store::{ExecutionStore, StoreError};

use super::guard::InFlight;
use super::routing::Backend;
use super::{transition, ExecutionService};

/// Options of [`ExecutionService::start`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// Provision on the docker orchestrator (the backend named
    /// [`DOCKER_BACKEND`](crate::DOCKER_BACKEND)) instead of the default one
    /// (seed: `use_docker=False`). A request whose backend preference is
    /// [`BackendPreference::Docker`](crate::BackendPreference::Docker) uses
    /// docker either way.
    pub use_docker: bool,
}

impl StartOptions {
    /// `use_docker: true`.
    pub fn docker() -> Self {
        Self { use_docker: true }
    }
}

/// Everything `start` set up.
pub(super) struct Started {
    pub(super) record: ExecutionRecord,
    pub(super) backend: Backend,
    pub(super) workspace: WorkspaceId,
    pub(super) limit_report: LimitReport,
    pub(super) isolation: IsolationReport,
}

impl ExecutionService {
    /// Provisions the sandbox of a pending execution: creates the workspace
    /// (or container, with `use_docker`) with the request's mounts, asks
    /// the backend how it is isolated, copies its files in, applies its
    /// limits (in strict mode an unenforceable limit is an error and the
    /// sandbox is torn down), starts its command in the background when it
    /// has one, and records the sandbox, backend, isolation and limits.
    /// Returns the workspace or container id.
    pub async fn start(
        &self,
        id: &ExecutionId,
        opts: StartOptions,
    ) -> Result<WorkspaceId, ServiceError> {
        let span = tracing::info_span!("start", execution = %id, use_docker = opts.use_docker);
        async {
            let mut guard = InFlight::new(self, id);
            let res = self.start_inner(id, &opts, true, &mut guard).await;
            // Success: the sandbox lives until `complete`. Failure: start
            // already tore down what it made.
            guard.disarm();
            res.map(|s| s.workspace)
        }
        .instrument(span)
        .await
    }

    pub(super) async fn start_inner(
        &self,
        id: &ExecutionId,
        opts: &StartOptions,
        start_command: bool,
        guard: &mut InFlight,
    ) -> Result<Started, ServiceError> {
        let rec = self.get(id).await?;
        if rec.state != ExecutionState::Pending {
            return Err(ServiceError::InvalidState {
                id: id.clone(),
                state: rec.state,
                operation: "start",
            });
        }
        let Backend {
            name: backend,
            orchestrator: orch,
        } = self.route(&rec.request.backend, opts.use_docker)?;

        // pending -> starting, claiming the execution for this process.
        let mut claim = rec.clone();
        transition(&mut claim, ExecutionState::Starting, "start")?;
        claim.backend = Some(backend.clone());
        claim.owner = Some(Owner::current());
        let mut rec = match self.inner.store.update(&claim).await {
            Ok(r) => r,
            Err(StoreError::Conflict { .. }) => {
                let now = self.get(id).await?;
                return Err(ServiceError::InvalidState {
                    id: id.clone(),
                    state: now.state,
                    operation: "start",
                });
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(backend, "starting");

        let mut spec = WorkspaceSpec::new().execution_id(id.as_str());
        if let Some(image) = &rec.request.image {
            spec = spec.image(image.clone());
        }
        // The execution id travels as `execution_id` (the docker backend
        // labels cold containers with it and names pooled ones after it),
        // not as a label of its own: a labelled spec cannot take a warm
        // container.
        for (k, v) in &rec.request.labels {
            spec = spec.label(k.clone(), v.clone());
        }
        for m in &rec.request.mounts {
            spec = spec.mount(m.clone());
        }

        let ws = match orch.create_workspace(&spec).await {
            Ok(ws) => ws,
            Err(e) => {
                let err = ServiceError::backend("create_workspace", &backend, e);
                return Err(self.abort_start(id, &orch, None, err).await);
            }
        };
        // From here until the record names the sandbox, only the guard knows
        // it: set it before the next await.
        guard.sandbox = Some((orch.clone(), ws.clone()));
        tracing::info!(workspace = %ws, "sandbox created");

        rec.sandbox_id = Some(ws.to_string());
        rec = match self.inner.store.update(&rec).await {
            Ok(r) => r,
            Err(StoreError::Conflict { .. }) => {
                // Cancelled while we were creating it.
                return Err(self
                    .abort_start(id, &orch, Some(&ws), ServiceError::Cancelled(id.clone()))
                    .await);
            }
            Err(e) => {
                return Err(self.abort_start(id, &orch, Some(&ws), e.into()).await);
            }
        };

        // How the sandbox is isolated is part of what start provisions: a
        // backend that cannot say is a failed start like any other (the
        // trait's default answers for backends that do not isolate).
        let isolation = match orch.isolation(&ws).await {
            Ok(r) => r,
            Err(e) => {
                let err = ServiceError::backend("isolation", &backend, e);
                return Err(self.abort_start(id, &orch, Some(&ws), err).await);
            }
        };
        if isolation.fell_back() {
            tracing::warn!(note = ?isolation.note, "isolation auto fell back to none");
        } else {
            tracing::info!(isolation = %isolation.level, network = %isolation.network, "isolated");
        }
        rec.isolation = Some(IsolationSummary::from_report(&isolation));

        for f in &rec.request.files_in {
            if let Err(e) = orch.copy_to(&ws, &f.host, &f.sandbox).await {
                let err = ServiceError::backend("copy_to", &backend, e);
                return Err(self.abort_start(id, &orch, Some(&ws), err).await);
            }
        }

        let limits: &ResourceLimits = &rec.request.limits;
        let mut limit_report = LimitReport::default();
        if !limits.is_empty() {
            let applied = orch
                .apply_resource_limits(&ws, limits)
                .await
                .and_then(|report| {
                    // A backend that reports an unenforced limit in strict
                    // mode instead of failing is held to it here.
                    if limits.strict() {
                        report.check_strict()?;
                    }
                    Ok(report)
                });
            match applied {
                Ok(r) => limit_report = r,
                Err(e) => {
                    let err = ServiceError::backend("apply_resource_limits", &backend, e);
                    return Err(self.abort_start(id, &orch, Some(&ws), err).await);
                }
            }
            for e in limit_report.unenforced() {
                tracing::warn!(limit = %e.kind, note = ?e.note, "limit not enforced");
            }
        }
        rec.limits_applied = LimitSummary::from_report(&limit_report);

        if start_command {
            let cmd = match rec.request.command_spec() {
                Ok(cmd) => cmd,
                Err(e) => {
                    let err = ServiceError::InvalidRequest(e);
                    return Err(self.abort_start(id, &orch, Some(&ws), err).await);
                }
            };
            if let Some(cmd) = cmd {
                match orch.start_background(&ws, &cmd).await {
                    Ok(pid) => rec.process_id = Some(pid.to_string()),
                    Err(e) => {
                        let err = ServiceError::backend("start_background", &backend, e);
                        return Err(self.abort_start(id, &orch, Some(&ws), err).await);
                    }
                }
            }
        }

        if rec.transition(ExecutionState::Running).is_err() {
            return Err(self
                .abort_start(id, &orch, Some(&ws), ServiceError::Cancelled(id.clone()))
                .await);
        }
        let rec = match self.inner.store.update(&rec).await {
            Ok(r) => r,
            Err(StoreError::Conflict { .. }) => {
                return Err(self
                    .abort_start(id, &orch, Some(&ws), ServiceError::Cancelled(id.clone()))
                    .await);
            }
            Err(e) => return Err(self.abort_start(id, &orch, Some(&ws), e.into()).await),
        };
        tracing::info!(workspace = %ws, "running");
        Ok(Started {
            record: rec,
            backend: Backend {
                name: backend,
                orchestrator: orch,
            },
            workspace: ws,
            limit_report,
            isolation,
        })
    }

    /// Undoes a failed start: tears the sandbox down and marks the record
    /// failed (unless it was cancelled meanwhile: then the error becomes
    /// [`ServiceError::Cancelled`]). Returns the error to report.
    async fn abort_start(
        &self,
        id: &ExecutionId,
        orch: &Arc<dyn Orchestrator>,
        ws: Option<&WorkspaceId>,
        err: ServiceError,
    ) -> ServiceError {
        tracing::warn!(error = %err, "start failed; tearing down");
        let mut released = true;
        if let Some(ws) = ws {
            if let Err(e) = orch.cleanup(ws).await {
                tracing::error!(workspace = %ws, error = %e, "teardown after a failed start failed");
                released = false;
            }
        }
        let reason = err.to_string();
        let ws_str = ws.map(|w| w.to_string());
        let mut cancelled = false;
        let res = self
            .update_with(id, |r| {
                if r.sandbox_id.is_none() {
                    r.sandbox_id = ws_str.clone();
                }
                if r.state.is_terminal() {
                    cancelled = r.state == ExecutionState::Cancelled;
                    if r.sandbox_id.is_some() && released {
                        r.sandbox_released = true;
                    }
                    return Ok(());
                }
                transition(r, ExecutionState::Failed, "fail")?;
                r.error = Some(reason.clone());
                r.sandbox_released = r.sandbox_id.is_some() && released;
                Ok(())
            })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "could not record the failed start");
        }
        match err {
            ServiceError::Cancelled(_) => err,
            _ if cancelled => ServiceError::Cancelled(id.clone()),
            _ => err,
        }
    }
}

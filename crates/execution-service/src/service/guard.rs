//! The drop guard: tears down the sandbox of an execution whose future is
//! dropped mid-way.

use std::future::Future;
use std::sync::Arc;

use orchestrator_core::{Orchestrator, WorkspaceId};

use crate::record::{ExecutionId, ExecutionState};

use super::{transition, ExecutionService};

/// Tears an execution down if the future working on it is dropped: the
/// cleanup runs as a spawned task (on the current runtime, or on a helper
/// thread when there is none).
pub(super) struct InFlight {
    service: ExecutionService,
    id: ExecutionId,
    pub(super) sandbox: Option<(Arc<dyn Orchestrator>, WorkspaceId)>,
    armed: bool,
}

impl InFlight {
    pub(super) fn new(service: &ExecutionService, id: &ExecutionId) -> Self {
        Self {
            service: service.clone(),
            id: id.clone(),
            sandbox: None,
            armed: true,
        }
    }

    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let service = self.service.clone();
        let id = self.id.clone();
        let sandbox = self.sandbox.take();
        tracing::warn!(execution = %id, "execution future dropped mid-way; tearing its sandbox down");
        self.service
            .spawn_cleanup(async move { service.abandon(id, sandbox).await });
    }
}

impl ExecutionService {
    fn spawn_cleanup(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let counter = self.inner.cleanups.clone();
        counter.send_modify(|n| *n += 1);
        let task = async move {
            fut.await;
            counter.send_modify(|n| *n = n.saturating_sub(1));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(task);
            }
            Err(_) => {
                let spawned = std::thread::Builder::new()
                    .name("runbox-cleanup".into())
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(rt) => rt.block_on(task),
                            Err(e) => tracing::error!(error = %e, "no runtime for cleanup"),
                        }
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "could not spawn a cleanup thread");
                }
            }
        }
    }

    /// Waits until every teardown spawned for a dropped `execute` / `start`
    /// future has finished.
    pub async fn wait_for_cleanups(&self) {
        let mut rx = self.inner.cleanups.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Teardown for a dropped future: clean the sandbox the guard knew (and
    /// the one the record names), then mark the record cancelled.
    pub(super) async fn abandon(
        &self,
        id: ExecutionId,
        sandbox: Option<(Arc<dyn Orchestrator>, WorkspaceId)>,
    ) {
        let mut released = true;
        let mut cleaned: Option<WorkspaceId> = None;
        if let Some((orch, ws)) = &sandbox {
            if let Err(e) = orch.cleanup(ws).await {
                tracing::error!(execution = %id, workspace = %ws, error = %e, "cleanup of a dropped execution failed");
                released = false;
            }
            cleaned = Some(ws.clone());
        }
        let rec = match self.get(&id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(execution = %id, error = %e, "dropped execution: cannot read record");
                return;
            }
        };
        if let Some(ws) = rec.sandbox() {
            if cleaned.as_ref() != Some(&ws) && !rec.sandbox_released {
                match self.backend_of(&rec) {
                    Ok(orch) => {
                        if let Err(e) = orch.cleanup(&ws).await {
                            tracing::error!(workspace = %ws, error = %e, "cleanup failed");
                            released = false;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "dropped execution: no backend");
                        released = false;
                    }
                }
            }
        }
        let ws_str = cleaned.map(|w| w.to_string());
        let res = self
            .update_with(&id, |r| {
                if r.sandbox_id.is_none() {
                    r.sandbox_id = ws_str.clone();
                }
                if !r.state.is_terminal() {
                    transition(r, ExecutionState::Cancelled, "cancel")?;
                    r.error = Some("the caller dropped the execution before it finished".into());
                }
                if r.sandbox_id.is_some() && released {
                    r.sandbox_released = true;
                }
                Ok(())
            })
            .await;
        if let Err(e) = res {
            tracing::error!(execution = %id, error = %e, "dropped execution: cannot update record");
        }
    }
}

//! The [`Orchestrator`] contract for [`NativeOrchestrator`]: each operation
//! delegates to the module that implements it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_core::{
    Availability, Capabilities, CommandSpec, ExecOutput, IsolationReport, LimitReport,
    Orchestrator, ProcessId, ProcessSnapshot, ResourceLimits, Result, SandboxPath, WorkspaceId,
    WorkspaceSpec,
};

use crate::{NativeOrchestrator, BACKEND_NAME};

/// What waiting for a background process gives: its result, or `None`
/// when it still runs at the deadline.
type Waited = Result<Option<ExecOutput>>;

/// What applying limits gives: how each is enforced.
type Report = Result<LimitReport>;

#[async_trait]
impl Orchestrator for NativeOrchestrator {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            copy: true,
            background: true,
            direct_access: true,
            network_isolation: self.isolating()
                && self.inner.config.network == orchestrator_core::NetworkMode::None,
            isolation: self.isolating(),
            oom_detection: self.inner.cgroups.is_ok(),
            cross_process: true,
            images: false,
            mounts: self.isolating(),
            limits: self.enforceable(),
        }
    }

    async fn is_available(&self) -> Availability {
        self.availability()
    }

    fn workspace_path(&self, id: &WorkspaceId) -> Option<PathBuf> {
        self.get(id).ok().map(|w| w.dir.clone())
    }

    async fn residue(&self, id: &WorkspaceId) -> Result<Vec<String>> {
        self.residue_of(id).await
    }

    async fn isolation(&self, id: &WorkspaceId) -> Result<IsolationReport> {
        Ok(self.get(id)?.isolation.clone())
    }

    async fn reap_orphans(&self) -> Result<Vec<String>> {
        self.reap().await
    }

    fn pool_stats(&self) -> Option<orchestrator_core::PoolStats> {
        // Inherent method of the same name: the pool's counters.
        Some(Self::pool_stats(self))
    }

    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        self.create(spec).await
    }

    async fn apply_resource_limits(&self, id: &WorkspaceId, limits: &ResourceLimits) -> Report {
        self.apply_limits(id, limits).await
    }

    async fn copy_to(&self, id: &WorkspaceId, src: &Path, dst: &SandboxPath) -> Result<()> {
        self.import(id, src, dst).await
    }

    async fn copy_from(&self, id: &WorkspaceId, src: &SandboxPath, dst: &Path) -> Result<()> {
        self.export(id, src, dst).await
    }

    async fn run_command(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput> {
        self.run_foreground(id, cmd).await
    }

    async fn start_background(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ProcessId> {
        self.spawn_background(id, cmd).await
    }

    async fn process_status(&self, id: &WorkspaceId, pid: &ProcessId) -> Result<ProcessSnapshot> {
        self.background_status(id, pid)
    }

    async fn wait_process(&self, id: &WorkspaceId, pid: &ProcessId, t: Option<Duration>) -> Waited {
        self.wait_background(id, pid, t).await
    }

    async fn stop(&self, id: &WorkspaceId, pid: Option<&ProcessId>) -> Result<()> {
        self.halt(id, pid).await
    }

    async fn cleanup(&self, id: &WorkspaceId) -> Result<()> {
        let done = self.tear_down(id).await;
        // A lifecycle ended: the time for the pool to catch up.
        self.refill_if_idle();
        done
    }
}

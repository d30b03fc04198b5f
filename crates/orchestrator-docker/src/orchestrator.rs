//! `impl Orchestrator for DockerOrchestrator`: each trait method hands over
//! to the module of its concern.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orchestrator_core::{
    async_trait, Availability, Capabilities, CommandSpec, ExecOutput, IsolationReport, LimitReport,
    Orchestrator, ProcessId, ProcessSnapshot, ResourceLimits, Result, SandboxPath, WorkspaceId,
    WorkspaceSpec,
};

use crate::{DockerOrchestrator, BACKEND_NAME};

#[async_trait]
impl Orchestrator for DockerOrchestrator {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.what_it_can_do()
    }

    async fn is_available(&self) -> Availability {
        self.availability().await
    }

    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        self.create(spec).await
    }

    async fn apply_resource_limits(
        &self,
        workspace: &WorkspaceId,
        requested: &ResourceLimits,
    ) -> Result<LimitReport> {
        self.apply_limits(workspace, requested).await
    }

    async fn copy_to(
        &self,
        workspace: &WorkspaceId,
        source: &Path,
        dest: &SandboxPath,
    ) -> Result<()> {
        self.upload(workspace, source, dest).await
    }

    async fn copy_from(
        &self,
        workspace: &WorkspaceId,
        source: &SandboxPath,
        dest: &Path,
    ) -> Result<()> {
        self.download(workspace, source, dest).await
    }

    async fn run_command(&self, workspace: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput> {
        self.run_foreground(workspace, cmd).await
    }

    async fn start_background(
        &self,
        workspace: &WorkspaceId,
        cmd: &CommandSpec,
    ) -> Result<ProcessId> {
        self.spawn_background(workspace, cmd).await
    }

    async fn process_status(
        &self,
        workspace: &WorkspaceId,
        process: &ProcessId,
    ) -> Result<ProcessSnapshot> {
        self.snapshot(workspace, process)
    }

    async fn wait_process(
        &self,
        workspace: &WorkspaceId,
        process: &ProcessId,
        at_most: Option<Duration>,
    ) -> Result<Option<ExecOutput>> {
        self.wait_for(workspace, process, at_most).await
    }

    async fn stop(&self, workspace: &WorkspaceId, process: Option<&ProcessId>) -> Result<()> {
        self.stop_processes(workspace, process).await
    }

    async fn cleanup(&self, workspace: &WorkspaceId) -> Result<()> {
        self.remove_workspace(workspace).await
    }

    fn workspace_path(&self, _workspace: &WorkspaceId) -> Option<PathBuf> {
        None
    }

    async fn residue(&self, workspace: &WorkspaceId) -> Result<Vec<String>> {
        self.containers_of(workspace).await
    }

    async fn isolation(&self, workspace: &WorkspaceId) -> Result<IsolationReport> {
        self.isolation_of(workspace).await
    }

    async fn reap_orphans(&self) -> Result<Vec<String>> {
        self.reap().await
    }

    fn pool_stats(&self) -> Option<orchestrator_core::PoolStats> {
        // Inherent method of the same name: the pool's counters.
        Some(Self::pool_stats(self))
    }
}

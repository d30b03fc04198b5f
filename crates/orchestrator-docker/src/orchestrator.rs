//! `impl Orchestrator for DockerOrchestrator`: each trait method hands over
//! to the module of its concern.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orchestrator_core::{
    async_trait, Availability, Capabilities, CommandSpec, ExecOutput, LimitReport, Orchestrator,
    ProcessId, ProcessSnapshot, ResourceLimits, Result, SandboxPath, WorkspaceId, WorkspaceSpec,
};

use crate::limits;
use crate::{DockerOrchestrator, BACKEND_NAME};

#[async_trait]
impl Orchestrator for DockerOrchestrator {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            copy: true,
            background: true,
            direct_access: false,
            network_isolation: self.config.network_mode == "none",
            oom_detection: true,
            limits: limits::enforced_kinds(),
        }
    }

    async fn is_available(&self) -> Availability {
        self.availability().await
    }

    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        self.create(spec).await
    }

    async fn apply_resource_limits(
        &self,
        id: &WorkspaceId,
        requested: &ResourceLimits,
    ) -> Result<LimitReport> {
        self.apply_limits(id, requested).await
    }

    async fn copy_to(
        &self,
        id: &WorkspaceId,
        host_path: &Path,
        sandbox_path: &SandboxPath,
    ) -> Result<()> {
        self.upload(id, host_path, sandbox_path).await
    }

    async fn copy_from(
        &self,
        id: &WorkspaceId,
        sandbox_path: &SandboxPath,
        host_path: &Path,
    ) -> Result<()> {
        self.download(id, sandbox_path, host_path).await
    }

    async fn run_command(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput> {
        self.run_foreground(id, cmd).await
    }

    async fn start_background(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ProcessId> {
        self.spawn_background(id, cmd).await
    }

    async fn process_status(&self, id: &WorkspaceId, pid: &ProcessId) -> Result<ProcessSnapshot> {
        self.snapshot(id, pid)
    }

    async fn wait_process(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
        timeout: Option<Duration>,
    ) -> Result<Option<ExecOutput>> {
        self.wait_for(id, pid, timeout).await
    }

    async fn stop(&self, id: &WorkspaceId, pid: Option<&ProcessId>) -> Result<()> {
        self.stop_processes(id, pid).await
    }

    async fn cleanup(&self, id: &WorkspaceId) -> Result<()> {
        self.remove_workspace(id).await
    }

    fn workspace_path(&self, _id: &WorkspaceId) -> Option<PathBuf> {
        None
    }

    async fn residue(&self, id: &WorkspaceId) -> Result<Vec<String>> {
        self.containers_of(id).await
    }

    async fn reap_orphans(&self) -> Result<Vec<String>> {
        self.reap().await
    }
}

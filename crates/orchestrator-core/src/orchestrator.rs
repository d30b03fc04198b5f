//! The [`Orchestrator`] trait: what every backend implements.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::limits::{LimitReport, ResourceLimits};
use crate::types::{
    Availability, Capabilities, CommandSpec, ExecOutput, ProcessId, ProcessSnapshot, WorkspaceId,
    WorkspaceSpec,
};

/// A backend that provisions sandboxes and runs commands in them.
///
/// Object safe; used as `Arc<dyn Orchestrator>`. Every method that takes a
/// [`WorkspaceId`] returns [`crate::Error::NotFound`] for a workspace that does
/// not exist or was cleaned up (except [`Orchestrator::cleanup`], which is
/// idempotent). Every sandbox path is relative to the workspace root and is
/// checked by [`crate::paths`] rules.
#[async_trait]
pub trait Orchestrator: Send + Sync + std::fmt::Debug {
    /// The backend's registered name ("native", "docker", ...).
    fn name(&self) -> &str;

    /// What this backend can do and enforce on this host.
    fn capabilities(&self) -> Capabilities;

    /// Whether the backend can serve requests now; with a reason when not, or
    /// when degraded. Must answer within a couple of seconds.
    async fn is_available(&self) -> Availability;

    /// Provisions a sandbox (seed: "Initialize").
    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId>;

    /// Applies limits to the workspace; they hold for every later command.
    /// Returns how each is enforced. In strict mode (the limits' `strict`
    /// flag or the backend's configuration) a limit that cannot be enforced
    /// is [`crate::Error::LimitNotEnforceable`] and nothing is changed.
    async fn apply_resource_limits(
        &self,
        id: &WorkspaceId,
        limits: &ResourceLimits,
    ) -> Result<LimitReport>;

    /// Copies a host file or directory into the sandbox at `sandbox_path`.
    async fn copy_to(&self, id: &WorkspaceId, host_path: &Path, sandbox_path: &str) -> Result<()>;

    /// Copies a sandbox file or directory out to `host_path`.
    async fn copy_from(&self, id: &WorkspaceId, sandbox_path: &str, host_path: &Path)
        -> Result<()>;

    /// Runs a command to completion (or until a limit ends it). A command that
    /// cannot be started is an `Ok` with [`crate::ExitStatus::FailedToStart`];
    /// errors are for bad input and backend failures.
    async fn run_command(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput>;

    /// Starts a command in the background and returns at once.
    async fn start_background(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ProcessId>;

    /// A background process's output so far and, once it ended, its status.
    async fn process_status(&self, id: &WorkspaceId, pid: &ProcessId) -> Result<ProcessSnapshot>;

    /// Waits for a background process to end, at most `timeout` (forever when
    /// `None`). `Ok(None)` when it is still running at the deadline.
    async fn wait_process(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
        timeout: Option<Duration>,
    ) -> Result<Option<ExecOutput>>;

    /// Stops one background process (its whole tree), or with `None` every
    /// process of the workspace. Stopping a process that already ended is not
    /// an error.
    async fn stop(&self, id: &WorkspaceId, pid: Option<&ProcessId>) -> Result<()>;

    /// Kills everything and removes the sandbox. Idempotent: cleaning up an
    /// unknown or already cleaned workspace succeeds.
    async fn cleanup(&self, id: &WorkspaceId) -> Result<()>;

    /// The sandbox's host directory, for backends with direct access (seed:
    /// `get_workspace_path`). `None` for unknown workspaces and for backends
    /// without a host directory.
    fn workspace_path(&self, id: &WorkspaceId) -> Option<PathBuf>;

    /// Every host resource (directory, cgroup, process, container) that still
    /// exists for this workspace id. Empty after a successful cleanup; the
    /// conformance suite checks it after every case.
    async fn residue(&self, id: &WorkspaceId) -> Result<Vec<String>>;

    /// Removes sandboxes of this backend left behind by processes that are
    /// gone (crash recovery). Returns a description of each thing removed.
    async fn reap_orphans(&self) -> Result<Vec<String>>;
}

//! The [`Orchestrator`] trait: what every backend implements.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::limits::{LimitReport, ResourceLimits};
use crate::paths::SandboxPath;
use crate::types::{
    Availability, Capabilities, CommandSpec, ExecOutput, IsolationReport, ProcessId,
    ProcessSnapshot, WorkspaceId, WorkspaceSpec,
};

/// How long [`Orchestrator::stop`] waits for the processes it killed to end.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// A backend that provisions sandboxes and runs commands in them.
///
/// Object safe; used as `Arc<dyn Orchestrator>`.
///
/// Contract points every backend keeps (the conformance suite checks them):
/// - Inputs arrive valid: a [`SandboxPath`], a [`CommandSpec`] and a
///   [`ResourceLimits`] can only be constructed valid, so a method never
///   answers `InvalidInput` for them; the first thing it checks is the
///   workspace, and a method that takes a [`WorkspaceId`] answers
///   [`crate::Error::NotFound`] for one that does not exist or was cleaned
///   up (except [`Orchestrator::cleanup`], which is idempotent).
/// - Sandbox paths are relative to the workspace root; a symlink that leads
///   outside it is [`crate::Error::PathEscapesSandbox`].
/// - A sandbox belongs to the process that created it
///   ([`crate::owner::Owner`]). No call of another process removes it while
///   that owner lives: [`Orchestrator::cleanup`] of a workspace held by
///   another live owner leaves it as it is and returns `Ok`, and
///   [`Orchestrator::reap_orphans`] takes only sandboxes whose owner is
///   known to be gone.
/// - [`Orchestrator::stop`] kills whole process trees and waits for them at
///   most [`STOP_DEADLINE`]; a process that survives SIGKILL that long
///   (uninterruptible sleep) makes it [`crate::Error::Backend`] naming the
///   process, never a hang and never a silent `Ok`.
/// - [`Orchestrator::is_available`] answers within a couple of seconds with
///   an [`Availability`]: `Available`, `Degraded` with a reason (it works,
///   with less than it could: no cgroup for limits, say) or `Unavailable`
///   with a reason (it cannot serve: a daemon down). Calls on an
///   unavailable backend are [`crate::Error::Unavailable`].
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
    async fn copy_to(
        &self,
        id: &WorkspaceId,
        host_path: &Path,
        sandbox_path: &SandboxPath,
    ) -> Result<()>;

    /// Copies a sandbox file or directory out to `host_path`.
    async fn copy_from(
        &self,
        id: &WorkspaceId,
        sandbox_path: &SandboxPath,
        host_path: &Path,
    ) -> Result<()>;

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
    /// process of the workspace, and waits for them to end (at most
    /// [`STOP_DEADLINE`], see the contract above). Stopping a process that
    /// already ended is not an error.
    async fn stop(&self, id: &WorkspaceId, pid: Option<&ProcessId>) -> Result<()>;

    /// Kills everything and removes the sandbox. Idempotent: cleaning up an
    /// unknown or already cleaned workspace succeeds. A workspace this
    /// instance does not hold is removed only when its owner is this process
    /// or is gone; one held by another live owner is left alone (`Ok`).
    async fn cleanup(&self, id: &WorkspaceId) -> Result<()>;

    /// The sandbox's host directory, for backends with direct access (seed:
    /// `get_workspace_path`). `None` for unknown workspaces and for backends
    /// without a host directory.
    fn workspace_path(&self, id: &WorkspaceId) -> Option<PathBuf>;

    /// Every host resource (directory, cgroup, process, container) that still
    /// exists for this workspace id. Empty after a successful cleanup; the
    /// conformance suite checks it after every case.
    async fn residue(&self, id: &WorkspaceId) -> Result<Vec<String>>;

    /// How workspace `id` is isolated from the host: the mode asked for,
    /// the level in force, the network, each enforcing mechanism or why
    /// there is none. Unknown ids are NotFound. The default, for a backend
    /// that does not isolate, reports level `None`.
    async fn isolation(&self, id: &WorkspaceId) -> Result<IsolationReport> {
        let _ = id;
        Ok(IsolationReport::unreported(self.name()))
    }

    /// Removes sandboxes of this backend left behind by processes that are
    /// gone (crash recovery). Returns a description of each thing removed.
    async fn reap_orphans(&self) -> Result<Vec<String>>;

    /// The counters of the backend's warm pool, for a backend that keeps
    /// one (the default: none).
    fn pool_stats(&self) -> Option<crate::PoolStats> {
        None
    }
}

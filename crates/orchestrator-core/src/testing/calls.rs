//! What the fake records and injects: the trait's operations ([`Op`]), one
//! recorded call with its arguments ([`Call`]), and injected failures.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::limits::ResourceLimits;
use crate::paths::SandboxPath;
use crate::types::{ProcessId, WorkspaceId};

/// The operations of the [`Orchestrator`](crate::Orchestrator) trait, for failure injection and
/// call counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`Orchestrator::is_available`](crate::Orchestrator::is_available).
    IsAvailable,
    /// [`Orchestrator::create_workspace`](crate::Orchestrator::create_workspace).
    CreateWorkspace,
    /// [`Orchestrator::apply_resource_limits`](crate::Orchestrator::apply_resource_limits).
    ApplyResourceLimits,
    /// [`Orchestrator::copy_to`](crate::Orchestrator::copy_to).
    CopyTo,
    /// [`Orchestrator::copy_from`](crate::Orchestrator::copy_from).
    CopyFrom,
    /// [`Orchestrator::run_command`](crate::Orchestrator::run_command).
    RunCommand,
    /// [`Orchestrator::start_background`](crate::Orchestrator::start_background).
    StartBackground,
    /// [`Orchestrator::process_status`](crate::Orchestrator::process_status).
    ProcessStatus,
    /// [`Orchestrator::wait_process`](crate::Orchestrator::wait_process).
    WaitProcess,
    /// [`Orchestrator::stop`](crate::Orchestrator::stop).
    Stop,
    /// [`Orchestrator::cleanup`](crate::Orchestrator::cleanup).
    Cleanup,
    /// [`Orchestrator::residue`](crate::Orchestrator::residue).
    Residue,
    /// [`Orchestrator::reap_orphans`](crate::Orchestrator::reap_orphans).
    ReapOrphans,
}

impl Op {
    /// Every operation that can be made to fail.
    pub const ALL: [Op; 13] = [
        Op::IsAvailable,
        Op::CreateWorkspace,
        Op::ApplyResourceLimits,
        Op::CopyTo,
        Op::CopyFrom,
        Op::RunCommand,
        Op::StartBackground,
        Op::ProcessStatus,
        Op::WaitProcess,
        Op::Stop,
        Op::Cleanup,
        Op::Residue,
        Op::ReapOrphans,
    ];

    /// The trait method's name ("create_workspace", ...).
    pub fn name(self) -> &'static str {
        match self {
            Op::IsAvailable => "is_available",
            Op::CreateWorkspace => "create_workspace",
            Op::ApplyResourceLimits => "apply_resource_limits",
            Op::CopyTo => "copy_to",
            Op::CopyFrom => "copy_from",
            Op::RunCommand => "run_command",
            Op::StartBackground => "start_background",
            Op::ProcessStatus => "process_status",
            Op::WaitProcess => "wait_process",
            Op::Stop => "stop",
            Op::Cleanup => "cleanup",
            Op::Residue => "residue",
            Op::ReapOrphans => "reap_orphans",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One recorded call, with the arguments that matter to tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `is_available()`.
    IsAvailable,
    /// `create_workspace(spec)`.
    CreateWorkspace {
        /// The spec's execution id.
        execution_id: Option<String>,
        /// The spec's image.
        image: Option<String>,
        /// The spec's labels.
        labels: BTreeMap<String, String>,
    },
    /// `apply_resource_limits(id, limits)`.
    ApplyResourceLimits {
        /// Workspace.
        id: WorkspaceId,
        /// The limits asked for.
        limits: ResourceLimits,
    },
    /// `copy_to(id, host, sandbox)`.
    CopyTo {
        /// Workspace.
        id: WorkspaceId,
        /// Host source.
        host: PathBuf,
        /// Sandbox destination.
        sandbox: SandboxPath,
    },
    /// `copy_from(id, sandbox, host)`.
    CopyFrom {
        /// Workspace.
        id: WorkspaceId,
        /// Sandbox source.
        sandbox: SandboxPath,
        /// Host destination.
        host: PathBuf,
    },
    /// `run_command(id, cmd)`.
    RunCommand {
        /// Workspace.
        id: WorkspaceId,
        /// The command's argv.
        argv: Vec<String>,
        /// Whether a live output sink was given.
        live_output: bool,
    },
    /// `start_background(id, cmd)`.
    StartBackground {
        /// Workspace.
        id: WorkspaceId,
        /// The command's argv.
        argv: Vec<String>,
    },
    /// `process_status(id, pid)`.
    ProcessStatus {
        /// Workspace.
        id: WorkspaceId,
        /// Process.
        pid: ProcessId,
    },
    /// `wait_process(id, pid, timeout)`.
    WaitProcess {
        /// Workspace.
        id: WorkspaceId,
        /// Process.
        pid: ProcessId,
        /// Timeout given.
        timeout: Option<Duration>,
    },
    /// `stop(id, pid)`.
    Stop {
        /// Workspace.
        id: WorkspaceId,
        /// Process, or every process.
        pid: Option<ProcessId>,
    },
    /// `cleanup(id)`.
    Cleanup {
        /// Workspace.
        id: WorkspaceId,
    },
    /// `residue(id)`.
    Residue {
        /// Workspace.
        id: WorkspaceId,
    },
    /// `reap_orphans()`.
    ReapOrphans,
}

impl Call {
    /// The operation this call was.
    pub fn op(&self) -> Op {
        match self {
            Call::IsAvailable => Op::IsAvailable,
            Call::CreateWorkspace { .. } => Op::CreateWorkspace,
            Call::ApplyResourceLimits { .. } => Op::ApplyResourceLimits,
            Call::CopyTo { .. } => Op::CopyTo,
            Call::CopyFrom { .. } => Op::CopyFrom,
            Call::RunCommand { .. } => Op::RunCommand,
            Call::StartBackground { .. } => Op::StartBackground,
            Call::ProcessStatus { .. } => Op::ProcessStatus,
            Call::WaitProcess { .. } => Op::WaitProcess,
            Call::Stop { .. } => Op::Stop,
            Call::Cleanup { .. } => Op::Cleanup,
            Call::Residue { .. } => Op::Residue,
            Call::ReapOrphans => Op::ReapOrphans,
        }
    }
}

/// The error a [`FakeOrchestrator`](super::FakeOrchestrator) injects with
/// [`FakeOrchestrator::fail_with_backend_error`](super::FakeOrchestrator::fail_with_backend_error), wrapped in
/// [`Error::Backend`]; tests downcast to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("injected failure in {op} of fake backend {backend}")]
pub struct FakeError {
    /// The backend's name.
    pub backend: String,
    /// The operation that failed.
    pub op: Op,
}

type ErrorFactory = Arc<dyn Fn() -> Error + Send + Sync>;

enum Failure {
    /// Every call fails.
    Always(ErrorFactory),
    /// The next calls fail, once each, with these errors.
    Queue(VecDeque<Error>),
}

/// The failures injected per operation.
#[derive(Default)]
pub(crate) struct Failures(HashMap<Op, Failure>);

impl Failures {
    /// Every call of `op` fails with what `make` returns.
    pub(crate) fn always(&mut self, op: Op, make: ErrorFactory) {
        self.0.insert(op, Failure::Always(make));
    }

    /// The next call of `op` fails with `error`, after those already queued.
    pub(crate) fn once(&mut self, op: Op, error: Error) {
        match self.0.get_mut(&op) {
            Some(Failure::Queue(q)) => q.push_back(error),
            _ => {
                self.0.insert(op, Failure::Queue(VecDeque::from([error])));
            }
        }
    }

    /// Removes every injected failure.
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// The error this call of `op` fails with, if any (a queued one is used
    /// up).
    pub(crate) fn take(&mut self, op: Op) -> Option<Error> {
        match self.0.get_mut(&op) {
            None => None,
            Some(Failure::Always(make)) => Some(make()),
            Some(Failure::Queue(q)) => {
                let e = q.pop_front();
                if q.is_empty() {
                    self.0.remove(&op);
                }
                e
            }
        }
    }
}

//! `NativeOrchestratorError`: what can go wrong inside the native backend.
//!
//! It converts into the core [`orchestrator_core::Error`] as
//! `Error::Backend { backend: "native", .. }`, from which it can be downcast.

use std::path::PathBuf;

/// Errors specific to the native backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NativeOrchestratorError {
    /// A file-system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A cgroup operation failed.
    #[error("cgroup {op} for {cgroup}: {message}")]
    Cgroup {
        /// What was being done.
        op: &'static str,
        /// The cgroup (relative path).
        cgroup: String,
        /// What went wrong.
        message: String,
    },
    /// A process could not be spawned for a reason other than a missing or
    /// non-executable program (those are `ExitStatus::FailedToStart`).
    #[error("cannot spawn {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A process `stop` killed was still running at its deadline (a
    /// process in uninterruptible sleep ignores SIGKILL until it wakes).
    #[error(
        "process {process} (group {pgid}) still runs {waited:?} after SIGKILL: pids {alive:?}"
    )]
    Unkillable {
        /// The background process.
        process: String,
        /// Its process group.
        pgid: i32,
        /// The pids of its tree still running.
        alive: Vec<i32>,
        /// How long `stop` waited.
        waited: std::time::Duration,
    },
    /// The sandbox of an isolated workspace failed (its init could not be
    /// started or built the sandbox, or ended).
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// Full isolation was asked for (isolation `full`, or `auto` in strict
    /// mode) and this host cannot give it.
    #[error("full isolation is unavailable on this host: {reason}")]
    IsolationUnavailable {
        /// Why.
        reason: String,
    },
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl NativeOrchestratorError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<NativeOrchestratorError> for orchestrator_core::Error {
    fn from(e: NativeOrchestratorError) -> Self {
        orchestrator_core::Error::backend(crate::BACKEND_NAME, e)
    }
}

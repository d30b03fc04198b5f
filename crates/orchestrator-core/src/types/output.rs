//! Command results: exit status, captured output, background snapshots and
//! the capped buffer output is kept in.

use std::fmt;
use std::time::Duration;

/// Why a command could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartFailure {
    /// The program was not found (shell convention: exit 127).
    NotFound,
    /// The program exists but could not be executed (exit 126).
    PermissionDenied,
    /// Anything else that prevented the start.
    Other,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it (not one of runbox's limit kills).
    Signaled(i32),
    /// The wall timeout ended it (and its whole tree).
    TimedOut,
    /// The memory limit ended it (an OOM kill).
    MemoryLimitExceeded,
    /// It wrote more than the output cap; it was stopped.
    OutputLimitExceeded,
    /// It never ran.
    FailedToStart {
        /// The kind of failure.
        reason: StartFailure,
        /// What the OS said.
        message: String,
    },
}

impl ExitStatus {
    /// True for `Exited(0)`.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Exited(0))
    }

    /// Stable name: "exited", "signaled", "timed_out",
    /// "memory_limit_exceeded", "output_limit_exceeded", "failed_to_start".
    pub fn name(&self) -> &'static str {
        match self {
            ExitStatus::Exited(_) => "exited",
            ExitStatus::Signaled(_) => "signaled",
            ExitStatus::TimedOut => "timed_out",
            ExitStatus::MemoryLimitExceeded => "memory_limit_exceeded",
            ExitStatus::OutputLimitExceeded => "output_limit_exceeded",
            ExitStatus::FailedToStart { .. } => "failed_to_start",
        }
    }

    /// The exit code, when the command exited.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(c) => Some(*c),
            _ => None,
        }
    }

    /// The signal, when a signal ended it.
    pub fn signal(&self) -> Option<i32> {
        match self {
            ExitStatus::Signaled(s) => Some(*s),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by signal {s}"),
            ExitStatus::TimedOut => f.write_str("timed out"),
            ExitStatus::MemoryLimitExceeded => f.write_str("memory limit exceeded"),
            ExitStatus::OutputLimitExceeded => f.write_str("output limit exceeded"),
            ExitStatus::FailedToStart { message, .. } => write!(f, "failed to start: {message}"),
        }
    }
}

/// The result of a command.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Captured stdout, at most the output cap.
    pub stdout: Vec<u8>,
    /// Captured stderr, at most the output cap.
    pub stderr: Vec<u8>,
    /// stdout went over the cap and was cut.
    pub stdout_truncated: bool,
    /// stderr went over the cap and was cut.
    pub stderr_truncated: bool,
    /// Wall-clock time from start to end.
    pub wall_time: Duration,
    /// CPU time (user + system) of the whole tree, where known.
    pub cpu_time: Option<Duration>,
    /// Peak memory of the sandbox in bytes, where known.
    pub peak_memory: Option<u64>,
}

impl ExecOutput {
    /// stdout as (lossy) UTF-8.
    pub fn stdout_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }
    /// stderr as (lossy) UTF-8.
    pub fn stderr_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// A background process's state: output so far and, once it ended, how.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSnapshot {
    /// `None` while it runs.
    pub status: Option<ExitStatus>,
    /// stdout so far (capped).
    pub stdout: Vec<u8>,
    /// stderr so far (capped).
    pub stderr: Vec<u8>,
    /// stdout went over the cap.
    pub stdout_truncated: bool,
    /// stderr went over the cap.
    pub stderr_truncated: bool,
}

/// A byte buffer that keeps at most `cap` bytes and remembers whether more
/// were offered. Backends use it to cap captured output.
#[derive(Debug, Clone, Default)]
pub struct CappedBuffer {
    data: Vec<u8>,
    cap: u64,
    truncated: bool,
}

impl CappedBuffer {
    /// A buffer that keeps at most `cap` bytes.
    pub fn new(cap: u64) -> Self {
        Self {
            data: Vec::new(),
            cap,
            truncated: false,
        }
    }

    /// Appends what fits; returns the part that was kept (for live output).
    /// Marks the buffer truncated when anything was dropped.
    pub fn push<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        let room = self.cap.saturating_sub(self.data.len() as u64);
        let keep = (chunk.len() as u64).min(room) as usize;
        if keep < chunk.len() {
            self.truncated = true;
        }
        self.data.extend_from_slice(&chunk[..keep]);
        &chunk[..keep]
    }

    /// Bytes kept so far.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Whether anything was dropped.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The bytes and the truncated flag.
    pub fn into_parts(self) -> (Vec<u8>, bool) {
        (self.data, self.truncated)
    }
}

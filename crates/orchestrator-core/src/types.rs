//! Plain data of the contract: identifiers, workspace and command specs,
//! command results, capabilities and availability.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::limits::{LimitKind, ResourceLimits};

fn check_id(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} id {s:?} is not 1-128 characters of [A-Za-z0-9._-] not starting with '.'"
        )))
    }
}

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier: 1–128 characters of
            /// `[A-Za-z0-9._-]`, not starting with `.`, so it is always safe
            /// as a file name, a label value and a cgroup name.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                check_id($what, &s)?;
                Ok(Self(s))
            }

            /// The identifier as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// Identifies a workspace (a native directory, a docker container).
    WorkspaceId,
    "workspace"
);
id_type!(
    /// Identifies a background process inside a workspace.
    ProcessId,
    "process"
);

/// What to provision.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceSpec {
    /// The execution this workspace serves, recorded on the sandbox (label,
    /// metadata) so a crashed run's sandboxes can be found.
    pub execution_id: Option<String>,
    /// Image for container backends; ignored by native.
    pub image: Option<String>,
    /// Extra labels for the sandbox (container labels, native metadata).
    pub labels: BTreeMap<String, String>,
    /// Limits applied at creation (same as a later `apply_resource_limits`).
    pub limits: Option<ResourceLimits>,
}

impl WorkspaceSpec {
    /// An empty spec.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the execution id.
    pub fn execution_id(mut self, id: impl Into<String>) -> Self {
        self.execution_id = Some(id.into());
        self
    }
    /// Sets the image (container backends).
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }
    /// Adds a label.
    pub fn label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    /// Sets limits applied at creation.
    pub fn limits(mut self, limits: ResourceLimits) -> Self {
        self.limits = Some(limits);
        self
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives output chunks as the command writes them (live output).
///
/// The callback runs on the backend's reader task: keep it short (write to a
/// terminal, push to a channel). Chunks are delivered up to the output cap.
#[derive(Clone)]
pub struct OutputSink(Arc<SinkFn>);

/// The callback behind an [`OutputSink`].
pub type SinkFn = dyn Fn(Stream, &[u8]) + Send + Sync;

impl OutputSink {
    /// Wraps a callback.
    pub fn new(f: impl Fn(Stream, &[u8]) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Hands one chunk to the callback.
    pub fn emit(&self, stream: Stream, data: &[u8]) {
        if !data.is_empty() {
            (self.0)(stream, data)
        }
    }
}

impl fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OutputSink(..)")
    }
}

/// A command to run inside a workspace.
#[derive(Debug, Clone, Default)]
pub struct CommandSpec {
    /// Program and arguments; `argv[0]` is looked up in the sandbox's PATH.
    pub argv: Vec<String>,
    /// Environment on top of the clean base (PATH, HOME, LANG).
    pub env: BTreeMap<String, String>,
    /// Working directory relative to the workspace root (default: the root).
    pub workdir: Option<String>,
    /// Bytes written to the command's stdin (then closed). `None`: empty stdin.
    pub stdin: Option<Vec<u8>>,
    /// Wall timeout of this command (the smaller of this and the workspace's
    /// wall limit applies).
    pub timeout: Option<Duration>,
    /// Output cap per stream (the smaller of this and the workspace's output
    /// limit applies).
    pub output_limit: Option<u64>,
    /// Live output: chunks are handed to this sink as they arrive.
    pub output: Option<OutputSink>,
}

impl CommandSpec {
    /// A command from its argv.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
    /// `sh -c SCRIPT`.
    pub fn shell(script: impl Into<String>) -> Self {
        Self::new(["sh".to_string(), "-c".to_string(), script.into()])
    }
    /// Adds an environment variable.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }
    /// Sets the working directory (relative to the workspace root).
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = Some(dir.into());
        self
    }
    /// Sets stdin.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }
    /// Sets the wall timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    /// Sets the output cap per stream.
    pub fn output_limit(mut self, bytes: u64) -> Self {
        self.output_limit = Some(bytes);
        self
    }
    /// Sets the live output sink.
    pub fn output(mut self, sink: OutputSink) -> Self {
        self.output = Some(sink);
        self
    }

    /// Checks what every backend must check: a non-empty argv without NUL
    /// bytes, environment names that are non-empty and contain neither `=`
    /// nor NUL, a sane timeout and output cap.
    pub fn validate(&self) -> Result<()> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(Error::invalid("command argv is empty"));
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid("command argv contains a NUL byte"));
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(Error::invalid(format!(
                    "environment variable name {k:?} is empty or contains '=' or NUL"
                )));
            }
            if v.contains('\0') {
                return Err(Error::invalid(format!(
                    "environment variable {k} contains a NUL byte"
                )));
            }
        }
        let probe = ResourceLimits {
            wall_timeout: self.timeout,
            output_bytes: self.output_limit,
            ..ResourceLimits::default()
        };
        probe.validate()
    }
}

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

/// What a backend can do and enforce. Conformance cases are gated on it: a
/// case the backend does not claim is reported as skipped, not passed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// copy_to / copy_from work.
    pub copy: bool,
    /// start_background / process_status / wait_process work.
    pub background: bool,
    /// workspace_path gives a host path.
    pub direct_access: bool,
    /// Commands have no network access.
    pub network_isolation: bool,
    /// Out-of-memory kills are detected and reported as MemoryLimitExceeded.
    pub oom_detection: bool,
    /// Limits this backend enforces on this host.
    pub limits: Vec<LimitKind>,
}

impl Capabilities {
    /// Does the backend enforce this limit kind here?
    pub fn enforces(&self, kind: LimitKind) -> bool {
        self.limits.contains(&kind)
    }
}

/// Whether a backend can serve requests, and if not (or only partly) why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    /// It can serve requests.
    pub available: bool,
    /// Why it cannot, or how it is degraded.
    pub reason: Option<String>,
}

impl Availability {
    /// Available, no remarks.
    pub fn yes() -> Self {
        Self {
            available: true,
            reason: None,
        }
    }
    /// Available but degraded.
    pub fn degraded(reason: impl Into<String>) -> Self {
        Self {
            available: true,
            reason: Some(reason.into()),
        }
    }
    /// Not available.
    pub fn no(reason: impl Into<String>) -> Self {
        Self {
            available: false,
            reason: Some(reason.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_are_validated() {
        assert!(WorkspaceId::new("rb-123_abc.x").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "a b", ".hidden", "x\0"] {
            assert!(WorkspaceId::new(bad).is_err(), "{bad:?}");
        }
        assert!(WorkspaceId::new("a".repeat(129)).is_err());
    }

    #[test]
    fn command_validation() {
        assert!(CommandSpec::new(Vec::<String>::new()).validate().is_err());
        assert!(CommandSpec::new([""]).validate().is_err());
        assert!(CommandSpec::new(["a\0b"]).validate().is_err());
        assert!(CommandSpec::new(["true"])
            .env("A=B", "x")
            .validate()
            .is_err());
        assert!(CommandSpec::new(["true"]).env("", "x").validate().is_err());
        assert!(CommandSpec::new(["true"])
            .timeout(Duration::ZERO)
            .validate()
            .is_err());
        assert!(CommandSpec::new(["true"])
            .output_limit(0)
            .validate()
            .is_err());
        assert!(CommandSpec::shell("echo hi")
            .env("A", "b")
            .validate()
            .is_ok());
    }

    #[test]
    fn capped_buffer_caps() {
        let mut b = CappedBuffer::new(5);
        assert_eq!(b.push(b"abc"), b"abc");
        assert!(!b.truncated());
        assert_eq!(b.push(b"defg"), b"de");
        assert!(b.truncated());
        assert_eq!(b.push(b"x"), b"");
        assert_eq!(b.into_parts(), (b"abcde".to_vec(), true));
    }

    #[test]
    fn status_names() {
        assert_eq!(ExitStatus::Exited(3).code(), Some(3));
        assert_eq!(ExitStatus::Signaled(9).signal(), Some(9));
        assert_eq!(ExitStatus::TimedOut.name(), "timed_out");
        assert!(ExitStatus::Exited(0).success());
        assert!(!ExitStatus::Exited(1).success());
    }

    proptest! {
        #[test]
        fn id_roundtrip(s in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}") {
            let id = WorkspaceId::new(s.clone()).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
        }

        #[test]
        fn ids_never_contain_separators(s in ".{0,140}") {
            if let Ok(id) = WorkspaceId::new(s) {
                prop_assert!(!id.as_str().contains('/'));
                prop_assert!(id.as_str() != "." && id.as_str() != "..");
            }
        }

        #[test]
        fn capped_buffer_never_exceeds(cap in 0u64..64, chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..32), 0..8)) {
            let mut b = CappedBuffer::new(cap);
            let total: usize = chunks.iter().map(Vec::len).sum();
            for c in &chunks { b.push(c); }
            prop_assert!(b.data().len() as u64 <= cap);
            prop_assert_eq!(b.truncated(), total as u64 > cap);
        }
    }
}

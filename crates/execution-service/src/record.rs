//! Execution records: what was asked ([`ExecutionRequest`]), and what became
//! of it ([`ExecutionRecord`] with its validated [`ExecutionState`] machine).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orchestrator_core::{
    paths, CommandSpec, Error as CoreError, ExecOutput, LimitReport, OutputSink, ResourceLimits,
    WorkspaceId,
};
use serde::{Deserialize, Serialize};

use crate::owner::OwnerInfo;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Identifies an execution: 1–128 characters of `[A-Za-z0-9._-]`, not
/// starting with `.` (so it is safe as a label value and a file name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExecutionId(String);

impl ExecutionId {
    /// Validates and wraps an id.
    pub fn new(s: impl Into<String>) -> Result<Self, CoreError> {
        let s = s.into();
        // Same rules as workspace ids.
        WorkspaceId::new(s.clone())
            .map_err(|_| CoreError::invalid(format!("execution id {s:?} is not 1-128 characters of [A-Za-z0-9._-] not starting with '.'")))?;
        Ok(Self(s))
    }

    /// A fresh, unique id: `ex-<time>-<pid>-<counter><random>`.
    pub fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        let random = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(nanos);
            h.write_u64(n);
            h.finish() & 0xffff
        };
        Self(format!(
            "ex-{:x}-{:x}-{n:x}{random:04x}",
            nanos / 1_000_000,
            std::process::id()
        ))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ExecutionId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        Self::new(s)
    }
}

impl TryFrom<String> for ExecutionId {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, CoreError> {
        Self::new(s)
    }
}

impl From<ExecutionId> for String {
    fn from(id: ExecutionId) -> String {
        id.0
    }
}

/// The life of an execution.
///
/// ```text
/// pending ──► starting ──► running ──► completed
///    │            │           ├──────► failed
///    │            ├──► failed └──────► cancelled
///    └──► cancelled ◄──┘
/// ```
/// Terminal states (completed, failed, cancelled) have no way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Submitted, nothing provisioned.
    Pending,
    /// A sandbox is being provisioned.
    Starting,
    /// The sandbox exists (and its command, if any, was started).
    Running,
    /// Torn down after the run; see the record's result.
    Completed,
    /// The service could not run it (backend error, strict limit, crash of
    /// the owning process); see the record's error.
    Failed,
    /// Cancelled by a caller (or its future was dropped).
    Cancelled,
}

impl ExecutionState {
    /// Every state.
    pub const ALL: [ExecutionState; 6] = [
        ExecutionState::Pending,
        ExecutionState::Starting,
        ExecutionState::Running,
        ExecutionState::Completed,
        ExecutionState::Failed,
        ExecutionState::Cancelled,
    ];

    /// Stable name ("pending", ...).
    pub fn name(self) -> &'static str {
        match self {
            ExecutionState::Pending => "pending",
            ExecutionState::Starting => "starting",
            ExecutionState::Running => "running",
            ExecutionState::Completed => "completed",
            ExecutionState::Failed => "failed",
            ExecutionState::Cancelled => "cancelled",
        }
    }

    /// Parses a [`ExecutionState::name`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.name() == s)
    }

    /// Completed, failed or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionState::Completed | ExecutionState::Failed | ExecutionState::Cancelled
        )
    }

    /// Starting or running: a sandbox may exist and someone owns it.
    pub fn is_active(self) -> bool {
        matches!(self, ExecutionState::Starting | ExecutionState::Running)
    }

    /// Is `self → next` a legal transition?
    pub fn can_transition_to(self, next: ExecutionState) -> bool {
        use ExecutionState::*;
        matches!(
            (self, next),
            (Pending, Starting)
                | (Pending, Cancelled)
                | (Starting, Running)
                | (Starting, Failed)
                | (Starting, Cancelled)
                | (Running, Completed)
                | (Running, Failed)
                | (Running, Cancelled)
        )
    }
}

impl fmt::Display for ExecutionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An illegal state transition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition {from} -> {to}")]
pub struct InvalidTransition {
    /// The current state.
    pub from: ExecutionState,
    /// The state asked for.
    pub to: ExecutionState,
}

/// A file to copy between the host and the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileTransfer {
    /// The host path.
    pub host: PathBuf,
    /// The sandbox path, relative to the workspace root.
    pub sandbox: String,
}

/// Which backend should run an execution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendPreference {
    /// The service's orchestrator (native unless replaced), unless
    /// `StartOptions::use_docker` says otherwise.
    #[default]
    Default,
    /// The service's docker orchestrator (same as `use_docker: true`).
    Docker,
    /// A backend by name: the orchestrator's or the docker orchestrator's
    /// [`orchestrator_core::Orchestrator::name`].
    Named(String),
}

/// What to run: the command, its files, limits and backend. Plain data with
/// a builder; everything but the live output sink is persisted.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ExecutionRequest {
    /// Program and arguments. Empty: provision the sandbox only (`start`
    /// then starts nothing).
    pub command: Vec<String>,
    /// Environment on top of the backend's clean base.
    pub env: BTreeMap<String, String>,
    /// Files copied into the sandbox before the command runs.
    pub files_in: Vec<FileTransfer>,
    /// Files copied out of the sandbox after the command ran (by `execute`).
    pub files_out: Vec<FileTransfer>,
    /// Resource limits (applied to the sandbox).
    #[serde(with = "limits_serde")]
    pub limits: ResourceLimits,
    /// Backend preference.
    pub backend: BackendPreference,
    /// Image for container backends.
    pub image: Option<String>,
    /// Working directory relative to the workspace root.
    pub workdir: Option<String>,
    /// Bytes fed to the command's stdin.
    pub stdin: Option<Vec<u8>>,
    /// Extra labels for the sandbox.
    pub labels: BTreeMap<String, String>,
    /// Live output: chunks are handed to this sink as the command writes
    /// them. Not persisted.
    #[serde(skip)]
    pub output: Option<OutputSink>,
}

impl fmt::Debug for ExecutionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutionRequest")
            .field("command", &self.command)
            .field("env", &self.env)
            .field("files_in", &self.files_in)
            .field("files_out", &self.files_out)
            .field("limits", &self.limits)
            .field("backend", &self.backend)
            .field("image", &self.image)
            .field("workdir", &self.workdir)
            .field("stdin", &self.stdin.as_ref().map(Vec::len))
            .field("labels", &self.labels)
            .field("output", &self.output.is_some())
            .finish()
    }
}

impl PartialEq for ExecutionRequest {
    fn eq(&self, other: &Self) -> bool {
        // The sink is not data; compare everything else.
        self.command == other.command
            && self.env == other.env
            && self.files_in == other.files_in
            && self.files_out == other.files_out
            && self.limits == other.limits
            && self.backend == other.backend
            && self.image == other.image
            && self.workdir == other.workdir
            && self.stdin == other.stdin
            && self.labels == other.labels
    }
}

impl ExecutionRequest {
    /// A request running `argv`.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            command: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// A request running `sh -c SCRIPT`.
    pub fn shell(script: impl Into<String>) -> Self {
        Self::new(["sh".to_string(), "-c".to_string(), script.into()])
    }

    /// A request that only provisions a sandbox (no command).
    pub fn sandbox_only() -> Self {
        Self::default()
    }

    /// Adds an environment variable.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    /// Copies `host` into the sandbox at `sandbox` before the command.
    pub fn file_in(mut self, host: impl Into<PathBuf>, sandbox: impl Into<String>) -> Self {
        self.files_in.push(FileTransfer {
            host: host.into(),
            sandbox: sandbox.into(),
        });
        self
    }

    /// Copies `sandbox` out to `host` after the command.
    pub fn file_out(mut self, sandbox: impl Into<String>, host: impl Into<PathBuf>) -> Self {
        self.files_out.push(FileTransfer {
            host: host.into(),
            sandbox: sandbox.into(),
        });
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: ResourceLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the backend preference.
    pub fn backend(mut self, backend: BackendPreference) -> Self {
        self.backend = backend;
        self
    }

    /// Asks for the docker orchestrator (`true`) or the default (`false`).
    pub fn use_docker(mut self, yes: bool) -> Self {
        self.backend = if yes {
            BackendPreference::Docker
        } else {
            BackendPreference::Default
        };
        self
    }

    /// Sets the image (container backends).
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Sets the working directory.
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// Sets stdin.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Adds a sandbox label.
    pub fn label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }

    /// Sets the live output sink.
    pub fn output(mut self, sink: OutputSink) -> Self {
        self.output = Some(sink);
        self
    }

    /// The command to run, if the request has one.
    pub fn command_spec(&self) -> Option<CommandSpec> {
        if self.command.is_empty() {
            return None;
        }
        let mut cmd = CommandSpec::new(self.command.clone());
        cmd.env = self.env.clone();
        cmd.workdir = self.workdir.clone();
        cmd.stdin = self.stdin.clone();
        cmd.output = self.output.clone();
        Some(cmd)
    }

    /// Checks the request before anything is recorded: limits, command,
    /// sandbox paths.
    pub fn validate(&self) -> Result<(), CoreError> {
        self.limits.validate()?;
        if let Some(cmd) = self.command_spec() {
            cmd.validate()?;
        }
        if let Some(w) = &self.workdir {
            paths::sandbox_relative(w)?;
        }
        for f in self.files_in.iter().chain(&self.files_out) {
            paths::sandbox_relative(&f.sandbox)?;
            if f.host.as_os_str().is_empty() {
                return Err(CoreError::invalid("empty host path in a file transfer"));
            }
        }
        if let BackendPreference::Named(n) = &self.backend {
            if n.is_empty() {
                return Err(CoreError::invalid("empty backend name"));
            }
        }
        Ok(())
    }
}

/// How the command ended, as stored in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultSummary {
    /// [`orchestrator_core::ExitStatus::name`] ("exited", "timed_out", ...).
    pub status: String,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal, when one ended it.
    pub signal: Option<i32>,
    /// Wall time in milliseconds.
    pub wall_ms: u64,
    /// CPU time in milliseconds, where known.
    pub cpu_ms: Option<u64>,
    /// Peak memory in bytes, where known.
    pub peak_memory: Option<u64>,
    /// Bytes of stdout captured.
    pub stdout_bytes: u64,
    /// Bytes of stderr captured.
    pub stderr_bytes: u64,
    /// stdout was cut at the cap.
    pub stdout_truncated: bool,
    /// stderr was cut at the cap.
    pub stderr_truncated: bool,
}

impl ResultSummary {
    /// Summarises an [`ExecOutput`].
    pub fn from_output(out: &ExecOutput) -> Self {
        Self {
            status: out.status.name().to_string(),
            exit_code: out.status.code(),
            signal: out.status.signal(),
            wall_ms: out.wall_time.as_millis() as u64,
            cpu_ms: out.cpu_time.map(|d| d.as_millis() as u64),
            peak_memory: out.peak_memory,
            stdout_bytes: out.stdout.len() as u64,
            stderr_bytes: out.stderr.len() as u64,
            stdout_truncated: out.stdout_truncated,
            stderr_truncated: out.stderr_truncated,
        }
    }

    /// Did the command exit with code 0?
    pub fn success(&self) -> bool {
        self.status == "exited" && self.exit_code == Some(0)
    }
}

/// How one limit was enforced, as stored in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSummary {
    /// [`orchestrator_core::LimitKind::name`].
    pub kind: String,
    /// The requested value, printed.
    pub requested: String,
    /// [`orchestrator_core::Mechanism::name`], or `None` when unenforced.
    pub enforced_by: Option<String>,
    /// The backend's note.
    pub note: Option<String>,
}

impl LimitSummary {
    /// One summary per entry of a [`LimitReport`].
    pub fn from_report(report: &LimitReport) -> Vec<Self> {
        report
            .entries
            .iter()
            .map(|e| Self {
                kind: e.kind.name().to_string(),
                requested: e.requested.to_string(),
                enforced_by: e.enforced_by.map(|m| m.name().to_string()),
                note: e.note.clone(),
            })
            .collect()
    }
}

/// One execution: its request and everything that happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// Its id.
    pub id: ExecutionId,
    /// Current state.
    pub state: ExecutionState,
    /// What was asked.
    pub request: ExecutionRequest,
    /// Name of the backend that holds (or held) the sandbox.
    pub backend: Option<String>,
    /// Whether the sandbox is on the service's docker orchestrator slot.
    pub used_docker: bool,
    /// The sandbox (workspace or container) id.
    pub sandbox_id: Option<String>,
    /// The background process started by `start`, if any.
    pub process_id: Option<String>,
    /// The sandbox was torn down (cleanup succeeded).
    pub sandbox_released: bool,
    /// How the command ended, when known.
    pub result: Option<ResultSummary>,
    /// How each limit is enforced.
    pub limits_applied: Vec<LimitSummary>,
    /// Why it failed or was cancelled (or a teardown problem).
    pub error: Option<String>,
    /// The process that started it (for crash recovery).
    pub owner: Option<OwnerInfo>,
    /// When it was submitted (ms since the epoch).
    pub created_at_ms: u64,
    /// When `start` began.
    pub started_at_ms: Option<u64>,
    /// When it reached a terminal state.
    pub finished_at_ms: Option<u64>,
    /// Last change.
    pub updated_at_ms: u64,
    /// Optimistic-concurrency version: bumped by the store on every update.
    pub version: u64,
}

impl ExecutionRecord {
    /// A pending record for a request.
    pub fn new(id: ExecutionId, request: ExecutionRequest) -> Self {
        let now = now_ms();
        Self {
            id,
            state: ExecutionState::Pending,
            request,
            backend: None,
            used_docker: false,
            sandbox_id: None,
            process_id: None,
            sandbox_released: false,
            result: None,
            limits_applied: Vec::new(),
            error: None,
            owner: None,
            created_at_ms: now,
            started_at_ms: None,
            finished_at_ms: None,
            updated_at_ms: now,
            version: 0,
        }
    }

    /// Moves to `next`, or fails without changing anything when the
    /// transition is illegal. Sets the timestamps.
    pub fn transition(&mut self, next: ExecutionState) -> Result<(), InvalidTransition> {
        if !self.state.can_transition_to(next) {
            return Err(InvalidTransition {
                from: self.state,
                to: next,
            });
        }
        let now = now_ms();
        self.state = next;
        self.updated_at_ms = now;
        if next == ExecutionState::Starting {
            self.started_at_ms = Some(now);
        }
        if next.is_terminal() {
            self.finished_at_ms = Some(now);
        }
        Ok(())
    }

    /// The sandbox id as a [`WorkspaceId`].
    pub fn sandbox(&self) -> Option<WorkspaceId> {
        self.sandbox_id
            .as_deref()
            .and_then(|s| WorkspaceId::new(s).ok())
    }

    /// Checks the record's internal consistency; `Err` describes the first
    /// violation. (Used by tests and by the stores when loading.)
    pub fn check_invariants(&self) -> Result<(), String> {
        let s = self.state;
        if s == ExecutionState::Running && self.sandbox_id.is_none() {
            return Err(format!("{}: running without a sandbox", self.id));
        }
        if s == ExecutionState::Running && self.sandbox_released {
            return Err(format!("{}: running with a released sandbox", self.id));
        }
        if s == ExecutionState::Pending
            && (self.sandbox_id.is_some() || self.backend.is_some() || self.started_at_ms.is_some())
        {
            return Err(format!("{}: pending but already provisioned", self.id));
        }
        if s == ExecutionState::Completed && self.sandbox_id.is_some() && !self.sandbox_released {
            return Err(format!(
                "{}: completed but its sandbox was not released",
                self.id
            ));
        }
        if s.is_terminal() != self.finished_at_ms.is_some() {
            return Err(format!("{}: finished_at does not match state {s}", self.id));
        }
        if s.is_active() && self.backend.is_none() {
            return Err(format!("{}: {s} without a backend", self.id));
        }
        Ok(())
    }
}

/// Serde for [`ResourceLimits`] (a core type without serde): durations as
/// milliseconds.
mod limits_serde {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize, Deserialize, Default)]
    #[serde(default)]
    struct Repr {
        memory_bytes: Option<u64>,
        cpus: Option<f64>,
        pids: Option<u64>,
        wall_timeout_ms: Option<u64>,
        cpu_time_ms: Option<u64>,
        file_size_bytes: Option<u64>,
        open_files: Option<u64>,
        output_bytes: Option<u64>,
        strict: bool,
    }

    fn ms(d: Option<Duration>) -> Option<u64> {
        d.map(|d| d.as_millis().min(u64::MAX as u128) as u64)
    }

    pub fn serialize<S: Serializer>(l: &ResourceLimits, s: S) -> Result<S::Ok, S::Error> {
        Repr {
            memory_bytes: l.memory_bytes,
            cpus: l.cpus,
            pids: l.pids,
            wall_timeout_ms: ms(l.wall_timeout),
            cpu_time_ms: ms(l.cpu_time),
            file_size_bytes: l.file_size_bytes,
            open_files: l.open_files,
            output_bytes: l.output_bytes,
            strict: l.strict,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ResourceLimits, D::Error> {
        let r = Repr::deserialize(d)?;
        Ok(ResourceLimits {
            memory_bytes: r.memory_bytes,
            cpus: r.cpus,
            pids: r.pids,
            wall_timeout: r.wall_timeout_ms.map(Duration::from_millis),
            cpu_time: r.cpu_time_ms.map(Duration::from_millis),
            file_size_bytes: r.file_size_bytes,
            open_files: r.open_files,
            output_bytes: r.output_bytes,
            strict: r.strict,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids() {
        let a = ExecutionId::generate();
        let b = ExecutionId::generate();
        assert_ne!(a, b);
        assert!(ExecutionId::new(a.as_str()).is_ok());
        assert!(ExecutionId::new("../x").is_err());
        assert!(ExecutionId::new("").is_err());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<ExecutionId>(&json).unwrap(), a);
        assert!(serde_json::from_str::<ExecutionId>("\"a/b\"").is_err());
    }

    #[test]
    fn transitions() {
        use ExecutionState::*;
        let mut r = ExecutionRecord::new(ExecutionId::generate(), ExecutionRequest::default());
        assert!(r.transition(Running).is_err());
        assert_eq!(r.state, Pending);
        r.transition(Starting).unwrap();
        assert!(r.started_at_ms.is_some());
        r.transition(Running).unwrap();
        r.transition(Completed).unwrap();
        assert!(r.finished_at_ms.is_some());
        for s in ExecutionState::ALL {
            assert!(r.transition(s).is_err(), "completed -> {s}");
        }
        for s in ExecutionState::ALL {
            assert_eq!(ExecutionState::parse(s.name()), Some(s));
            if s.is_terminal() {
                assert!(ExecutionState::ALL.iter().all(|n| !s.can_transition_to(*n)));
            }
        }
    }

    #[test]
    fn request_roundtrips_without_sink() {
        let req = ExecutionRequest::shell("echo hi")
            .env("A", "b")
            .file_in("/tmp/x", "x")
            .file_out("y", "/tmp/y")
            .limits(
                ResourceLimits::builder()
                    .memory_bytes(64 << 20)
                    .wall_timeout(Duration::from_millis(1500))
                    .strict(true)
                    .build()
                    .unwrap(),
            )
            .use_docker(true)
            .image("busybox")
            .stdin(b"in".to_vec())
            .output(OutputSink::new(|_, _| {}));
        let rec = ExecutionRecord::new(ExecutionId::generate(), req.clone());
        let json = serde_json::to_string(&rec).unwrap();
        let back: ExecutionRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rec);
        assert!(back.request.output.is_none());
        assert!(req.validate().is_ok());
        assert!(ExecutionRequest::new(["x"])
            .file_in("/a", "../b")
            .validate()
            .is_err());
        assert!(ExecutionRequest::new(["x"])
            .workdir("/abs")
            .validate()
            .is_err());
    }

    proptest! {
        #[test]
        fn random_transitions_keep_legal_states(steps in proptest::collection::vec(0usize..6, 0..20)) {
            let mut r = ExecutionRecord::new(ExecutionId::generate(), ExecutionRequest::default());
            for s in steps {
                let next = ExecutionState::ALL[s];
                let before = r.state;
                match r.transition(next) {
                    Ok(()) => prop_assert!(before.can_transition_to(next)),
                    Err(_) => prop_assert_eq!(r.state, before),
                }
            }
        }
    }
}

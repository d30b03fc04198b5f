//! [`FakeOrchestrator`]: an in-memory backend for unit tests (feature
//! `testing`).
//!
//! It implements the whole [`Orchestrator`] trait without touching the host
//! (except to read the host files given to `copy_to` and write the ones asked
//! for by `copy_from`), and:
//!
//! - records every call ([`FakeOrchestrator::calls`]);
//! - has a configurable name and [`Capabilities`];
//! - returns scripted results ([`FakeOrchestrator::set_output`],
//!   [`FakeOrchestrator::script_file`], [`FakeOrchestrator::set_run_delay`]);
//! - fails any operation on demand ([`FakeOrchestrator::fail_on`],
//!   [`FakeOrchestrator::fail_once`], [`FakeOrchestrator::fail_with_backend_error`]);
//! - tracks live workspaces, so [`Orchestrator::residue`], cleanup and
//!   [`Orchestrator::reap_orphans`] behave like a real backend's.
//!
//! ```
//! use std::sync::Arc;
//! use orchestrator_core::testing::{FakeOrchestrator, Op};
//! use orchestrator_core::{CommandSpec, Orchestrator, WorkspaceSpec};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let fake = Arc::new(FakeOrchestrator::named("native"));
//! let ws = fake.create_workspace(&WorkspaceSpec::new()).await.unwrap();
//! assert!(fake.is_live(&ws));
//! fake.fail_once(Op::RunCommand, orchestrator_core::Error::invalid("boom"));
//! assert!(fake.run_command(&ws, &CommandSpec::new(["true"])).await.is_err());
//! assert!(fake.run_command(&ws, &CommandSpec::new(["true"])).await.is_ok());
//! fake.cleanup(&ws).await.unwrap();
//! assert!(fake.residue(&ws).await.unwrap().is_empty());
//! assert_eq!(fake.count(Op::RunCommand), 2);
//! # });
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::limits::{LimitEntry, LimitKind, LimitReport, Mechanism, ResourceLimits};
use crate::orchestrator::Orchestrator;
use crate::paths::sandbox_relative;
use crate::types::{
    Availability, Capabilities, CommandSpec, ExecOutput, ExitStatus, ProcessId, ProcessSnapshot,
    Stream, WorkspaceId, WorkspaceSpec,
};

/// The operations of the [`Orchestrator`] trait, for failure injection and
/// call counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`Orchestrator::is_available`].
    IsAvailable,
    /// [`Orchestrator::create_workspace`].
    CreateWorkspace,
    /// [`Orchestrator::apply_resource_limits`].
    ApplyResourceLimits,
    /// [`Orchestrator::copy_to`].
    CopyTo,
    /// [`Orchestrator::copy_from`].
    CopyFrom,
    /// [`Orchestrator::run_command`].
    RunCommand,
    /// [`Orchestrator::start_background`].
    StartBackground,
    /// [`Orchestrator::process_status`].
    ProcessStatus,
    /// [`Orchestrator::wait_process`].
    WaitProcess,
    /// [`Orchestrator::stop`].
    Stop,
    /// [`Orchestrator::cleanup`].
    Cleanup,
    /// [`Orchestrator::residue`].
    Residue,
    /// [`Orchestrator::reap_orphans`].
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
        sandbox: String,
    },
    /// `copy_from(id, sandbox, host)`.
    CopyFrom {
        /// Workspace.
        id: WorkspaceId,
        /// Sandbox source.
        sandbox: String,
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

/// The error a [`FakeOrchestrator`] injects with
/// [`FakeOrchestrator::fail_with_backend_error`], wrapped in
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

#[derive(Debug, Clone)]
struct FakeProcess {
    output: ExecOutput,
    stopped: bool,
}

#[derive(Debug, Default)]
struct FakeWorkspace {
    files: BTreeMap<PathBuf, Vec<u8>>,
    limits: Option<ResourceLimits>,
    processes: BTreeMap<ProcessId, FakeProcess>,
    orphan: bool,
    execution_id: Option<String>,
}

struct State {
    calls: Vec<Call>,
    failures: HashMap<Op, Failure>,
    workspaces: BTreeMap<WorkspaceId, FakeWorkspace>,
    output: ExecOutput,
    scripted_files: BTreeMap<PathBuf, Vec<u8>>,
    run_delay: Option<Duration>,
    availability: Availability,
    created_total: u64,
}

/// An in-memory [`Orchestrator`] that records calls, returns scripted results
/// and fails on demand. Cheap to share as `Arc<FakeOrchestrator>` (which
/// coerces to `Arc<dyn Orchestrator>`); every setter takes `&self`.
pub struct FakeOrchestrator {
    name: String,
    capabilities: Capabilities,
    next_id: AtomicU64,
    state: Mutex<State>,
}

impl fmt::Debug for FakeOrchestrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeOrchestrator")
            .field("name", &self.name)
            .field("live", &self.live_workspaces())
            .finish()
    }
}

impl Default for FakeOrchestrator {
    fn default() -> Self {
        Self::new()
    }
}

/// Capabilities claiming everything: copy, background, network isolation,
/// OOM detection and every limit kind (no direct access: the fake has no host
/// directory).
pub fn full_capabilities() -> Capabilities {
    Capabilities {
        copy: true,
        background: true,
        direct_access: false,
        network_isolation: true,
        oom_detection: true,
        limits: LimitKind::ALL.to_vec(),
    }
}

/// A successful, empty [`ExecOutput`] (exit code 0, no output).
pub fn ok_output() -> ExecOutput {
    ExecOutput {
        status: ExitStatus::Exited(0),
        stdout: Vec::new(),
        stderr: Vec::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        wall_time: Duration::from_millis(1),
        cpu_time: None,
        peak_memory: None,
    }
}

impl FakeOrchestrator {
    /// A fake named "fake" with [`full_capabilities`].
    pub fn new() -> Self {
        Self::named("fake")
    }

    /// A fake with this name (e.g. "native" or "docker" to stand in for a
    /// real backend) and [`full_capabilities`].
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            capabilities: full_capabilities(),
            next_id: AtomicU64::new(1),
            state: Mutex::new(State {
                calls: Vec::new(),
                failures: HashMap::new(),
                workspaces: BTreeMap::new(),
                output: ok_output(),
                scripted_files: BTreeMap::new(),
                run_delay: None,
                availability: Availability::yes(),
                created_total: 0,
            }),
        }
    }

    /// Replaces the capabilities (builder style). Limits whose kind is not in
    /// `capabilities.limits` are reported unenforced, and are
    /// [`Error::LimitNotEnforceable`] in strict mode.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not make every later assertion panic
        // with a poison error: the state is plain data, take it anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ----- scripting -------------------------------------------------------

    /// The output every `run_command` returns (and every background process
    /// ends with). Default: [`ok_output`].
    pub fn set_output(&self, output: ExecOutput) {
        self.lock().output = output;
    }

    /// A file every `run_command` / `start_background` "writes" into the
    /// workspace, so `copy_from` can fetch it afterwards.
    pub fn script_file(&self, sandbox_path: impl Into<PathBuf>, data: impl Into<Vec<u8>>) {
        self.lock()
            .scripted_files
            .insert(sandbox_path.into(), data.into());
    }

    /// Makes `run_command` take this long (a tokio sleep), so tests can drop
    /// a future mid-run or race other calls against it.
    pub fn set_run_delay(&self, delay: Option<Duration>) {
        self.lock().run_delay = delay;
    }

    /// What `is_available` answers. Default: available.
    pub fn set_availability(&self, availability: Availability) {
        self.lock().availability = availability;
    }

    /// Every call of `op` fails with the error `make` returns, until
    /// [`FakeOrchestrator::clear_failures`].
    pub fn fail_on(&self, op: Op, make: impl Fn() -> Error + Send + Sync + 'static) {
        self.lock()
            .failures
            .insert(op, Failure::Always(Arc::new(make)));
    }

    /// The next call of `op` fails with `error` (queued: call it twice to
    /// fail the next two calls).
    pub fn fail_once(&self, op: Op, error: Error) {
        let mut st = self.lock();
        match st.failures.get_mut(&op) {
            Some(Failure::Queue(q)) => q.push_back(error),
            _ => {
                st.failures
                    .insert(op, Failure::Queue(VecDeque::from([error])));
            }
        }
    }

    /// Every call of `op` fails with an [`Error::Backend`] whose source is a
    /// [`FakeError`] naming this backend and the operation.
    pub fn fail_with_backend_error(&self, op: Op) {
        let backend = self.name.clone();
        self.fail_on(op, move || {
            Error::backend(
                backend.clone(),
                FakeError {
                    backend: backend.clone(),
                    op,
                },
            )
        });
    }

    /// Removes every injected failure.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// Simulates a sandbox left behind by a crashed process: a live workspace
    /// that [`Orchestrator::reap_orphans`] will remove. Returns its id.
    pub fn add_orphan(&self, execution_id: Option<&str>) -> WorkspaceId {
        let id = self.fresh_id();
        let mut st = self.lock();
        st.created_total += 1;
        st.workspaces.insert(
            id.clone(),
            FakeWorkspace {
                orphan: true,
                execution_id: execution_id.map(str::to_string),
                ..FakeWorkspace::default()
            },
        );
        id
    }

    // ----- inspection ------------------------------------------------------

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The operations called so far, in order.
    pub fn ops(&self) -> Vec<Op> {
        self.lock().calls.iter().map(Call::op).collect()
    }

    /// How many times `op` was called.
    pub fn count(&self, op: Op) -> usize {
        self.lock().calls.iter().filter(|c| c.op() == op).count()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// The workspaces that exist now (created and not cleaned up), sorted.
    pub fn live_workspaces(&self) -> Vec<WorkspaceId> {
        self.lock().workspaces.keys().cloned().collect()
    }

    /// Does this workspace exist now?
    pub fn is_live(&self, id: &WorkspaceId) -> bool {
        self.lock().workspaces.contains_key(id)
    }

    /// How many workspaces were ever created (including orphans added).
    pub fn created_total(&self) -> u64 {
        self.lock().created_total
    }

    /// A file's content in a live workspace.
    pub fn file(&self, id: &WorkspaceId, sandbox_path: &str) -> Option<Vec<u8>> {
        let rel = sandbox_relative(sandbox_path).ok()?;
        self.lock().workspaces.get(id)?.files.get(&rel).cloned()
    }

    /// The limits last applied to a live workspace.
    pub fn limits(&self, id: &WorkspaceId) -> Option<ResourceLimits> {
        self.lock().workspaces.get(id)?.limits.clone()
    }

    /// The execution id a live workspace was created for.
    pub fn execution_of(&self, id: &WorkspaceId) -> Option<String> {
        self.lock().workspaces.get(id)?.execution_id.clone()
    }

    // ----- internals -------------------------------------------------------

    fn fresh_id(&self) -> WorkspaceId {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name: String = self
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(32)
            .collect();
        // "fake-" + [A-Za-z0-9-]{0,32} + "-" + digits is always a valid id.
        WorkspaceId::new(format!("fake-{name}-{n}")).expect("fake workspace ids are valid")
    }

    /// Records the call, yields once (so concurrent callers interleave like
    /// they would on a real backend), then applies any injected failure.
    async fn enter(&self, call: Call) -> Result<()> {
        let op = call.op();
        self.lock().calls.push(call);
        tokio::task::yield_now().await;
        let mut st = self.lock();
        let err = match st.failures.get_mut(&op) {
            None => None,
            Some(Failure::Always(make)) => Some(make()),
            Some(Failure::Queue(q)) => {
                let e = q.pop_front();
                if q.is_empty() {
                    st.failures.remove(&op);
                }
                e
            }
        };
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn with_ws<T>(
        &self,
        id: &WorkspaceId,
        f: impl FnOnce(&mut FakeWorkspace, &mut BTreeMap<PathBuf, Vec<u8>>) -> Result<T>,
    ) -> Result<T> {
        let mut st = self.lock();
        let st = &mut *st;
        match st.workspaces.get_mut(id) {
            Some(ws) => f(ws, &mut st.scripted_files),
            None => Err(Error::workspace_not_found(id)),
        }
    }

    fn unsupported(&self, operation: &str) -> Error {
        Error::Unsupported {
            backend: self.name.clone(),
            operation: operation.to_string(),
        }
    }
}

fn read_host_tree(host: &Path, rel: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) -> Result<()> {
    let md = std::fs::metadata(host)
        .map_err(|e| Error::invalid(format!("cannot read host path {}: {e}", host.display())))?;
    if md.is_dir() {
        let entries = std::fs::read_dir(host)
            .map_err(|e| Error::invalid(format!("cannot list host dir {}: {e}", host.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::invalid(e.to_string()))?;
            read_host_tree(&entry.path(), &rel.join(entry.file_name()), out)?;
        }
    } else {
        let data = std::fs::read(host).map_err(|e| {
            Error::invalid(format!("cannot read host file {}: {e}", host.display()))
        })?;
        out.push((rel.to_path_buf(), data));
    }
    Ok(())
}

#[async_trait]
impl Orchestrator for FakeOrchestrator {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    async fn is_available(&self) -> Availability {
        match self.enter(Call::IsAvailable).await {
            Ok(()) => self.lock().availability.clone(),
            Err(e) => Availability::no(e.to_string()),
        }
    }

    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        self.enter(Call::CreateWorkspace {
            execution_id: spec.execution_id.clone(),
            image: spec.image.clone(),
            labels: spec.labels.clone(),
        })
        .await?;
        if let Some(l) = &spec.limits {
            l.validate()?;
        }
        let id = self.fresh_id();
        let mut st = self.lock();
        st.created_total += 1;
        st.workspaces.insert(
            id.clone(),
            FakeWorkspace {
                limits: spec.limits.clone(),
                execution_id: spec.execution_id.clone(),
                ..FakeWorkspace::default()
            },
        );
        Ok(id)
    }

    async fn apply_resource_limits(
        &self,
        id: &WorkspaceId,
        limits: &ResourceLimits,
    ) -> Result<LimitReport> {
        self.enter(Call::ApplyResourceLimits {
            id: id.clone(),
            limits: limits.clone(),
        })
        .await?;
        limits.validate()?;
        let report = LimitReport {
            entries: limits
                .requested()
                .into_iter()
                .map(|(kind, requested)| {
                    let enforced = self.capabilities.enforces(kind);
                    LimitEntry {
                        kind,
                        requested,
                        enforced_by: enforced.then_some(Mechanism::Runbox),
                        note: (!enforced)
                            .then(|| format!("fake backend {} does not enforce it", self.name)),
                    }
                })
                .collect(),
        };
        if limits.strict {
            report.check_strict()?;
        }
        self.with_ws(id, |ws, _| {
            ws.limits = Some(limits.clone());
            Ok(())
        })?;
        Ok(report)
    }

    async fn copy_to(&self, id: &WorkspaceId, host_path: &Path, sandbox_path: &str) -> Result<()> {
        self.enter(Call::CopyTo {
            id: id.clone(),
            host: host_path.to_path_buf(),
            sandbox: sandbox_path.to_string(),
        })
        .await?;
        if !self.capabilities.copy {
            return Err(self.unsupported("copy_to"));
        }
        let rel = sandbox_relative(sandbox_path)?;
        self.with_ws(id, |_, _| Ok(()))?;
        let mut files = Vec::new();
        read_host_tree(host_path, &rel, &mut files)?;
        self.with_ws(id, |ws, _| {
            ws.files.extend(files);
            Ok(())
        })
    }

    async fn copy_from(
        &self,
        id: &WorkspaceId,
        sandbox_path: &str,
        host_path: &Path,
    ) -> Result<()> {
        self.enter(Call::CopyFrom {
            id: id.clone(),
            sandbox: sandbox_path.to_string(),
            host: host_path.to_path_buf(),
        })
        .await?;
        if !self.capabilities.copy {
            return Err(self.unsupported("copy_from"));
        }
        let rel = sandbox_relative(sandbox_path)?;
        let matches: Vec<(PathBuf, Vec<u8>)> = self.with_ws(id, |ws, _| {
            Ok(ws
                .files
                .iter()
                .filter(|(p, _)| p.starts_with(&rel))
                .map(|(p, d)| (p.clone(), d.clone()))
                .collect())
        })?;
        if matches.is_empty() {
            return Err(Error::NotFound {
                what: "sandbox path",
                id: sandbox_path.to_string(),
            });
        }
        for (p, data) in matches {
            let dest = match p.strip_prefix(&rel) {
                Ok(sub) if sub.as_os_str().is_empty() => host_path.to_path_buf(),
                Ok(sub) => host_path.join(sub),
                Err(_) => continue,
            };
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    Error::invalid(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            std::fs::write(&dest, data)
                .map_err(|e| Error::invalid(format!("cannot write {}: {e}", dest.display())))?;
        }
        Ok(())
    }

    async fn run_command(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput> {
        self.enter(Call::RunCommand {
            id: id.clone(),
            argv: cmd.argv.clone(),
            live_output: cmd.output.is_some(),
        })
        .await?;
        cmd.validate()?;
        self.with_ws(id, |_, _| Ok(()))?;
        let delay = self.lock().run_delay;
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let output = self.with_ws(id, |ws, scripted| {
            ws.files
                .extend(scripted.iter().map(|(p, d)| (p.clone(), d.clone())));
            Ok(())
        });
        output?;
        let out = self.lock().output.clone();
        if let Some(sink) = &cmd.output {
            sink.emit(Stream::Stdout, &out.stdout);
            sink.emit(Stream::Stderr, &out.stderr);
        }
        Ok(out)
    }

    async fn start_background(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ProcessId> {
        self.enter(Call::StartBackground {
            id: id.clone(),
            argv: cmd.argv.clone(),
        })
        .await?;
        if !self.capabilities.background {
            return Err(self.unsupported("start_background"));
        }
        cmd.validate()?;
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let pid = ProcessId::new(format!("p{n}"))?;
        let output = self.lock().output.clone();
        self.with_ws(id, |ws, scripted| {
            ws.files
                .extend(scripted.iter().map(|(p, d)| (p.clone(), d.clone())));
            ws.processes.insert(
                pid.clone(),
                FakeProcess {
                    output,
                    stopped: false,
                },
            );
            Ok(())
        })?;
        Ok(pid)
    }

    async fn process_status(&self, id: &WorkspaceId, pid: &ProcessId) -> Result<ProcessSnapshot> {
        self.enter(Call::ProcessStatus {
            id: id.clone(),
            pid: pid.clone(),
        })
        .await?;
        self.with_ws(id, |ws, _| {
            let p = ws
                .processes
                .get(pid)
                .ok_or_else(|| Error::process_not_found(pid))?;
            Ok(ProcessSnapshot {
                status: Some(p.output.status.clone()),
                stdout: p.output.stdout.clone(),
                stderr: p.output.stderr.clone(),
                stdout_truncated: p.output.stdout_truncated,
                stderr_truncated: p.output.stderr_truncated,
            })
        })
    }

    async fn wait_process(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
        timeout: Option<Duration>,
    ) -> Result<Option<ExecOutput>> {
        self.enter(Call::WaitProcess {
            id: id.clone(),
            pid: pid.clone(),
            timeout,
        })
        .await?;
        self.with_ws(id, |ws, _| {
            let p = ws
                .processes
                .get(pid)
                .ok_or_else(|| Error::process_not_found(pid))?;
            Ok(Some(p.output.clone()))
        })
    }

    async fn stop(&self, id: &WorkspaceId, pid: Option<&ProcessId>) -> Result<()> {
        self.enter(Call::Stop {
            id: id.clone(),
            pid: pid.cloned(),
        })
        .await?;
        self.with_ws(id, |ws, _| {
            match pid {
                Some(pid) => {
                    let p = ws
                        .processes
                        .get_mut(pid)
                        .ok_or_else(|| Error::process_not_found(pid))?;
                    p.stopped = true;
                }
                None => ws.processes.values_mut().for_each(|p| p.stopped = true),
            }
            Ok(())
        })
    }

    async fn cleanup(&self, id: &WorkspaceId) -> Result<()> {
        self.enter(Call::Cleanup { id: id.clone() }).await?;
        self.lock().workspaces.remove(id);
        Ok(())
    }

    fn workspace_path(&self, _id: &WorkspaceId) -> Option<PathBuf> {
        None
    }

    async fn residue(&self, id: &WorkspaceId) -> Result<Vec<String>> {
        self.enter(Call::Residue { id: id.clone() }).await?;
        Ok(if self.is_live(id) {
            vec![format!("fake workspace {id} of backend {}", self.name)]
        } else {
            Vec::new()
        })
    }

    async fn reap_orphans(&self) -> Result<Vec<String>> {
        self.enter(Call::ReapOrphans).await?;
        let mut st = self.lock();
        let orphans: Vec<WorkspaceId> = st
            .workspaces
            .iter()
            .filter(|(_, w)| w.orphan)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &orphans {
            st.workspaces.remove(id);
        }
        Ok(orphans
            .into_iter()
            .map(|id| format!("fake workspace {id}"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn lifecycle_is_tracked() {
        rt().block_on(async {
            let f = FakeOrchestrator::named("native");
            assert_eq!(f.name(), "native");
            let ws = f
                .create_workspace(&WorkspaceSpec::new().execution_id("ex1"))
                .await
                .unwrap();
            assert_eq!(f.execution_of(&ws).as_deref(), Some("ex1"));
            assert_eq!(f.residue(&ws).await.unwrap().len(), 1);
            f.cleanup(&ws).await.unwrap();
            f.cleanup(&ws).await.unwrap();
            assert!(f.residue(&ws).await.unwrap().is_empty());
            assert!(f.live_workspaces().is_empty());
            assert!(matches!(
                f.run_command(&ws, &CommandSpec::new(["true"])).await,
                Err(Error::NotFound { .. })
            ));
            assert_eq!(
                f.ops(),
                vec![
                    Op::CreateWorkspace,
                    Op::Residue,
                    Op::Cleanup,
                    Op::Cleanup,
                    Op::Residue,
                    Op::RunCommand
                ]
            );
        });
    }

    #[test]
    fn failures_can_be_injected_on_every_op() {
        rt().block_on(async {
            let f = FakeOrchestrator::new();
            let ws = f.create_workspace(&WorkspaceSpec::new()).await.unwrap();
            for op in Op::ALL {
                f.fail_with_backend_error(op);
            }
            let pid = ProcessId::new("p1").unwrap();
            let cmd = CommandSpec::new(["true"]);
            let errs = vec![
                f.create_workspace(&WorkspaceSpec::new()).await.err(),
                f.apply_resource_limits(&ws, &ResourceLimits::default())
                    .await
                    .err(),
                f.copy_to(&ws, Path::new("/nonexistent"), "x").await.err(),
                f.copy_from(&ws, "x", Path::new("/nonexistent")).await.err(),
                f.run_command(&ws, &cmd).await.err(),
                f.start_background(&ws, &cmd).await.err(),
                f.process_status(&ws, &pid).await.err(),
                f.wait_process(&ws, &pid, None).await.err(),
                f.stop(&ws, None).await.err(),
                f.cleanup(&ws).await.err(),
                f.residue(&ws).await.err(),
                f.reap_orphans().await.err(),
            ];
            for e in errs {
                let e = e.expect("every op fails");
                let fe = e.backend_source().unwrap().downcast_ref::<FakeError>();
                assert!(fe.is_some(), "{e}");
            }
            assert!(!f.is_available().await.available);
            f.clear_failures();
            f.cleanup(&ws).await.unwrap();
            assert!(!f.is_live(&ws));
        });
    }

    #[test]
    fn fail_once_queues() {
        rt().block_on(async {
            let f = FakeOrchestrator::new();
            f.fail_once(Op::CreateWorkspace, Error::invalid("a"));
            f.fail_once(Op::CreateWorkspace, Error::invalid("b"));
            let spec = WorkspaceSpec::new();
            assert!(f.create_workspace(&spec).await.is_err());
            assert!(f.create_workspace(&spec).await.is_err());
            let ws = f.create_workspace(&spec).await.unwrap();
            f.cleanup(&ws).await.unwrap();
        });
    }

    #[test]
    fn strict_limits_follow_capabilities() {
        rt().block_on(async {
            let f = FakeOrchestrator::new().with_capabilities(Capabilities {
                limits: vec![LimitKind::WallTimeout],
                ..full_capabilities()
            });
            let ws = f.create_workspace(&WorkspaceSpec::new()).await.unwrap();
            let lax = ResourceLimits::builder()
                .memory_bytes(64 << 20)
                .wall_timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            let r = f.apply_resource_limits(&ws, &lax).await.unwrap();
            assert!(!r.all_enforced());
            let strict = ResourceLimits {
                strict: true,
                ..lax
            };
            assert!(matches!(
                f.apply_resource_limits(&ws, &strict).await,
                Err(Error::LimitNotEnforceable { .. })
            ));
            f.cleanup(&ws).await.unwrap();
        });
    }

    #[test]
    fn files_round_trip_and_scripted_output() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let src = dir.path().join("in.txt");
            std::fs::write(&src, b"hello").unwrap();
            let f = FakeOrchestrator::new();
            f.script_file("out/result.txt", b"done".to_vec());
            f.set_output(ExecOutput {
                stdout: b"hi".to_vec(),
                ..ok_output()
            });
            let ws = f.create_workspace(&WorkspaceSpec::new()).await.unwrap();
            f.copy_to(&ws, &src, "in.txt").await.unwrap();
            assert_eq!(f.file(&ws, "in.txt").unwrap(), b"hello");
            assert!(matches!(
                f.copy_to(&ws, &src, "../x").await,
                Err(Error::PathEscapesSandbox { .. })
            ));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let s2 = seen.clone();
            let cmd = CommandSpec::new(["x"]).output(crate::OutputSink::new(move |_, d| {
                s2.lock().unwrap().extend_from_slice(d)
            }));
            let out = f.run_command(&ws, &cmd).await.unwrap();
            assert_eq!(out.stdout, b"hi");
            assert_eq!(&*seen.lock().unwrap(), b"hi");
            let dest = dir.path().join("got");
            f.copy_from(&ws, "out", &dest).await.unwrap();
            assert_eq!(std::fs::read(dest.join("result.txt")).unwrap(), b"done");
            f.cleanup(&ws).await.unwrap();
        });
    }

    #[test]
    fn orphans_are_reaped() {
        rt().block_on(async {
            let f = FakeOrchestrator::new();
            let o = f.add_orphan(Some("ex9"));
            let keep = f.create_workspace(&WorkspaceSpec::new()).await.unwrap();
            let reaped = f.reap_orphans().await.unwrap();
            assert_eq!(reaped.len(), 1);
            assert!(!f.is_live(&o));
            assert!(f.is_live(&keep));
            f.cleanup(&keep).await.unwrap();
        });
    }
}

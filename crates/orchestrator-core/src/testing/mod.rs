//! [`FakeOrchestrator`]: an in-memory backend for unit tests (feature
//! `testing`).
//!
//! It implements the whole [`Orchestrator`](crate::Orchestrator) trait without touching the host
//! (except to read the host files given to `copy_to` and write the ones asked
//! for by `copy_from`), and:
//!
//! - records every call ([`FakeOrchestrator::calls`]);
//! - has a configurable name and [`Capabilities`];
//! - returns scripted results ([`FakeOrchestrator::set_output`],
//!   [`FakeOrchestrator::script_file`], [`FakeOrchestrator::set_run_delay`]);
//! - or, built [`FakeOrchestrator::with_shell`], runs commands in a small
//!   shell of its own against each workspace's in-memory files and processes,
//!   enforcing every limit it claims, so it passes the conformance suite;
//! - fails any operation on demand ([`FakeOrchestrator::fail_on`],
//!   [`FakeOrchestrator::fail_once`], [`FakeOrchestrator::fail_with_backend_error`]);
//! - tracks live workspaces, so [`residue`](crate::Orchestrator::residue), cleanup and
//!   [`reap_orphans`](crate::Orchestrator::reap_orphans) behave like a real backend's.
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
//! let cmd = CommandSpec::new(["true"]).build().unwrap();
//! assert!(fake.run_command(&ws, &cmd).await.is_err());
//! assert!(fake.run_command(&ws, &cmd).await.is_ok());
//! fake.cleanup(&ws).await.unwrap();
//! assert!(fake.residue(&ws).await.unwrap().is_empty());
//! assert_eq!(fake.count(Op::RunCommand), 2);
//!
//! let sim = FakeOrchestrator::new().with_shell();
//! let ws = sim.create_workspace(&WorkspaceSpec::new()).await.unwrap();
//! let script = CommandSpec::shell("echo hi > f; cat f").build().unwrap();
//! let out = sim.run_command(&ws, &script).await.unwrap();
//! assert_eq!(out.stdout, b"hi\n");
//! sim.cleanup(&ws).await.unwrap();
//! # });
//! ```

mod calls;
mod copy;
mod fs;
mod machine;
mod orchestrator;
mod run;
mod shell;
mod stop;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use calls::{Call, FakeError, Op};
pub use stop::SurvivedKill;

use crate::error::{Error, Result};
use crate::limits::{LimitKind, Mechanism, ResourceLimits};
use crate::paths::SandboxPath;
use crate::types::{Availability, Capabilities, ExecOutput, ExitStatus, ProcessId, WorkspaceId};
use calls::Failures;
use fs::Node;
use machine::Machine;
use run::Job;

struct FakeWorkspace {
    machine: Arc<Machine>,
    limits: Option<ResourceLimits>,
    processes: BTreeMap<ProcessId, Arc<Job>>,
    orphan: bool,
    execution_id: Option<String>,
}

impl FakeWorkspace {
    fn new(limits: Option<ResourceLimits>, execution_id: Option<String>) -> Self {
        Self {
            machine: Machine::new(limits.clone().unwrap_or_default()),
            limits,
            processes: BTreeMap::new(),
            orphan: false,
            execution_id,
        }
    }
}

struct State {
    calls: Vec<Call>,
    failures: Failures,
    workspaces: BTreeMap<WorkspaceId, FakeWorkspace>,
    output: ExecOutput,
    scripted_files: BTreeMap<PathBuf, Vec<u8>>,
    run_delay: Option<Duration>,
    availability: Availability,
    created_total: u64,
}

/// An in-memory [`Orchestrator`](crate::Orchestrator) that records calls, returns scripted results
/// (or runs commands in its own shell) and fails on demand. Cheap to share as
/// `Arc<FakeOrchestrator>` (which coerces to `Arc<dyn Orchestrator>`); every
/// setter takes `&self`.
pub struct FakeOrchestrator {
    name: String,
    capabilities: Capabilities,
    shell: bool,
    next_id: AtomicU64,
    state: Mutex<State>,
}

impl fmt::Debug for FakeOrchestrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeOrchestrator")
            .field("name", &self.name)
            .field("shell", &self.shell)
            .field("live", &self.live_workspaces())
            .finish()
    }
}

impl Default for FakeOrchestrator {
    fn default() -> Self {
        Self::new()
    }
}

/// The mechanism the fake names for every limit it enforces: its own
/// simulation of them.
pub const MECHANISM: Mechanism = Mechanism::named("fake");

/// Capabilities claiming everything a single process can: copy,
/// background, network isolation, OOM detection and every limit kind. Not
/// direct access (the fake has no host directory) and not cross-process
/// (its workspaces live in this process's memory, so no other process can
/// meet them).
pub fn full_capabilities() -> Capabilities {
    Capabilities {
        copy: true,
        background: true,
        direct_access: false,
        network_isolation: true,
        isolation: false,
        oom_detection: true,
        cross_process: false,
        images: false,
        mounts: false,
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
            shell: false,
            next_id: AtomicU64::new(1),
            state: Mutex::new(State {
                calls: Vec::new(),
                failures: Failures::default(),
                workspaces: BTreeMap::new(),
                output: ok_output(),
                scripted_files: BTreeMap::new(),
                run_delay: None,
                availability: Availability::Available,
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

    /// Runs commands instead of returning the scripted output (builder
    /// style): `sh -c` scripts and the common utilities (echo, cat, ls, wc,
    /// grep, sleep, kill, dd, ...) run against the workspace's in-memory
    /// files, as processes with pids, groups and signals, under the
    /// workspace's limits. [`FakeOrchestrator::set_output`] and
    /// [`FakeOrchestrator::script_file`] have no effect then.
    pub fn with_shell(mut self) -> Self {
        self.shell = true;
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
        self.lock().failures.always(op, Arc::new(make));
    }

    /// The next call of `op` fails with `error` (queued: call it twice to
    /// fail the next two calls).
    pub fn fail_once(&self, op: Op, error: Error) {
        self.lock().failures.once(op, error);
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

    /// Makes the processes of a live workspace survive every signal,
    /// SIGKILL included, as processes in uninterruptible sleep do (shell
    /// mode): `stop` then waits its [`STOP_DEADLINE`](crate::STOP_DEADLINE)
    /// and answers [`Error::Backend`] with a [`SurvivedKill`]. False when
    /// the workspace does not exist.
    pub fn processes_survive_kill(&self, id: &WorkspaceId, survive: bool) -> bool {
        let machine = self.lock().workspaces.get(id).map(|ws| ws.machine.clone());
        match machine {
            Some(m) => {
                m.set_survive_signals(survive);
                true
            }
            None => false,
        }
    }

    /// Simulates a sandbox left behind by a crashed process: a live workspace
    /// that [`Orchestrator::reap_orphans`](crate::Orchestrator::reap_orphans) will remove. Returns its id.
    pub fn add_orphan(&self, execution_id: Option<&str>) -> WorkspaceId {
        let id = self.fresh_id();
        let mut ws = FakeWorkspace::new(None, execution_id.map(str::to_string));
        ws.orphan = true;
        let mut st = self.lock();
        st.created_total += 1;
        st.workspaces.insert(id.clone(), ws);
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
        let path = SandboxPath::new(sandbox_path).ok()?;
        let machine = self.lock().workspaces.get(id)?.machine.clone();
        let st = machine.lock();
        match st.fs.get(path.as_path())? {
            Node::File(d) => Some(d.clone()),
            _ => None,
        }
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

    fn fresh_pid(&self) -> Result<ProcessId> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        ProcessId::new(format!("p{n}"))
    }

    /// Records the call, yields once (so concurrent callers interleave like
    /// they would on a real backend), then applies any injected failure.
    async fn enter(&self, call: Call) -> Result<()> {
        let op = call.op();
        self.lock().calls.push(call);
        tokio::task::yield_now().await;
        match self.lock().failures.take(op) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn with_ws<T>(
        &self,
        id: &WorkspaceId,
        f: impl FnOnce(&mut FakeWorkspace, &BTreeMap<PathBuf, Vec<u8>>) -> Result<T>,
    ) -> Result<T> {
        let mut st = self.lock();
        let st = &mut *st;
        match st.workspaces.get_mut(id) {
            Some(ws) => f(ws, &st.scripted_files),
            None => Err(Error::workspace_not_found(id)),
        }
    }

    /// The workspace's machine (NotFound for an unknown workspace).
    fn machine(&self, id: &WorkspaceId) -> Result<Arc<Machine>> {
        self.with_ws(id, |ws, _| Ok(ws.machine.clone()))
    }

    /// In the scripted mode, a command "writes" the scripted files.
    fn write_scripted_files(ws: &FakeWorkspace, scripted: &BTreeMap<PathBuf, Vec<u8>>) {
        let mut st = ws.machine.lock();
        for (p, d) in scripted {
            if let Ok(path) = SandboxPath::new(p.to_string_lossy()) {
                st.fs.insert(path.as_path(), Node::File(d.clone()));
            }
        }
    }

    fn unsupported(&self, operation: &str) -> Error {
        Error::Unsupported {
            backend: self.name.clone(),
            operation: operation.to_string(),
        }
    }
}

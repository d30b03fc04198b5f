//! How the cases are run: one trial per case, skips gated on capabilities and
//! availability, `RUNBOX_REQUIRE_DOCKER`-style requirements, the time scale,
//! a deadline and watchdog per case, and the residue check after each.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::limits::{LimitKind, LimitReport, ResourceLimits};
use crate::orchestrator::Orchestrator;
use crate::paths::SandboxPath;
use crate::types::{
    Availability, Capabilities, CommandSpec, ExecOutput, IsolationReport, ProcessId,
    ProcessSnapshot, WorkspaceId, WorkspaceSpec,
};

use super::{all_cases, owner, BoxFuture, Factory};

/// What a case needs from the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing beyond the trait.
    None,
    /// copy_to / copy_from.
    Copy,
    /// Background processes.
    Background,
    /// A host directory (workspace_path).
    DirectAccess,
    /// Enforcement of one limit kind.
    Limit(LimitKind),
    /// Memory limit enforcement plus OOM detection.
    OomDetection,
    /// Workspaces another process of the same backend meets
    /// ([`Capabilities::cross_process`]).
    CrossProcess,
    /// Full isolation of new workspaces ([`Capabilities::isolation`]).
    Isolation,
    /// Full isolation plus copy_to / copy_from.
    IsolationAndCopy,
}

impl Requirement {
    /// `None` when the capabilities cover it, else why the case is skipped.
    pub fn unmet(self, caps: &Capabilities) -> Option<String> {
        let ok = match self {
            Requirement::None => true,
            Requirement::Copy => caps.copy,
            Requirement::Background => caps.background,
            Requirement::DirectAccess => caps.direct_access,
            Requirement::Limit(k) => caps.enforces(k),
            Requirement::OomDetection => caps.enforces(LimitKind::Memory) && caps.oom_detection,
            Requirement::CrossProcess => caps.cross_process,
            Requirement::Isolation => caps.isolation,
            Requirement::IsolationAndCopy => caps.isolation && caps.copy,
        };
        if ok {
            None
        } else {
            Some(format!("backend does not claim {self:?}"))
        }
    }
}

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name (its function's name).
    pub name: &'static str,
    /// What it needs; unmet requirements make it ignored.
    pub requires: Requirement,
    /// Runs the case.
    pub run: for<'a> fn(&'a dyn Orchestrator) -> BoxFuture<'a, ()>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("requires", &self.requires)
            .finish()
    }
}

/// The multiplier for time bounds, from `RUNBOX_TEST_TIME_SCALE` (default 1).
pub fn time_scale() -> f64 {
    std::env::var("RUNBOX_TEST_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 1.0)
        .unwrap_or(1.0)
}

/// `d` multiplied by [`time_scale`].
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(time_scale())
}

/// How long one case may run: `RUNBOX_TEST_CASE_DEADLINE_SECS` (default
/// 180), scaled by [`time_scale`]. A lane with an outer timeout (the VM) sets
/// it below that timeout so a stuck case is named, not just cut off.
pub fn case_deadline() -> Duration {
    let secs = std::env::var("RUNBOX_TEST_CASE_DEADLINE_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(180);
    scaled(Duration::from_secs(secs))
}

/// Watches a case from a plain thread, so it fires even when the case has
/// wedged its runtime (a timer on that runtime would not): past `limit` it
/// prints the case's name and every process on the machine (state, parent,
/// cgroup, command), then ends the test binary with a failure. Dropping the
/// returned sender disarms it.
fn watchdog(name: &'static str, limit: Duration) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name(format!("watchdog {name}"))
        .spawn(move || {
            if rx.recv_timeout(limit) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            eprintln!("conformance: case {name} still running after {limit:?}; processes:");
            let mut pids: Vec<u32> = std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            pids.sort_unstable();
            for pid in pids {
                let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}"));
                let stat = read("stat").unwrap_or_default();
                let rest = stat.rfind(')').map(|i| &stat[i + 1..]).unwrap_or("");
                let cmd = read("cmdline").unwrap_or_default().replace('\0', " ");
                let cgroup = read("cgroup").unwrap_or_default().replace('\n', " ");
                let fields: Vec<&str> = rest.split_whitespace().take(2).collect();
                eprintln!(
                    "  {pid} state {} ppid {} cgroup {} cmd {}",
                    fields.first().unwrap_or(&"?"),
                    fields.get(1).unwrap_or(&"?"),
                    cgroup.trim(),
                    cmd.trim()
                );
            }
            std::process::exit(101);
        });
    if let Err(e) = spawned {
        eprintln!("conformance: no watchdog for case {name}: {e}");
    }
    tx
}

/// Wraps a backend and remembers every workspace created through it, so the
/// harness can check and clean what a case leaves behind.
#[derive(Debug)]
pub struct Tracked {
    inner: Arc<dyn Orchestrator>,
    created: Mutex<Vec<WorkspaceId>>,
}

impl Tracked {
    /// Wraps a backend.
    pub fn new(inner: Arc<dyn Orchestrator>) -> Self {
        Self {
            inner,
            created: Mutex::new(Vec::new()),
        }
    }

    /// Workspaces created so far.
    pub fn created(&self) -> Vec<WorkspaceId> {
        self.created.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Orchestrator for Tracked {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn is_available(&self) -> Availability {
        self.inner.is_available().await
    }
    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        let id = self.inner.create_workspace(spec).await?;
        if let Ok(mut v) = self.created.lock() {
            v.push(id.clone());
        }
        Ok(id)
    }
    async fn apply_resource_limits(
        &self,
        id: &WorkspaceId,
        limits: &ResourceLimits,
    ) -> Result<LimitReport> {
        self.inner.apply_resource_limits(id, limits).await
    }
    async fn copy_to(
        &self,
        id: &WorkspaceId,
        host_path: &Path,
        sandbox_path: &SandboxPath,
    ) -> Result<()> {
        self.inner.copy_to(id, host_path, sandbox_path).await
    }
    async fn copy_from(
        &self,
        id: &WorkspaceId,
        sandbox_path: &SandboxPath,
        host_path: &Path,
    ) -> Result<()> {
        self.inner.copy_from(id, sandbox_path, host_path).await
    }
    async fn run_command(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput> {
        self.inner.run_command(id, cmd).await
    }
    async fn start_background(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ProcessId> {
        self.inner.start_background(id, cmd).await
    }
    async fn process_status(&self, id: &WorkspaceId, pid: &ProcessId) -> Result<ProcessSnapshot> {
        self.inner.process_status(id, pid).await
    }
    async fn wait_process(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
        timeout: Option<Duration>,
    ) -> Result<Option<ExecOutput>> {
        self.inner.wait_process(id, pid, timeout).await
    }
    async fn stop(&self, id: &WorkspaceId, pid: Option<&ProcessId>) -> Result<()> {
        self.inner.stop(id, pid).await
    }
    async fn cleanup(&self, id: &WorkspaceId) -> Result<()> {
        self.inner.cleanup(id).await
    }
    fn workspace_path(&self, id: &WorkspaceId) -> Option<PathBuf> {
        self.inner.workspace_path(id)
    }
    async fn residue(&self, id: &WorkspaceId) -> Result<Vec<String>> {
        self.inner.residue(id).await
    }
    async fn isolation(&self, id: &WorkspaceId) -> Result<IsolationReport> {
        self.inner.isolation(id).await
    }
    async fn reap_orphans(&self) -> Result<Vec<String>> {
        self.inner.reap_orphans().await
    }
}

/// Runs one case against a fresh backend from `factory`: checks availability
/// and capabilities (ignored with a reason when unmet), runs the case with a
/// deadline, then checks that every workspace it created left no residue.
pub fn run_case(
    case: Case,
    factory: Factory,
    require_env: Option<&'static str>,
) -> std::result::Result<libtest_mimic::Completion, libtest_mimic::Failed> {
    use libtest_mimic::Completion;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
    let required = require_env
        .map(|v| std::env::var(v).map(|s| s == "1").unwrap_or(false))
        .unwrap_or(false);
    rt.block_on(async move {
        let backend = match factory().await {
            Ok(b) => b,
            Err(e) if !required => {
                return Ok(Completion::ignored_with(format!(
                    "backend cannot be created: {e}"
                )))
            }
            Err(e) => {
                return Err(format!(
                    "backend cannot be created and {}=1 requires it: {e}",
                    require_env.unwrap_or("?")
                )
                .into())
            }
        };
        let avail = backend.is_available().await;
        if let Availability::Unavailable { reason } = avail {
            if required {
                return Err(format!(
                    "backend {} unavailable and {}=1 requires it: {reason}",
                    backend.name(),
                    require_env.unwrap_or("?")
                )
                .into());
            }
            return Ok(Completion::ignored_with(format!(
                "backend {} unavailable: {reason}",
                backend.name()
            )));
        }
        if let Some(why) = case.requires.unmet(&backend.capabilities()) {
            return Ok(Completion::ignored_with(why));
        }
        let tracked = Arc::new(Tracked::new(backend));
        let t = tracked.clone();
        let limit = case_deadline();
        // The runtime's own deadline fails the case; the watchdog, a little
        // later, catches a case that wedged the runtime (and its cleanup).
        let _watchdog = watchdog(case.name, limit + limit / 4 + Duration::from_secs(5));
        let outcome =
            tokio::time::timeout(limit, tokio::spawn(async move { (case.run)(&*t).await })).await;
        let mut failure: Option<String> = match outcome {
            Err(_) => Some(format!("case did not finish within {limit:?}")),
            Ok(Err(join)) => Some(match join.try_into_panic() {
                Ok(p) => panic_message(&*p),
                Err(e) => format!("case task failed: {e}"),
            }),
            Ok(Ok(())) => None,
        };
        for id in tracked.created() {
            let residue = tracked.residue(&id).await;
            let leftover = match residue {
                Ok(r) if r.is_empty() => continue,
                Ok(r) => r.join("; "),
                Err(e) => format!("residue check failed: {e}"),
            };
            // Clean so one failing case does not leak into the next.
            let _ = tracked.cleanup(&id).await;
            if failure.is_none() {
                failure = Some(format!("case left workspace {id} behind: {leftover}"));
            }
        }
        match failure {
            None => Ok(Completion::Completed),
            Some(f) => Err(f.into()),
        }
    })
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "case panicked".to_string()
    }
}

/// The body of the `main` that [`conformance_tests!`](crate::conformance_tests)
/// generates: one trial per case, run with libtest-mimic's argument handling
/// (filters, `--list`, `--ignored`, `--test-threads`).
///
/// First of all it checks [`OWNER_ENV`](super::OWNER_ENV): set, this process
/// is the owner child a cross-process case started, and it only holds a
/// workspace for it (never runs the suite).
pub fn run_main(factory: Factory, require_env: Option<&'static str>) -> std::process::ExitCode {
    if owner::is_owner_child() {
        return owner::owner_main(factory);
    }
    owner::install_hook();
    let args = libtest_mimic::Arguments::from_args();
    let trials = all_cases()
        .into_iter()
        .map(|case| {
            let f = factory.clone();
            libtest_mimic::Trial::ignorable_test(case.name, move || run_case(case, f, require_env))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

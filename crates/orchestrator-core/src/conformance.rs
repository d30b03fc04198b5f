//! The shared conformance suite every backend runs against itself.
//!
//! Each case is a plain `pub async fn(&dyn Orchestrator)` that panics on
//! failure, so a backend can also call single cases from its own tests. The
//! [`conformance_tests!`](crate::conformance_tests) macro turns the whole
//! suite into one test per case in a `harness = false` test target:
//!
//! ```toml
//! [[test]]
//! name = "conformance"
//! harness = false
//! ```
//!
//! ```ignore
//! // tests/conformance.rs
//! async fn factory() -> orchestrator_core::Result<std::sync::Arc<dyn orchestrator_core::Orchestrator>> {
//!     Ok(std::sync::Arc::new(MyBackend::new()?))
//! }
//! orchestrator_core::conformance_tests!(factory);
//! // or, for a backend that needs a service which CI must provide:
//! // orchestrator_core::conformance_tests!(factory, require_env = "RUNBOX_REQUIRE_DOCKER");
//! ```
//!
//! Cases are gated on [`Capabilities`]: a case the backend does not claim is
//! reported as *ignored* with the reason, never as passed. When the backend is
//! unavailable every case is ignored, unless the `require_env` variable is
//! `1`, in which case every case fails.
//!
//! The harness wraps the backend so it knows every workspace a case created;
//! after the case it checks each one's [`Orchestrator::residue`] is empty
//! (and cleans up after a failed case so one failure does not leak).
//!
//! Time bounds inside cases are generous and multiplied by the
//! `RUNBOX_TEST_TIME_SCALE` environment variable (default 1; the cgroup v2 VM
//! lane sets it, since code there runs several times slower).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::limits::{LimitKind, LimitReport, ResourceLimits};
use crate::orchestrator::Orchestrator;
use crate::types::{
    Availability, Capabilities, CommandSpec, ExecOutput, ExitStatus, OutputSink, ProcessId,
    ProcessSnapshot, StartFailure, Stream, WorkspaceId, WorkspaceSpec,
};

#[doc(hidden)]
pub use libtest_mimic;

/// A boxed future, as returned by the factory and by case wrappers.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Creates the backend under test; called once per case.
pub type Factory = Arc<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn Orchestrator>>> + Send + Sync>;

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

macro_rules! cases {
    ($($f:ident => $req:expr),* $(,)?) => {
        /// Every case of the suite, in order.
        pub fn all_cases() -> Vec<Case> {
            vec![$(Case {
                name: stringify!($f),
                requires: $req,
                run: {
                    fn wrap<'a>(o: &'a dyn Orchestrator) -> BoxFuture<'a, ()> {
                        Box::pin($f(o))
                    }
                    wrap
                },
            }),*]
        }
    };
}

cases! {
    create_cleanup_roundtrip => Requirement::None,
    cleanup_is_idempotent => Requirement::None,
    unknown_workspace_is_not_found => Requirement::None,
    cleaned_workspace_is_not_found => Requirement::None,
    invalid_commands_rejected => Requirement::None,
    copy_file_roundtrip_binary_and_empty => Requirement::Copy,
    copy_large_file => Requirement::Copy,
    copy_nested_directory => Requirement::Copy,
    copy_missing_source_is_not_found => Requirement::Copy,
    copy_out_never_replaces_host_directories => Requirement::Copy,
    path_escape_dotdot_rejected => Requirement::Copy,
    path_escape_absolute_rejected => Requirement::Copy,
    path_escape_symlink_rejected => Requirement::Copy,
    stdout_and_stderr_apart => Requirement::None,
    binary_output_exact => Requirement::None,
    stdin_delivered => Requirement::None,
    large_stdin_and_output_do_not_deadlock => Requirement::None,
    exit_codes_propagate => Requirement::None,
    signal_reported => Requirement::None,
    env_is_clean_and_caller_env_visible => Requirement::None,
    workdir_is_used => Requirement::None,
    command_not_found_fails_to_start => Requirement::None,
    wall_timeout_kills_whole_tree => Requirement::None,
    wall_timeout_from_limits => Requirement::Limit(LimitKind::WallTimeout),
    grandchild_holding_stdout_does_not_hang => Requirement::None,
    live_output_arrives_before_end => Requirement::None,
    background_output_and_wait => Requirement::Background,
    background_wait_timeout_and_stop => Requirement::Background,
    output_cap_stops_command => Requirement::None,
    output_limit_from_limits => Requirement::Limit(LimitKind::OutputBytes),
    invalid_limits_rejected => Requirement::None,
    limit_report_covers_every_request => Requirement::None,
    memory_limit_reports_oom => Requirement::OomDetection,
    pids_limit_contains_fork_bomb => Requirement::Limit(LimitKind::Pids),
    cpu_time_limit_ends_busy_loop => Requirement::Limit(LimitKind::CpuTime),
    cpus_limit_throttles => Requirement::Limit(LimitKind::Cpus),
    file_size_limit => Requirement::Limit(LimitKind::FileSize),
    open_files_limit => Requirement::Limit(LimitKind::OpenFiles),
    concurrent_workspaces_are_isolated => Requirement::None,
    direct_access_path => Requirement::DirectAccess,
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

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
    async fn copy_to(&self, id: &WorkspaceId, host_path: &Path, sandbox_path: &str) -> Result<()> {
        self.inner.copy_to(id, host_path, sandbox_path).await
    }
    async fn copy_from(
        &self,
        id: &WorkspaceId,
        sandbox_path: &str,
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
        if !avail.available {
            let reason = avail.reason.unwrap_or_default();
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
pub fn run_main(factory: Factory, require_env: Option<&'static str>) -> std::process::ExitCode {
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

/// Expands to a `main` that runs the whole conformance suite against the
/// backend made by `$factory` (an `async fn() -> Result<Arc<dyn Orchestrator>>`),
/// one test per case. Use it in a test target with `harness = false`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path $(, require_env = $env:expr)? $(,)?) => {
        fn main() -> ::std::process::ExitCode {
            let factory: $crate::conformance::Factory = ::std::sync::Arc::new(|| {
                ::std::boxed::Box::pin($factory()) as $crate::conformance::BoxFuture<'static, _>
            });
            #[allow(unused_mut, unused_assignments)]
            let mut require_env: ::std::option::Option<&'static str> = ::std::option::Option::None;
            $(require_env = ::std::option::Option::Some($env);)?
            $crate::conformance::run_main(factory, require_env)
        }
    };
}

// ---------------------------------------------------------------------------
// Helpers for cases
// ---------------------------------------------------------------------------

async fn new_ws(o: &dyn Orchestrator) -> WorkspaceId {
    o.create_workspace(&WorkspaceSpec::new())
        .await
        .unwrap_or_else(|e| panic!("create_workspace failed: {e}"))
}

async fn sh(o: &dyn Orchestrator, id: &WorkspaceId, script: &str) -> ExecOutput {
    run(
        o,
        id,
        CommandSpec::shell(script).timeout(scaled(Duration::from_secs(60))),
    )
    .await
}

async fn run(o: &dyn Orchestrator, id: &WorkspaceId, cmd: CommandSpec) -> ExecOutput {
    o.run_command(id, &cmd)
        .await
        .unwrap_or_else(|e| panic!("run_command {:?} failed: {e}", cmd.argv))
}

/// Applies limits the case's requirement says are enforced, and checks the
/// report agrees.
async fn apply_enforced(o: &dyn Orchestrator, id: &WorkspaceId, limits: &ResourceLimits) {
    let report = o.apply_resource_limits(id, limits).await.expect("apply");
    assert!(report.all_enforced(), "{report:?}");
}

fn describe(out: &ExecOutput) -> String {
    format!(
        "status {:?}, stdout {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(400)]),
        String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(400)])
    )
}

fn expect_exit(out: &ExecOutput, code: i32) {
    assert_eq!(out.status, ExitStatus::Exited(code), "{}", describe(out));
}

async fn done(o: &dyn Orchestrator, id: &WorkspaceId) {
    o.cleanup(id)
        .await
        .unwrap_or_else(|e| panic!("cleanup failed: {e}"));
    let residue = o.residue(id).await.expect("residue");
    assert!(residue.is_empty(), "after cleanup: {residue:?}");
}

fn expect_escape<T: std::fmt::Debug>(r: Result<T>, what: &str) {
    match r {
        Err(Error::PathEscapesSandbox { .. }) => {}
        other => panic!("{what}: expected PathEscapesSandbox, got {other:?}"),
    }
}

fn expect_not_found<T: std::fmt::Debug>(r: Result<T>, what: &str) {
    match r {
        Err(e) if e.is_not_found() => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

fn host_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("host temp dir")
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xff) as u8
        })
        .collect()
}

/// Shell snippet: prints "alive" or "dead" for the pid stored in FILE
/// (zombies count as dead).
fn liveness_script(file: &str) -> String {
    format!(
        "p=$(cat {file}); if [ -d /proc/$p ] && ! grep -q ') Z' /proc/$p/stat 2>/dev/null; then echo alive; else echo dead; fi"
    )
}

// ---------------------------------------------------------------------------
// Cases: lifecycle
// ---------------------------------------------------------------------------

/// create + a command + cleanup; the workspace leaves nothing behind.
pub async fn create_cleanup_roundtrip(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let out = sh(o, &id, "echo hello").await;
    expect_exit(&out, 0);
    assert_eq!(out.stdout, b"hello\n");
    let r = o.residue(&id).await.expect("residue");
    assert!(!r.is_empty(), "a live workspace should show in residue()");
    done(o, &id).await;
}

/// cleanup twice, and cleanup of an id that never existed, both succeed.
pub async fn cleanup_is_idempotent(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    o.cleanup(&id).await.expect("first cleanup");
    o.cleanup(&id).await.expect("second cleanup");
    let never = WorkspaceId::new("rb-never-existed-0").expect("id");
    o.cleanup(&never).await.expect("cleanup of unknown id");
    done(o, &id).await;
}

async fn all_ops_not_found(o: &dyn Orchestrator, id: &WorkspaceId) {
    let host = host_dir();
    std::fs::write(host.path().join("f"), b"x").expect("write");
    expect_not_found(
        o.apply_resource_limits(id, &ResourceLimits::default())
            .await,
        "apply_resource_limits",
    );
    expect_not_found(o.copy_to(id, &host.path().join("f"), "f").await, "copy_to");
    expect_not_found(
        o.copy_from(id, "f", &host.path().join("g")).await,
        "copy_from",
    );
    expect_not_found(
        o.run_command(id, &CommandSpec::new(["true"])).await,
        "run_command",
    );
    expect_not_found(
        o.start_background(id, &CommandSpec::new(["true"])).await,
        "start_background",
    );
    let pid = ProcessId::new("p1").expect("pid");
    expect_not_found(o.process_status(id, &pid).await, "process_status");
    expect_not_found(
        o.wait_process(id, &pid, Some(Duration::ZERO)).await,
        "wait_process",
    );
    expect_not_found(o.stop(id, None).await, "stop");
    assert!(
        o.workspace_path(id).is_none(),
        "workspace_path of a missing workspace"
    );
    assert!(
        !host.path().join("g").exists(),
        "copy_from wrote despite NotFound"
    );
}

/// Every operation on an id that never existed is NotFound.
pub async fn unknown_workspace_is_not_found(o: &dyn Orchestrator) {
    let id = WorkspaceId::new("rb-unknown-workspace-1").expect("id");
    all_ops_not_found(o, &id).await;
}

/// Every operation on a cleaned-up workspace is NotFound.
pub async fn cleaned_workspace_is_not_found(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    done(o, &id).await;
    all_ops_not_found(o, &id).await;
}

/// Empty argv, bad env names and zero timeouts are InvalidInput; the
/// workspace still works afterwards.
pub async fn invalid_commands_rejected(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let bad = [
        CommandSpec::new(Vec::<String>::new()),
        CommandSpec::new(["true"]).env("A=B", "1"),
        CommandSpec::new(["true"]).timeout(Duration::ZERO),
        CommandSpec::new(["true"]).output_limit(0),
    ];
    for cmd in bad {
        match o.run_command(&id, &cmd).await {
            Err(Error::InvalidInput(_)) => {}
            other => panic!("{cmd:?}: expected InvalidInput, got {other:?}"),
        }
        match o.start_background(&id, &cmd).await {
            Err(Error::InvalidInput(_)) => {}
            other => panic!("{cmd:?} (background): expected InvalidInput, got {other:?}"),
        }
    }
    expect_exit(&sh(o, &id, "true").await, 0);
    done(o, &id).await;
}

// ---------------------------------------------------------------------------
// Cases: copy
// ---------------------------------------------------------------------------

/// A binary file and an empty file go in and out byte-exact.
pub async fn copy_file_roundtrip_binary_and_empty(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    let mut bin: Vec<u8> = (0..=255u8).collect();
    bin.extend(pattern(70_000, 7));
    std::fs::write(host.path().join("bin"), &bin).expect("write");
    std::fs::write(host.path().join("empty"), b"").expect("write");
    o.copy_to(&id, &host.path().join("bin"), "in/data.bin")
        .await
        .expect("copy_to bin");
    o.copy_to(&id, &host.path().join("empty"), "empty")
        .await
        .expect("copy_to empty");
    let out = sh(o, &id, "wc -c < in/data.bin; wc -c < empty").await;
    expect_exit(&out, 0);
    let sizes: Vec<String> = out
        .stdout_str()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(sizes, vec![bin.len().to_string(), "0".to_string()]);
    o.copy_from(&id, "in/data.bin", &host.path().join("bin.out"))
        .await
        .expect("copy_from bin");
    o.copy_from(&id, "empty", &host.path().join("empty.out"))
        .await
        .expect("copy_from empty");
    assert_eq!(
        std::fs::read(host.path().join("bin.out")).expect("read"),
        bin
    );
    assert_eq!(
        std::fs::read(host.path().join("empty.out")).expect("read"),
        b""
    );
    // Overwriting an existing file replaces it.
    std::fs::write(host.path().join("bin"), b"short").expect("write");
    o.copy_to(&id, &host.path().join("bin"), "in/data.bin")
        .await
        .expect("copy_to overwrite");
    let out = sh(o, &id, "cat in/data.bin").await;
    assert_eq!(out.stdout, b"short");
    done(o, &id).await;
}

/// A multi-megabyte file survives the round trip.
pub async fn copy_large_file(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    let data = pattern(8 << 20, 99);
    std::fs::write(host.path().join("big"), &data).expect("write");
    o.copy_to(&id, &host.path().join("big"), "big")
        .await
        .expect("copy_to");
    o.copy_from(&id, "big", &host.path().join("big.out"))
        .await
        .expect("copy_from");
    assert!(std::fs::read(host.path().join("big.out")).expect("read") == data);
    done(o, &id).await;
}

fn snapshot_tree(root: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Option<Vec<u8>>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(base).expect("prefix").display().to_string();
            if p.is_dir() {
                out.push((rel, None));
                walk(base, &p, out);
            } else {
                out.push((rel, Some(std::fs::read(&p).expect("read"))));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// A nested directory with binary, empty files and an empty directory goes
/// in and comes out identical.
pub async fn copy_nested_directory(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    let src = host.path().join("src");
    std::fs::create_dir_all(src.join("a/b/c")).expect("mkdir");
    std::fs::create_dir_all(src.join("emptydir")).expect("mkdir");
    std::fs::write(src.join("top.txt"), b"top\n").expect("write");
    std::fs::write(src.join("a/bin"), pattern(4096, 3)).expect("write");
    std::fs::write(src.join("a/b/empty"), b"").expect("write");
    std::fs::write(src.join("a/b/c/deep.txt"), b"deep").expect("write");
    o.copy_to(&id, &src, "tree").await.expect("copy_to dir");
    let out = sh(
        o,
        &id,
        "cat tree/a/b/c/deep.txt; echo; ls tree/emptydir | wc -l",
    )
    .await;
    expect_exit(&out, 0);
    assert_eq!(
        out.stdout_str().split_whitespace().collect::<Vec<_>>(),
        ["deep", "0"]
    );
    let dst = host.path().join("dst");
    o.copy_from(&id, "tree", &dst).await.expect("copy_from dir");
    assert_eq!(snapshot_tree(&src), snapshot_tree(&dst));
    done(o, &id).await;
}

/// Copying something that does not exist is NotFound and writes nothing.
pub async fn copy_missing_source_is_not_found(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    expect_not_found(
        o.copy_from(&id, "no/such/file", &host.path().join("x"))
            .await,
        "copy_from missing",
    );
    assert!(!host.path().join("x").exists());
    expect_not_found(
        o.copy_to(&id, &host.path().join("missing"), "x").await,
        "copy_to missing host path",
    );
    let out = sh(o, &id, "ls -A | wc -l").await;
    assert_eq!(out.stdout_str().trim(), "0", "{}", describe(&out));
    done(o, &id).await;
}

/// copy_from into an existing host directory lands inside it (like `cp`);
/// an existing host directory is never replaced or merged.
pub async fn copy_out_never_replaces_host_directories(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    let keep = host.path().join("keep");
    std::fs::create_dir_all(keep.join("t")).expect("mkdir");
    std::fs::write(keep.join("precious"), b"precious").expect("write");
    std::fs::write(keep.join("t/old"), b"old").expect("write");
    expect_exit(
        &sh(o, &id, "mkdir t && echo new > t/new && echo f > f").await,
        0,
    );
    // A file into an existing directory: under its own name.
    o.copy_from(&id, "f", &keep)
        .await
        .expect("copy_from into a directory");
    assert_eq!(std::fs::read(keep.join("f")).expect("read"), b"f\n");
    // A directory whose name exists there as a directory: refused.
    match o.copy_from(&id, "t", &keep).await {
        Err(Error::InvalidInput(_)) => {}
        other => panic!("copy_from over an existing directory: {other:?}"),
    }
    match o.copy_from(&id, "f", &keep.join("t")).await {
        Ok(()) => assert_eq!(std::fs::read(keep.join("t/f")).expect("read"), b"f\n"),
        Err(e) => panic!("copy_from into an existing subdirectory: {e}"),
    }
    // Nothing that was there is lost.
    assert_eq!(
        std::fs::read(keep.join("precious")).expect("read"),
        b"precious"
    );
    assert_eq!(std::fs::read(keep.join("t/old")).expect("read"), b"old");
    assert!(!keep.join("t/new").exists(), "directories were merged");
    done(o, &id).await;
}

/// `..` is rejected for copy_to, copy_from and the working directory.
pub async fn path_escape_dotdot_rejected(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    std::fs::write(host.path().join("f"), b"x").expect("write");
    for p in ["../f", "a/../../f", "..", "a/.."] {
        expect_escape(o.copy_to(&id, &host.path().join("f"), p).await, p);
        expect_escape(o.copy_from(&id, p, &host.path().join("out")).await, p);
        expect_escape(
            o.run_command(&id, &CommandSpec::new(["true"]).workdir(p))
                .await,
            p,
        );
    }
    assert!(!host.path().join("out").exists());
    done(o, &id).await;
}

/// Absolute paths are rejected for copy_to, copy_from and the working
/// directory.
pub async fn path_escape_absolute_rejected(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    std::fs::write(host.path().join("f"), b"x").expect("write");
    for p in ["/etc/passwd", "/tmp/runbox-escape", "/"] {
        expect_escape(o.copy_to(&id, &host.path().join("f"), p).await, p);
        expect_escape(o.copy_from(&id, p, &host.path().join("out")).await, p);
        expect_escape(
            o.run_command(&id, &CommandSpec::new(["true"]).workdir(p))
                .await,
            p,
        );
    }
    assert!(!Path::new("/tmp/runbox-escape").exists());
    assert!(!host.path().join("out").exists());
    done(o, &id).await;
}

/// A symlink inside the sandbox that points outside is not followed by
/// copy_to, copy_from or the working directory.
pub async fn path_escape_symlink_rejected(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    let outside = host.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("secret"), b"secret").expect("write");
    std::fs::write(host.path().join("f"), b"payload").expect("write");
    let script = format!(
        "ln -s {} abs && ln -s /etc etc && mkdir d && ln -s ../.. d/up && ln -s ../d/up d2",
        outside.display()
    );
    expect_exit(&sh(o, &id, &script).await, 0);
    for p in ["abs/secret", "abs", "etc/passwd", "d/up", "d/up/x", "d2"] {
        expect_escape(o.copy_from(&id, p, &host.path().join("out")).await, p);
    }
    for p in ["abs/planted", "abs", "etc/planted", "d/up/planted", "d2/x"] {
        expect_escape(o.copy_to(&id, &host.path().join("f"), p).await, p);
        expect_escape(
            o.run_command(&id, &CommandSpec::new(["true"]).workdir(p))
                .await,
            p,
        );
    }
    assert!(
        !host.path().join("out").exists(),
        "copy_from wrote through a symlink"
    );
    assert!(
        !outside.join("planted").exists(),
        "copy_to wrote through a symlink"
    );
    assert_eq!(
        std::fs::read(outside.join("secret")).expect("read"),
        b"secret"
    );
    // Copying a directory that contains an escaping symlink must not follow it.
    expect_exit(
        &sh(o, &id, "mkdir -p t && echo in > t/in && ln -s /etc t/etc").await,
        0,
    );
    let dst = host.path().join("tcopy");
    match o.copy_from(&id, "t", &dst).await {
        Ok(()) => {
            let etc = dst.join("etc");
            if let Ok(md) = std::fs::symlink_metadata(&etc) {
                assert!(
                    md.file_type().is_symlink(),
                    "an escaping symlink was followed and its target copied"
                );
            }
        }
        Err(Error::PathEscapesSandbox { .. }) => {}
        Err(e) => panic!("copy_from of a dir with an escaping link: {e}"),
    }
    done(o, &id).await;
}

// ---------------------------------------------------------------------------
// Cases: commands
// ---------------------------------------------------------------------------

/// stdout and stderr are captured apart.
pub async fn stdout_and_stderr_apart(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let out = sh(o, &id, "echo out1; echo err1 >&2; echo out2; echo err2 >&2").await;
    expect_exit(&out, 0);
    assert_eq!(out.stdout, b"out1\nout2\n");
    assert_eq!(out.stderr, b"err1\nerr2\n");
    assert!(!out.stdout_truncated && !out.stderr_truncated);
    done(o, &id).await;
}

/// Arbitrary bytes (NUL, 0xff) come back exactly.
pub async fn binary_output_exact(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let out = sh(o, &id, "printf 'a\\000b\\377\\001'").await;
    expect_exit(&out, 0);
    assert_eq!(out.stdout, vec![b'a', 0, b'b', 0xff, 1]);
    done(o, &id).await;
}

/// stdin bytes reach the command.
pub async fn stdin_delivered(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let input: Vec<u8> = (0..=255u8).chain(b"tail\n".iter().copied()).collect();
    let out = run(o, &id, CommandSpec::new(["cat"]).stdin(input.clone())).await;
    expect_exit(&out, 0);
    assert_eq!(out.stdout, input);
    // No stdin means an empty stdin, not a hang.
    let out = run(
        o,
        &id,
        CommandSpec::new(["cat"]).timeout(scaled(Duration::from_secs(30))),
    )
    .await;
    expect_exit(&out, 0);
    assert!(out.stdout.is_empty());
    done(o, &id).await;
}

/// Megabytes through stdin while megabytes come out do not deadlock.
pub async fn large_stdin_and_output_do_not_deadlock(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let input = pattern(4 << 20, 5);
    let out = run(
        o,
        &id,
        CommandSpec::new(["cat"])
            .stdin(input.clone())
            .timeout(scaled(Duration::from_secs(60))),
    )
    .await;
    expect_exit(&out, 0);
    assert!(out.stdout == input, "cat echoed {} bytes", out.stdout.len());
    done(o, &id).await;
}

/// Exit codes 0, 1 and 42 propagate.
pub async fn exit_codes_propagate(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    for code in [0, 1, 42] {
        let out = sh(o, &id, &format!("exit {code}")).await;
        expect_exit(&out, code);
    }
    done(o, &id).await;
}

/// A command ended by a signal is Signaled with that signal.
pub async fn signal_reported(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let out = sh(o, &id, "kill -TERM $$; sleep 5").await;
    assert_eq!(out.status, ExitStatus::Signaled(15), "{}", describe(&out));
    let out = sh(o, &id, "kill -KILL $$; sleep 5").await;
    assert_eq!(out.status, ExitStatus::Signaled(9), "{}", describe(&out));
    done(o, &id).await;
}

/// The service's own environment does not leak; PATH and HOME are set; the
/// caller's variables are visible.
pub async fn env_is_clean_and_caller_env_visible(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let secret = "RUNBOX_CONFORMANCE_SECRET";
    // SAFETY-free: set_var is safe in edition 2021; the variable is unique.
    std::env::set_var(secret, "leaked");
    let out = run(
        o,
        &id,
        CommandSpec::new(["env"])
            .env("RUNBOX_CALLER_VAR", "visible value")
            .timeout(scaled(Duration::from_secs(30))),
    )
    .await;
    expect_exit(&out, 0);
    let env = out.stdout_str().to_string();
    assert!(!env.contains(secret), "service env leaked: {env}");
    assert!(env.contains("RUNBOX_CALLER_VAR=visible value"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    assert!(env.lines().any(|l| l.starts_with("HOME=")), "{env}");
    for l in env.lines() {
        let name = l.split('=').next().unwrap_or("");
        assert!(
            !["SSH_AUTH_SOCK", "CARGO", "RUST_LOG", "DOCKER_HOST", "CI"].contains(&name),
            "service variable {name} leaked"
        );
    }
    done(o, &id).await;
}

/// The working directory is honoured; a missing one is NotFound.
pub async fn workdir_is_used(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    expect_exit(
        &sh(o, &id, "mkdir -p sub/dir && echo marker > sub/dir/m").await,
        0,
    );
    let out = run(o, &id, CommandSpec::new(["cat", "m"]).workdir("sub/dir")).await;
    expect_exit(&out, 0);
    assert_eq!(out.stdout, b"marker\n");
    let out = run(o, &id, CommandSpec::new(["cat", "sub/dir/m"]).workdir(".")).await;
    expect_exit(&out, 0);
    expect_not_found(
        o.run_command(&id, &CommandSpec::new(["true"]).workdir("no/such/dir"))
            .await,
        "missing workdir",
    );
    done(o, &id).await;
}

/// A program that does not exist is FailedToStart(NotFound), not an error.
pub async fn command_not_found_fails_to_start(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let out = run(o, &id, CommandSpec::new(["runbox-no-such-program-xyz"])).await;
    match &out.status {
        ExitStatus::FailedToStart { reason, .. } => {
            assert_eq!(*reason, StartFailure::NotFound, "{}", describe(&out))
        }
        _ => panic!("expected FailedToStart, got {}", describe(&out)),
    }
    done(o, &id).await;
}

/// The wall timeout ends the command with TimedOut and every process it
/// started.
pub async fn wall_timeout_kills_whole_tree(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let started = Instant::now();
    let out = run(
        o,
        &id,
        CommandSpec::shell("sleep 1000 & echo $! > bg.pid; (sleep 1000; echo x) & echo $! > bg2.pid; echo ready; sleep 1000")
            .timeout(Duration::from_millis(700)),
    )
    .await;
    assert_eq!(out.status, ExitStatus::TimedOut, "{}", describe(&out));
    assert!(
        started.elapsed() < scaled(Duration::from_secs(30)),
        "timeout took {:?}",
        started.elapsed()
    );
    assert_eq!(out.stdout, b"ready\n");
    assert!(out.wall_time >= Duration::from_millis(700));
    for f in ["bg.pid", "bg2.pid"] {
        let check = sh(o, &id, &liveness_script(f)).await;
        assert_eq!(
            check.stdout_str().trim(),
            "dead",
            "{f}: {}",
            describe(&check)
        );
    }
    done(o, &id).await;
}

/// A wall timeout set through apply_resource_limits applies to commands.
pub async fn wall_timeout_from_limits(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let limits = ResourceLimits::builder()
        .wall_timeout(Duration::from_millis(500))
        .build()
        .expect("limits");
    apply_enforced(o, &id, &limits).await;
    let out = run(o, &id, CommandSpec::new(["sleep", "30"])).await;
    assert_eq!(out.status, ExitStatus::TimedOut, "{}", describe(&out));
    // The smaller of command timeout and limit wins.
    let out = run(
        o,
        &id,
        CommandSpec::new(["sleep", "30"]).timeout(scaled(Duration::from_secs(60))),
    )
    .await;
    assert_eq!(out.status, ExitStatus::TimedOut, "{}", describe(&out));
    done(o, &id).await;
}

/// A grandchild that keeps stdout open after the main process exited does
/// not make run_command wait for it.
pub async fn grandchild_holding_stdout_does_not_hang(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let started = Instant::now();
    let out = run(
        o,
        &id,
        CommandSpec::shell("(sleep 300; echo late) & echo main-done")
            .timeout(scaled(Duration::from_secs(120))),
    )
    .await;
    expect_exit(&out, 0);
    assert_eq!(out.stdout, b"main-done\n");
    assert!(
        started.elapsed() < scaled(Duration::from_secs(20)),
        "run_command waited {:?} for a grandchild",
        started.elapsed()
    );
    done(o, &id).await;
}

/// Live output reaches the sink while the command still runs.
pub async fn live_output_arrives_before_end(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Stream, Vec<u8>)>();
    let sink = OutputSink::new(move |s, d| {
        let _ = tx.send((s, d.to_vec()));
    });
    let cmd = CommandSpec::shell("echo first; echo warn >&2; sleep 3; echo second")
        .timeout(scaled(Duration::from_secs(60)))
        .output(sink);
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out = {
        let run_fut = o.run_command(&id, &cmd);
        let watch = async {
            let first = tokio::time::timeout(scaled(Duration::from_secs(30)), rx.recv())
                .await
                .expect("no live output within 30 s")
                .expect("sink closed");
            assert!(
                !finished.load(std::sync::atomic::Ordering::SeqCst),
                "first chunk arrived only after the command ended"
            );
            first
        };
        let (out, first) = tokio::join!(
            async {
                let r = run_fut.await;
                finished.store(true, std::sync::atomic::Ordering::SeqCst);
                r
            },
            watch
        );
        assert!(
            first.1.starts_with(b"first") || first.1.starts_with(b"warn"),
            "{first:?}"
        );
        out.expect("run_command")
    };
    expect_exit(&out, 0);
    assert_eq!(out.stdout, b"first\nsecond\n");
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    // The first chunk was consumed above; gather the rest.
    while let Ok(Some((s, d))) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        match s {
            Stream::Stdout => stdout.extend(d),
            Stream::Stderr => stderr.extend(d),
        }
    }
    assert!(stdout.ends_with(b"second\n"), "{stdout:?}");
    done(o, &id).await;
}

// ---------------------------------------------------------------------------
// Cases: background
// ---------------------------------------------------------------------------

/// A background process's output can be read while it runs; waiting gives
/// its final output and status.
pub async fn background_output_and_wait(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let pid = o
        .start_background(
            &id,
            &CommandSpec::shell("echo started; echo e >&2; sleep 2; echo done; exit 3"),
        )
        .await
        .expect("start_background");
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    loop {
        let snap = o.process_status(&id, &pid).await.expect("status");
        if snap.stdout.starts_with(b"started\n") {
            assert_eq!(snap.status, None, "should still be running: {snap:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no output so far: {snap:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = o
        .wait_process(&id, &pid, Some(scaled(Duration::from_secs(30))))
        .await
        .expect("wait")
        .expect("process should have ended");
    expect_exit(&out, 3);
    assert_eq!(out.stdout, b"started\ndone\n");
    assert_eq!(out.stderr, b"e\n");
    let snap = o.process_status(&id, &pid).await.expect("status");
    assert_eq!(snap.status, Some(ExitStatus::Exited(3)));
    // Waiting again returns the same result.
    let again = o
        .wait_process(&id, &pid, Some(Duration::ZERO))
        .await
        .expect("wait")
        .expect("ended");
    assert_eq!(again.status, ExitStatus::Exited(3));
    expect_not_found(
        o.process_status(&id, &ProcessId::new("no-such-process").expect("id"))
            .await,
        "unknown process",
    );
    done(o, &id).await;
}

/// wait with a timeout returns None while running; stop(one) ends that
/// process's tree only; stop(all) ends the rest.
pub async fn background_wait_timeout_and_stop(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let p1 = o
        .start_background(
            &id,
            &CommandSpec::shell("sleep 1000 & echo $! > c1.pid; sleep 1000"),
        )
        .await
        .expect("start p1");
    let p2 = o
        .start_background(
            &id,
            &CommandSpec::shell("sleep 1000 & echo $! > c2.pid; sleep 1000"),
        )
        .await
        .expect("start p2");
    assert_ne!(p1, p2);
    let r = o
        .wait_process(&id, &p1, Some(Duration::from_millis(200)))
        .await
        .expect("wait");
    assert!(r.is_none(), "p1 should still run: {r:?}");
    // Let both write their child pids.
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    while !sh(o, &id, "test -s c1.pid && test -s c2.pid")
        .await
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "children never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    o.stop(&id, Some(&p1)).await.expect("stop p1");
    let out = o
        .wait_process(&id, &p1, Some(scaled(Duration::from_secs(20))))
        .await
        .expect("wait p1")
        .expect("p1 ended after stop");
    assert!(
        matches!(out.status, ExitStatus::Signaled(_)),
        "stopped process: {}",
        describe(&out)
    );
    assert_eq!(
        sh(o, &id, &liveness_script("c1.pid"))
            .await
            .stdout_str()
            .trim(),
        "dead"
    );
    assert_eq!(
        sh(o, &id, &liveness_script("c2.pid"))
            .await
            .stdout_str()
            .trim(),
        "alive"
    );
    let snap = o.process_status(&id, &p2).await.expect("p2 status");
    assert_eq!(snap.status, None, "p2 should be untouched");
    // Stopping an ended process is fine.
    o.stop(&id, Some(&p1)).await.expect("stop p1 again");
    o.stop(&id, None).await.expect("stop all");
    let out = o
        .wait_process(&id, &p2, Some(scaled(Duration::from_secs(20))))
        .await
        .expect("wait p2")
        .expect("p2 ended after stop all");
    assert!(
        matches!(out.status, ExitStatus::Signaled(_)),
        "{}",
        describe(&out)
    );
    assert_eq!(
        sh(o, &id, &liveness_script("c2.pid"))
            .await
            .stdout_str()
            .trim(),
        "dead"
    );
    expect_not_found(
        o.stop(&id, Some(&ProcessId::new("no-such-process").expect("id")))
            .await,
        "stop unknown process",
    );
    done(o, &id).await;
}

// ---------------------------------------------------------------------------
// Cases: limits
// ---------------------------------------------------------------------------

/// An endless writer is stopped at the output cap with OutputLimitExceeded
/// and exactly the cap kept.
pub async fn output_cap_stops_command(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let cap = 64 * 1024;
    let out = run(
        o,
        &id,
        CommandSpec::new(["yes", "runbox"])
            .output_limit(cap)
            .timeout(scaled(Duration::from_secs(60))),
    )
    .await;
    assert_eq!(
        out.status,
        ExitStatus::OutputLimitExceeded,
        "{}",
        describe(&out)
    );
    assert_eq!(out.stdout.len() as u64, cap);
    assert!(out.stdout_truncated);
    assert!(out.stdout.starts_with(b"runbox\nrunbox\n"));
    // Under the cap nothing is flagged.
    let out = run(o, &id, CommandSpec::shell("echo small").output_limit(cap)).await;
    expect_exit(&out, 0);
    assert!(!out.stdout_truncated);
    done(o, &id).await;
}

/// The output limit set through apply_resource_limits caps stderr too.
pub async fn output_limit_from_limits(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let limits = ResourceLimits::builder()
        .output_bytes(10_000)
        .build()
        .expect("limits");
    o.apply_resource_limits(&id, &limits).await.expect("apply");
    let out = sh(o, &id, "yes err >&2").await;
    assert_eq!(
        out.status,
        ExitStatus::OutputLimitExceeded,
        "{}",
        describe(&out)
    );
    assert_eq!(out.stderr.len(), 10_000);
    assert!(out.stderr_truncated);
    done(o, &id).await;
}

/// Invalid limits are InvalidInput and change nothing.
pub async fn invalid_limits_rejected(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let bad = [
        ResourceLimits {
            memory_bytes: Some(0),
            ..Default::default()
        },
        ResourceLimits {
            cpus: Some(-1.0),
            ..Default::default()
        },
        ResourceLimits {
            cpus: Some(f64::NAN),
            ..Default::default()
        },
        ResourceLimits {
            pids: Some(0),
            ..Default::default()
        },
        ResourceLimits {
            wall_timeout: Some(Duration::ZERO),
            ..Default::default()
        },
        ResourceLimits {
            memory_bytes: Some(u64::MAX),
            ..Default::default()
        },
    ];
    for l in bad {
        match o.apply_resource_limits(&id, &l).await {
            Err(Error::InvalidInput(_)) => {}
            other => panic!("{l:?}: expected InvalidInput, got {other:?}"),
        }
    }
    expect_exit(&sh(o, &id, "true").await, 0);
    done(o, &id).await;
}

/// The report has one entry per requested limit, in order, each naming its
/// mechanism or why there is none; strict mode accepts what is enforceable.
pub async fn limit_report_covers_every_request(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let limits = ResourceLimits::builder()
        .memory_bytes(256 << 20)
        .cpus(1.0)
        .pids(256)
        .wall_timeout(Duration::from_secs(60))
        .cpu_time(Duration::from_secs(60))
        .file_size_bytes(64 << 20)
        .open_files(256)
        .output_bytes(1 << 20)
        .build()
        .expect("limits");
    let report = o.apply_resource_limits(&id, &limits).await.expect("apply");
    let kinds: Vec<LimitKind> = report.entries.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, LimitKind::ALL.to_vec());
    let caps = o.capabilities();
    for e in &report.entries {
        assert_eq!(
            e.enforced_by.is_some(),
            caps.enforces(e.kind),
            "report and capabilities disagree on {}: {e:?}",
            e.kind
        );
        if e.enforced_by.is_none() {
            assert!(e.note.is_some(), "unenforced {} without a reason", e.kind);
        }
    }
    // Strict mode with only enforceable limits succeeds.
    let mut strict = ResourceLimits {
        strict: true,
        ..Default::default()
    };
    for k in caps.limits.iter() {
        match k {
            LimitKind::Memory => strict.memory_bytes = Some(256 << 20),
            LimitKind::Pids => strict.pids = Some(256),
            LimitKind::WallTimeout => strict.wall_timeout = Some(Duration::from_secs(60)),
            LimitKind::OutputBytes => strict.output_bytes = Some(1 << 20),
            _ => {}
        }
    }
    let r = o
        .apply_resource_limits(&id, &strict)
        .await
        .expect("strict apply");
    assert!(r.all_enforced(), "{r:?}");
    expect_exit(&sh(o, &id, "echo ok").await, 0);
    done(o, &id).await;
}

/// A memory bomb under a memory limit is MemoryLimitExceeded, and the
/// workspace keeps working.
pub async fn memory_limit_reports_oom(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let limits = ResourceLimits::builder()
        .memory_bytes(48 << 20)
        .build()
        .expect("limits");
    apply_enforced(o, &id, &limits).await;
    // `tail` buffers a line that never ends: it grows until killed.
    let out = run(
        o,
        &id,
        CommandSpec::new(["tail", "/dev/zero"]).timeout(scaled(Duration::from_secs(60))),
    )
    .await;
    assert_eq!(
        out.status,
        ExitStatus::MemoryLimitExceeded,
        "{}",
        describe(&out)
    );
    if let Some(peak) = out.peak_memory {
        assert!(
            peak <= (48 << 20) + (4 << 20),
            "peak {peak} above the limit"
        );
    }
    let out = sh(o, &id, "echo still-alive").await;
    expect_exit(&out, 0);
    done(o, &id).await;
}

/// A fork bomb under a pids limit cannot start more processes than allowed.
pub async fn pids_limit_contains_fork_bomb(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let limits = ResourceLimits::builder().pids(16).build().expect("limits");
    apply_enforced(o, &id, &limits).await;
    let out = run(
        o,
        &id,
        CommandSpec::shell(
            "i=0; while [ $i -lt 64 ]; do (echo x >> started; exec sleep 30) & i=$((i+1)); done; wait",
        )
        .timeout(scaled(Duration::from_secs(5))),
    )
    .await;
    assert!(
        !out.status.success(),
        "the bomb should fail or time out: {}",
        describe(&out)
    );
    // The bomb's survivors count against the limit until they are gone.
    o.stop(&id, None).await.expect("stop all");
    let deadline = Instant::now() + scaled(Duration::from_secs(10));
    let out = loop {
        let out = sh(o, &id, "cat started | wc -l").await;
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let n: u64 = out.stdout_str().trim().parse().unwrap_or(u64::MAX);
    assert!(
        (1..=16).contains(&n),
        "{n} processes started under pids=16: {}",
        describe(&out)
    );
    done(o, &id).await;
}

/// A busy loop under a CPU time limit ends well before its wall timeout.
pub async fn cpu_time_limit_ends_busy_loop(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let limits = ResourceLimits::builder()
        .cpu_time(Duration::from_secs(1))
        .build()
        .expect("limits");
    apply_enforced(o, &id, &limits).await;
    let out = run(
        o,
        &id,
        CommandSpec::shell("while :; do :; done").timeout(scaled(Duration::from_secs(60))),
    )
    .await;
    match out.status {
        // SIGXCPU at the soft limit, SIGKILL at the hard one.
        ExitStatus::Signaled(24) | ExitStatus::Signaled(9) => {}
        _ => panic!("expected a CPU-limit signal, got {}", describe(&out)),
    }
    done(o, &id).await;
}

/// A CPU bandwidth limit of half a core keeps a busy loop at about half a
/// core (checked from the reported CPU time where the backend knows it).
pub async fn cpus_limit_throttles(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let limits = ResourceLimits::builder()
        .cpus(0.25)
        .build()
        .expect("limits");
    apply_enforced(o, &id, &limits).await;
    let out = run(
        o,
        &id,
        CommandSpec::shell("while :; do :; done").timeout(Duration::from_secs(2)),
    )
    .await;
    assert_eq!(out.status, ExitStatus::TimedOut, "{}", describe(&out));
    if let Some(cpu) = out.cpu_time {
        let ratio = cpu.as_secs_f64() / out.wall_time.as_secs_f64();
        assert!(
            ratio < 0.6,
            "busy loop used {ratio:.2} cores under a 0.25 core limit"
        );
    }
    done(o, &id).await;
}

/// A file size limit stops a write beyond it.
pub async fn file_size_limit(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let limits = ResourceLimits::builder()
        .file_size_bytes(1 << 20)
        .build()
        .expect("limits");
    apply_enforced(o, &id, &limits).await;
    let out = sh(o, &id, "dd if=/dev/zero of=big bs=4096 count=1024").await;
    assert!(
        !out.status.success(),
        "a 4 MiB write under 1 MiB: {}",
        describe(&out)
    );
    let size = sh(o, &id, "wc -c < big").await;
    let n: u64 = size.stdout_str().trim().parse().unwrap_or(u64::MAX);
    assert!(n <= 1 << 20, "file grew to {n}");
    let small = sh(
        o,
        &id,
        "dd if=/dev/zero of=small bs=4096 count=16 2>/dev/null; wc -c < small",
    )
    .await;
    assert_eq!(small.stdout_str().trim(), "65536", "{}", describe(&small));
    done(o, &id).await;
}

/// An open-files limit is in force for commands.
pub async fn open_files_limit(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let limits = ResourceLimits::builder()
        .open_files(32)
        .build()
        .expect("limits");
    apply_enforced(o, &id, &limits).await;
    let out = sh(o, &id, "ulimit -n").await;
    expect_exit(&out, 0);
    assert_eq!(out.stdout_str().trim(), "32", "{}", describe(&out));
    done(o, &id).await;
}

/// Many workspaces at once do not see each other's files.
pub async fn concurrent_workspaces_are_isolated(o: &dyn Orchestrator) {
    let n = 8;
    let ids: Vec<WorkspaceId> = join_all((0..n).map(|_| new_ws(o)).collect()).await;
    let outs = join_all(
        ids.iter()
            .enumerate()
            .map(|(i, id)| async move {
                let script = format!("echo {i} > mine-{i}; sleep 0.2; ls");
                sh(o, id, &script).await
            })
            .collect(),
    )
    .await;
    for (i, out) in outs.iter().enumerate() {
        expect_exit(out, 0);
        assert_eq!(
            out.stdout_str().trim(),
            format!("mine-{i}"),
            "workspace {i} sees others"
        );
    }
    let host = host_dir();
    for (i, id) in ids.iter().enumerate() {
        let dst = host.path().join(format!("f{i}"));
        if o.capabilities().copy {
            o.copy_from(id, &format!("mine-{i}"), &dst)
                .await
                .expect("copy_from");
            assert_eq!(
                std::fs::read(&dst).expect("read"),
                format!("{i}\n").into_bytes()
            );
        }
    }
    for id in &ids {
        done(o, id).await;
    }
}

async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    // Poll all futures concurrently without an extra dependency.
    let mut pinned: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.expect("ready")).collect()
}

/// workspace_path gives a host directory shared with commands, gone after
/// cleanup.
pub async fn direct_access_path(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let path = o.workspace_path(&id).expect("workspace_path");
    assert!(path.is_dir(), "{} is not a directory", path.display());
    std::fs::write(path.join("from-host"), b"hi").expect("write via path");
    let out = sh(o, &id, "cat from-host").await;
    assert_eq!(out.stdout, b"hi");
    done(o, &id).await;
    assert!(
        !path.exists(),
        "{} still exists after cleanup",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_is_big_enough_and_names_unique() {
        let cases = all_cases();
        assert!(cases.len() >= 25, "{}", cases.len());
        let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), cases.len());
    }

    #[test]
    fn requirements_gate_on_capabilities() {
        let none = Capabilities::default();
        assert!(Requirement::None.unmet(&none).is_none());
        assert!(Requirement::Copy.unmet(&none).is_some());
        assert!(Requirement::Limit(LimitKind::Memory).unmet(&none).is_some());
        let caps = Capabilities {
            limits: vec![LimitKind::Memory],
            ..Default::default()
        };
        assert!(Requirement::Limit(LimitKind::Memory).unmet(&caps).is_none());
        assert!(Requirement::OomDetection.unmet(&caps).is_some());
    }
}

//! Helpers the conformance cases share: workspaces, commands, expectations.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::limits::{ResourceLimits, ResourceLimitsBuilder};
use crate::orchestrator::Orchestrator;
use crate::paths::SandboxPath;
use crate::types::{
    CommandSpec, CommandSpecBuilder, ExecOutput, ExitStatus, ProcessId, WorkspaceId, WorkspaceSpec,
};

use super::harness::scaled;

pub(crate) async fn new_ws(o: &dyn Orchestrator) -> WorkspaceId {
    o.create_workspace(&WorkspaceSpec::new())
        .await
        .unwrap_or_else(|e| panic!("create_workspace failed: {e}"))
}

/// `sh -c SCRIPT` with a generous timeout, built.
pub(crate) fn shell(script: &str) -> CommandSpec {
    command(CommandSpec::shell(script).timeout(scaled(Duration::from_secs(60))))
}

/// Builds a command the case knows to be valid.
pub(crate) fn command(builder: CommandSpecBuilder) -> CommandSpec {
    builder
        .build()
        .unwrap_or_else(|e| panic!("a valid command was rejected: {e}"))
}

/// A sandbox path the case knows to be valid.
pub(crate) fn sandbox(path: &str) -> SandboxPath {
    SandboxPath::new(path).unwrap_or_else(|e| panic!("sandbox path {path:?} rejected: {e}"))
}

/// Runs [`shell`]`(script)` to its end.
pub(crate) async fn sh(o: &dyn Orchestrator, id: &WorkspaceId, script: &str) -> ExecOutput {
    run_spec(o, id, &shell(script)).await
}

/// Builds and runs a command to its end.
pub(crate) async fn run(
    o: &dyn Orchestrator,
    id: &WorkspaceId,
    builder: CommandSpecBuilder,
) -> ExecOutput {
    run_spec(o, id, &command(builder)).await
}

/// Runs a built command to its end.
pub(crate) async fn run_spec(
    o: &dyn Orchestrator,
    id: &WorkspaceId,
    cmd: &CommandSpec,
) -> ExecOutput {
    o.run_command(id, cmd)
        .await
        .unwrap_or_else(|e| panic!("run_command {:?} failed: {e}", cmd.argv()))
}

/// A new workspace with these limits applied; they are ones the case's
/// requirement says are enforced, and the report must agree.
pub(crate) async fn ws_enforcing(
    o: &dyn Orchestrator,
    limits: ResourceLimitsBuilder,
) -> WorkspaceId {
    let id = new_ws(o).await;
    let limits = limits.build().expect("limits");
    let report = o.apply_resource_limits(&id, &limits).await.expect("apply");
    assert!(report.all_enforced(), "{report:?}");
    id
}

pub(crate) fn describe(out: &ExecOutput) -> String {
    format!(
        "status {:?}, stdout {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(400)]),
        String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(400)])
    )
}

pub(crate) fn expect_exit(out: &ExecOutput, code: i32) {
    assert_eq!(out.status, ExitStatus::Exited(code), "{}", describe(out));
}

pub(crate) async fn done(o: &dyn Orchestrator, id: &WorkspaceId) {
    o.cleanup(id)
        .await
        .unwrap_or_else(|e| panic!("cleanup failed: {e}"));
    let residue = o.residue(id).await.expect("residue");
    assert!(residue.is_empty(), "after cleanup: {residue:?}");
}

pub(crate) fn expect_escape<T: std::fmt::Debug>(r: Result<T>, what: &str) {
    match r {
        Err(Error::PathEscapesSandbox { .. }) => {}
        other => panic!("{what}: expected PathEscapesSandbox, got {other:?}"),
    }
}

pub(crate) fn expect_not_found<T: std::fmt::Debug>(r: Result<T>, what: &str) {
    match r {
        Err(e) if e.is_not_found() => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

pub(crate) fn expect_invalid<T: std::fmt::Debug>(r: Result<T>, what: &str) {
    match r {
        Err(Error::InvalidInput(_)) => {}
        other => panic!("{what}: expected InvalidInput, got {other:?}"),
    }
}

/// A valid value for every limit kind, generous enough for any command.
pub(crate) fn every_limit() -> ResourceLimitsBuilder {
    ResourceLimits::builder()
        .memory_bytes(256 << 20)
        .cpus(1.0)
        .pids(256)
        .wall_timeout(Duration::from_secs(60))
        .cpu_time(Duration::from_secs(60))
        .file_size_bytes(64 << 20)
        .open_files(256)
        .output_bytes(1 << 20)
}

/// Zero, negative, non-finite and absurd limits: each is InvalidInput when
/// built, so no backend ever sees one.
pub(crate) fn expect_bad_limits_rejected() {
    let bad = [
        ResourceLimits::builder().memory_bytes(0),
        ResourceLimits::builder().cpus(-1.0),
        ResourceLimits::builder().cpus(f64::NAN),
        ResourceLimits::builder().pids(0),
        ResourceLimits::builder().wall_timeout(Duration::ZERO),
        ResourceLimits::builder().memory_bytes(u64::MAX),
    ];
    for l in bad {
        let shown = format!("{l:?}");
        expect_invalid(l.build(), &shown);
    }
}

/// An empty argv, a bad environment name, a zero timeout and a zero output
/// limit: each is InvalidInput when built.
pub(crate) fn expect_bad_commands_rejected() {
    let bad = [
        CommandSpec::new(Vec::<String>::new()),
        CommandSpec::new(["true"]).env("A=B", "1"),
        CommandSpec::new(["true"]).timeout(Duration::ZERO),
        CommandSpec::new(["true"]).output_limit(0),
    ];
    for cmd in bad {
        let shown = format!("{cmd:?}");
        expect_invalid(cmd.build(), &shown);
    }
}

/// Sandbox paths with `..` that lead outside (or to the root's parent).
pub(crate) const DOTDOT_PATHS: [&str; 4] = ["../f", "a/../../f", "..", "a/.."];

/// Absolute sandbox paths.
pub(crate) const ABSOLUTE_PATHS: [&str; 3] = ["/etc/passwd", "/tmp/runbox-escape", "/"];

/// Each of `paths` is PathEscapesSandbox as a [`SandboxPath`] (what
/// copy_to and copy_from take) and as a working directory, so no backend
/// ever sees one.
pub(crate) fn expect_escapes_at_construction(paths: &[&str]) {
    for &p in paths {
        expect_escape(SandboxPath::new(p), p);
        expect_escape(CommandSpec::new(["true"]).workdir(p).build(), p);
    }
}

/// `r` is NotFound of the workspace itself (not of a path or a process
/// looked up after it).
pub(crate) fn expect_workspace_not_found<T: std::fmt::Debug>(r: Result<T>, what: &str) {
    match r {
        Err(Error::NotFound {
            what: "workspace", ..
        }) => {}
        other => panic!("{what}: expected the workspace to be NotFound first, got {other:?}"),
    }
}

/// Every method that takes a workspace answers NotFound of the workspace
/// for `id` (which does not exist), whatever else it is given: limits of
/// every kind in strict mode, a host path that does not exist, a process
/// that never ran. The lookup comes first.
pub(crate) async fn expect_workspace_missing_everywhere(o: &dyn Orchestrator, id: &WorkspaceId) {
    let host = host_dir();
    std::fs::write(host.path().join("f"), b"x").expect("write");
    let strict = every_limit().strict(true).build().expect("limits");
    for limits in [ResourceLimits::default(), strict] {
        expect_workspace_not_found(
            o.apply_resource_limits(id, &limits).await,
            &format!("apply_resource_limits {limits:?}"),
        );
    }
    let f = sandbox("f");
    expect_workspace_not_found(o.copy_to(id, &host.path().join("f"), &f).await, "copy_to");
    expect_workspace_not_found(
        o.copy_to(id, &host.path().join("missing"), &f).await,
        "copy_to from a missing host path",
    );
    expect_workspace_not_found(
        o.copy_from(id, &f, &host.path().join("g")).await,
        "copy_from",
    );
    let cmd = command(CommandSpec::new(["true"]));
    expect_workspace_not_found(o.run_command(id, &cmd).await, "run_command");
    expect_workspace_not_found(o.start_background(id, &cmd).await, "start_background");
    let pid = ProcessId::new("p1").expect("pid");
    expect_workspace_not_found(o.process_status(id, &pid).await, "process_status");
    expect_workspace_not_found(
        o.wait_process(id, &pid, Some(Duration::ZERO)).await,
        "wait_process",
    );
    expect_workspace_not_found(o.stop(id, Some(&pid)).await, "stop one");
    expect_workspace_not_found(o.stop(id, None).await, "stop all");
    assert!(
        o.workspace_path(id).is_none(),
        "workspace_path of a missing workspace"
    );
    assert!(
        !host.path().join("g").exists(),
        "copy_from wrote despite NotFound"
    );
}

pub(crate) fn host_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("host temp dir")
}

pub(crate) fn pattern(len: usize, seed: u32) -> Vec<u8> {
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
pub(crate) fn liveness_script(file: &str) -> String {
    format!(
        "p=$(cat {file}); if [ -d /proc/$p ] && ! grep -q ') Z' /proc/$p/stat 2>/dev/null; then echo alive; else echo dead; fi"
    )
}

/// Asserts what [`liveness_script`] says about the pid stored in `file`:
/// "alive" or "dead".
pub(crate) async fn expect_liveness(
    o: &dyn Orchestrator,
    id: &WorkspaceId,
    file: &str,
    want: &str,
) {
    let check = sh(o, id, &liveness_script(file)).await;
    assert_eq!(
        check.stdout_str().trim(),
        want,
        "{file}: {}",
        describe(&check)
    );
}

/// A token no other run draws (for canaries the sandbox must not see): the
/// process-wide random hasher keys, the clock, the pid and a counter.
pub(crate) fn token(what: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("runbox-{what}-{:016x}", h.finish())
}

/// A host process (`sleep`) a sandbox must neither see nor signal; killed
/// and reaped when dropped.
pub(crate) struct HostProcess {
    child: std::process::Child,
}

impl HostProcess {
    /// Starts `sleep 600` on the host.
    pub(crate) fn spawn() -> Self {
        let child = std::process::Command::new("sleep")
            .arg("600")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start a host sleep process: {e}"));
        Self { child }
    }

    /// Its host pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs (it is this process's child, so an exit shows
    /// here and not as a zombie elsewhere).
    pub(crate) fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Proves that commands of workspace `id` run isolated from the host, and
/// panics (failing the case) when they do not: `host`'s pid is not in the
/// workspace's /proc (which must show the command itself) and cannot be
/// signalled from it, and its pid 1 is not the host's. Cases that would
/// harm the host if run on it (`kill -9 -1`, writes under /usr, `mount`)
/// call this first, in the same workspace, and never go on without it.
pub(crate) async fn prove_isolated(o: &dyn Orchestrator, id: &WorkspaceId, host: &mut HostProcess) {
    let pid = host.pid();
    let probe = format!(
        "[ -e /proc/self/status ] || echo no-proc; [ -e /proc/{pid} ] && echo visible; \
         kill -0 {pid} 2>/dev/null && echo signalable; echo probed"
    );
    let out = sh(o, id, &probe).await;
    expect_exit(&out, 0);
    assert_eq!(
        out.stdout_str().trim(),
        "probed",
        "NOT ISOLATED: the host process {pid} is visible or signalable from the workspace \
         (or it has no /proc); refusing to go on: {}",
        describe(&out)
    );
    assert!(
        host.is_alive(),
        "the host process {pid} died during the probe"
    );
    let host_init = std::fs::read("/proc/1/cmdline")
        .unwrap_or_else(|e| panic!("cannot read the host's /proc/1/cmdline to compare: {e}"));
    let inside = sh(o, id, "cat /proc/1/cmdline").await;
    expect_exit(&inside, 0);
    assert_ne!(
        inside.stdout, host_init,
        "NOT ISOLATED: pid 1 in the workspace is the host's init; refusing to go on"
    );
}

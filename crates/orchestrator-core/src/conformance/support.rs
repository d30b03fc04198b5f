//! Helpers the conformance cases share: workspaces, commands, expectations.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::limits::ResourceLimitsBuilder;
use crate::orchestrator::Orchestrator;
use crate::types::{CommandSpec, ExecOutput, ExitStatus, WorkspaceId, WorkspaceSpec};

use super::harness::scaled;

pub(crate) async fn new_ws(o: &dyn Orchestrator) -> WorkspaceId {
    o.create_workspace(&WorkspaceSpec::new())
        .await
        .unwrap_or_else(|e| panic!("create_workspace failed: {e}"))
}

pub(crate) async fn sh(o: &dyn Orchestrator, id: &WorkspaceId, script: &str) -> ExecOutput {
    run(
        o,
        id,
        CommandSpec::shell(script).timeout(scaled(Duration::from_secs(60))),
    )
    .await
}

pub(crate) async fn run(o: &dyn Orchestrator, id: &WorkspaceId, cmd: CommandSpec) -> ExecOutput {
    o.run_command(id, &cmd)
        .await
        .unwrap_or_else(|e| panic!("run_command {:?} failed: {e}", cmd.argv))
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

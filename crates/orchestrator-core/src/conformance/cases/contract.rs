//! Cases: the contract points the trait documents: inputs valid before
//! they reach a backend and the workspace looked up first, availability as
//! a state with a reason, stop bounded by its deadline, and cleanup that
//! leaves another live owner's workspace alone.

use std::time::{Duration, Instant};

use crate::orchestrator::{Orchestrator, STOP_DEADLINE};
use crate::paths::SandboxPath;
use crate::types::{Availability, CommandSpec, ProcessId, WorkspaceId};

use crate::conformance::harness::scaled;
use crate::conformance::owner::OwnerProcess;
use crate::conformance::support::*;

/// Bad limits, commands and paths fail when they are built, with the same
/// error kind whatever backend would have run them; with valid inputs, an
/// unknown workspace is NotFound from every method, whatever else the call
/// carries (strict limits of every kind, a missing host path): the lookup
/// comes first.
pub async fn invalid_input_never_reaches_the_backend(o: &dyn Orchestrator) {
    expect_bad_limits_rejected();
    expect_bad_commands_rejected();
    expect_escapes_at_construction(&DOTDOT_PATHS);
    expect_escapes_at_construction(&ABSOLUTE_PATHS);
    expect_invalid(SandboxPath::new("a\0b"), "a sandbox path with a NUL byte");
    let id = WorkspaceId::new("rb-contract-unknown-0").expect("id");
    expect_workspace_missing_everywhere(o, &id).await;
}

/// A backend under test is Available, or Degraded with a reason that says
/// how, and answers within a few seconds.
pub async fn availability_is_a_state_with_a_reason(o: &dyn Orchestrator) {
    let limit = scaled(Duration::from_secs(5));
    let started = Instant::now();
    let avail = tokio::time::timeout(limit, o.is_available())
        .await
        .unwrap_or_else(|_| panic!("is_available did not answer within {limit:?}"));
    match &avail {
        Availability::Available => assert_eq!(avail.reason(), None),
        Availability::Degraded { reason } => assert!(
            !reason.trim().is_empty(),
            "degraded without saying how: {avail:?}"
        ),
        Availability::Unavailable { .. } => {
            panic!("a backend under test answered {avail:?}")
        }
    }
    assert!(avail.is_available(), "{avail:?}");
    assert!(
        started.elapsed() < limit,
        "is_available took {:?}",
        started.elapsed()
    );
}

/// stop of one background tree and stop of every process both return
/// within STOP_DEADLINE (and a margin), and the stopped processes are
/// reported ended.
pub async fn stop_returns_within_the_deadline(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let tree = || command(CommandSpec::shell("sleep 1000 & sleep 1000"));
    let one = o.start_background(&id, &tree()).await.expect("start one");
    let rest = o.start_background(&id, &tree()).await.expect("start rest");
    timed_stop(o, &id, Some(&one)).await;
    expect_ended(o, &id, &one).await;
    timed_stop(o, &id, None).await;
    expect_ended(o, &id, &rest).await;
    done(o, &id).await;
}

/// Stops `pid` (or everything) and checks it answered Ok within the
/// deadline.
async fn timed_stop(o: &dyn Orchestrator, id: &WorkspaceId, pid: Option<&ProcessId>) {
    let bound = scaled(STOP_DEADLINE + Duration::from_secs(5));
    let started = Instant::now();
    match tokio::time::timeout(bound, o.stop(id, pid)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("stop({pid:?}) failed: {e}"),
        Err(_) => panic!("stop({pid:?}) did not return within {bound:?}"),
    }
    assert!(
        started.elapsed() < bound,
        "stop({pid:?}) took {:?}",
        started.elapsed()
    );
}

/// The process is reported ended (soon: stop already waited for it).
async fn expect_ended(o: &dyn Orchestrator, id: &WorkspaceId, pid: &ProcessId) {
    let deadline = Instant::now() + scaled(Duration::from_secs(5));
    loop {
        let snap = o.process_status(id, pid).await.expect("process_status");
        if snap.status.is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pid} still running after stop: {snap:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A workspace created by another live process of this backend survives
/// this process's cleanup (which answers Ok) and reap_orphans; once that
/// process is killed, reap_orphans removes it.
pub async fn cleanup_leaves_a_live_owners_workspace(o: &dyn Orchestrator) {
    let (mut owner, id) = OwnerProcess::spawn()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = owner.pid();
    let mut failure = None;
    if let Err(e) = o.cleanup(&id).await {
        failure = Some(format!("cleanup of a live owner's workspace: {e}"));
    }
    if let Some(f) = still_there(o, &id, "cleanup", pid).await {
        failure.get_or_insert(f);
    }
    if let Err(e) = o.reap_orphans().await {
        failure.get_or_insert(format!("reap_orphans with the owner alive: {e}"));
    }
    if let Some(f) = still_there(o, &id, "reap_orphans", pid).await {
        failure.get_or_insert(f);
    }
    owner.kill();
    // Reap whatever happened above, so a failure leaves nothing behind.
    let reaped = reap_until_gone(o, &id).await;
    if let Some(f) = failure {
        panic!("{f}");
    }
    if let Err(left) = reaped {
        panic!("reap_orphans left the workspace of a killed owner (pid {pid}): {left}");
    }
}

/// Why `id` is not there any more after `after`, if it is not.
async fn still_there(
    o: &dyn Orchestrator,
    id: &WorkspaceId,
    after: &str,
    owner: u32,
) -> Option<String> {
    match o.residue(id).await {
        Ok(r) if !r.is_empty() => None,
        Ok(_) => Some(format!(
            "{after} removed workspace {id} while its owner (pid {owner}) lives"
        )),
        Err(e) => Some(format!("residue after {after}: {e}")),
    }
}

/// Calls reap_orphans until `id` leaves no residue, for a bounded time.
async fn reap_until_gone(o: &dyn Orchestrator, id: &WorkspaceId) -> Result<(), String> {
    let deadline = Instant::now() + scaled(Duration::from_secs(30));
    loop {
        let reaped = o.reap_orphans().await;
        let left = match o.residue(id).await {
            Ok(r) if r.is_empty() => return Ok(()),
            Ok(r) => r.join("; "),
            Err(e) => format!("residue failed: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(match reaped {
                Ok(_) => left,
                Err(e) => format!("{left} (reap_orphans: {e})"),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! Cases: background processes: output so far, wait, stop.

use std::time::{Duration, Instant};

use crate::orchestrator::Orchestrator;
use crate::types::{CommandSpec, ExitStatus, ProcessId, WorkspaceId};

use crate::conformance::harness::scaled;
use crate::conformance::support::*;

/// A background process's output can be read while it runs; waiting gives
/// its final output and status.
pub async fn background_output_and_wait(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let pid = o
        .start_background(
            &id,
            &command(CommandSpec::shell(
                "echo started; echo e >&2; sleep 2; echo done; exit 3",
            )),
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
            &command(CommandSpec::shell(
                "sleep 1000 & echo $! > c1.pid; sleep 1000",
            )),
        )
        .await
        .expect("start p1");
    let p2 = o
        .start_background(
            &id,
            &command(CommandSpec::shell(
                "sleep 1000 & echo $! > c2.pid; sleep 1000",
            )),
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
    expect_signaled(o, &id, &p1, "p1 after stop").await;
    expect_liveness(o, &id, "c1.pid", "dead").await;
    expect_liveness(o, &id, "c2.pid", "alive").await;
    let snap = o.process_status(&id, &p2).await.expect("p2 status");
    assert_eq!(snap.status, None, "p2 should be untouched");
    // Stopping an ended process is fine.
    o.stop(&id, Some(&p1)).await.expect("stop p1 again");
    o.stop(&id, None).await.expect("stop all");
    expect_signaled(o, &id, &p2, "p2 after stop all").await;
    expect_liveness(o, &id, "c2.pid", "dead").await;
    expect_not_found(
        o.stop(&id, Some(&ProcessId::new("no-such-process").expect("id")))
            .await,
        "stop unknown process",
    );
    done(o, &id).await;
}

/// Waits for a stopped background process and checks a signal ended it.
async fn expect_signaled(o: &dyn Orchestrator, id: &WorkspaceId, pid: &ProcessId, what: &str) {
    let out = o
        .wait_process(id, pid, Some(scaled(Duration::from_secs(20))))
        .await
        .unwrap_or_else(|e| panic!("wait {what}: {e}"))
        .unwrap_or_else(|| panic!("{what}: still running"));
    assert!(
        matches!(out.status, ExitStatus::Signaled(_)),
        "{what}: {}",
        describe(&out)
    );
}

//! Cases: how a command ends (exit code, signal, timeout, not found) and where it runs.

use std::time::{Duration, Instant};

use crate::orchestrator::Orchestrator;
use crate::types::{CommandSpec, ExitStatus, StartFailure};

use crate::conformance::harness::scaled;
use crate::conformance::support::*;

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
        o.run_command(
            &id,
            &command(CommandSpec::new(["true"]).workdir("no/such/dir")),
        )
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
        expect_liveness(o, &id, f, "dead").await;
    }
    done(o, &id).await;
}

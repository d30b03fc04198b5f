//! Cases: stdin, stdout and stderr, captured apart, exactly, and live.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::orchestrator::Orchestrator;
use crate::types::{CommandSpec, OutputSink, Stream};

use crate::conformance::harness::scaled;
use crate::conformance::support::*;

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
    let cmd = command(
        CommandSpec::shell("echo first; echo warn >&2; sleep 3; echo second")
            .timeout(scaled(Duration::from_secs(60)))
            .output(sink),
    );
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

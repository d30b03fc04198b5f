//! Cases: resource limits: validation, the report, and each limit in force.

use std::time::{Duration, Instant};

use crate::limits::{LimitKind, ResourceLimits};
use crate::orchestrator::Orchestrator;
use crate::types::{CommandSpec, ExitStatus};

use crate::conformance::harness::scaled;
use crate::conformance::support::*;

/// A wall timeout set through apply_resource_limits applies to commands.
pub async fn wall_timeout_from_limits(o: &dyn Orchestrator) {
    let id = ws_enforcing(
        o,
        ResourceLimits::builder().wall_timeout(Duration::from_millis(500)),
    )
    .await;
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

/// Invalid limits are InvalidInput when built, so no backend sees them.
pub async fn invalid_limits_rejected(_o: &dyn Orchestrator) {
    expect_bad_limits_rejected();
}

/// The report has one entry per requested limit, in order, each naming its
/// mechanism or why there is none; strict mode accepts what is enforceable.
pub async fn limit_report_covers_every_request(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let limits = every_limit().build().expect("limits");
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
    let mut strict = ResourceLimits::builder().strict(true);
    for k in caps.limits.iter() {
        strict = match k {
            LimitKind::Memory => strict.memory_bytes(256 << 20),
            LimitKind::Pids => strict.pids(256),
            LimitKind::WallTimeout => strict.wall_timeout(Duration::from_secs(60)),
            LimitKind::OutputBytes => strict.output_bytes(1 << 20),
            _ => strict,
        };
    }
    let strict = strict.build().expect("strict limits");
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
    let id = ws_enforcing(o, ResourceLimits::builder().memory_bytes(48 << 20)).await;
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
    let id = ws_enforcing(o, ResourceLimits::builder().pids(16)).await;
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
    let id = ws_enforcing(
        o,
        ResourceLimits::builder().cpu_time(Duration::from_secs(1)),
    )
    .await;
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
    let id = ws_enforcing(o, ResourceLimits::builder().cpus(0.25)).await;
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
    let id = ws_enforcing(o, ResourceLimits::builder().file_size_bytes(1 << 20)).await;
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
    let id = ws_enforcing(o, ResourceLimits::builder().open_files(32)).await;
    let out = sh(o, &id, "ulimit -n").await;
    expect_exit(&out, 0);
    assert_eq!(out.stdout_str().trim(), "32", "{}", describe(&out));
    done(o, &id).await;
}

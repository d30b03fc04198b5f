//! The native warm pool: pooled workspaces are handed out once each, are as
//! isolated as fresh ones, take limits, are refilled, and nothing of the
//! pool outlives the backend.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use orchestrator_core::{
    CommandSpec, ExitStatus, IsolationLevel, Orchestrator, ResourceLimits, WorkspaceSpec,
};
use orchestrator_native::{NativeConfig, NativeOrchestrator};

fn pooled(root: &std::path::Path, size: usize) -> Option<NativeOrchestrator> {
    let n = NativeOrchestrator::new(NativeConfig {
        workspace_root: root.to_path_buf(),
        warm_pool: size,
        ..NativeConfig::default()
    })
    .unwrap();
    if let Some(why) = n.isolation_unavailable_reason() {
        eprintln!("note: skipped, no isolation here (nothing to pool): {why}");
        return None;
    }
    Some(n)
}

async fn sh(n: &NativeOrchestrator, ws: &orchestrator_core::WorkspaceId, s: &str) -> String {
    let out = n
        .run_command(ws, &CommandSpec::shell(s).build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Exited(0), "{s}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn pooled_workspaces_are_handed_out_once_isolated_and_refilled() {
    let root = tempfile::tempdir().unwrap();
    let Some(n) = pooled(root.path(), 2) else {
        return;
    };
    assert_eq!(n.pool_stats().ready, 0, "nothing before warm_up");
    n.warm_up().await.unwrap();
    assert_eq!(n.pool_stats().ready, 2);

    // Three at once: two from the pool, one fresh; all distinct.
    let spec = WorkspaceSpec::new();
    let (a, b, c) = tokio::join!(
        n.create_workspace(&spec),
        n.create_workspace(&spec),
        n.create_workspace(&spec)
    );
    let ids = [a.unwrap(), b.unwrap(), c.unwrap()];
    let distinct: BTreeSet<_> = ids.iter().map(|i| i.to_string()).collect();
    assert_eq!(distinct.len(), 3, "{ids:?}");
    let s = n.pool_stats();
    assert_eq!((s.hits, s.misses), (2, 1), "{s:?}");

    // Each is fully isolated, with a /tmp and a pid namespace of its own.
    for (i, ws) in ids.iter().enumerate() {
        let r = n.isolation(ws).await.unwrap();
        assert_eq!(r.level, IsolationLevel::Full, "{r:?}");
        sh(&n, ws, &format!("echo {i} > /tmp/mark")).await;
        let status = sh(
            &n,
            ws,
            "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status",
        )
        .await;
        assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
        assert!(status.contains("Seccomp:\t2"), "{status}");
    }
    for (i, ws) in ids.iter().enumerate() {
        assert_eq!(sh(&n, ws, "cat /tmp/mark").await.trim(), i.to_string());
        assert_eq!(sh(&n, ws, "ls /tmp").await.trim(), "mark");
    }

    // A pooled workspace takes limits like a fresh one.
    let limits = ResourceLimits::builder()
        .memory_bytes(64 << 20)
        .pids(32)
        .wall_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    wait_for("the refill", || n.pool_stats().ready == 2).await;
    let limited = n
        .create_workspace(&WorkspaceSpec::new().limits(limits))
        .await
        .unwrap();
    assert_eq!(n.pool_stats().hits, 3);
    if n.cgroup_version().is_some() {
        let out = n
            .run_command(
                &limited,
                &CommandSpec::shell("head -c 200000000 /dev/zero | tail > /dev/null")
                    .build()
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(out.status, ExitStatus::MemoryLimitExceeded, "{out:?}");
    }

    // Cleaned up, a pooled workspace is gone for good: never handed out
    // again.
    let mut seen: BTreeSet<String> = distinct.clone();
    seen.insert(limited.to_string());
    for ws in ids.iter().chain([&limited]) {
        n.cleanup(ws).await.unwrap();
        assert!(n.residue(ws).await.unwrap().is_empty());
    }
    wait_for("the refill", || n.pool_stats().ready == 2).await;
    for _ in 0..4 {
        let ws = n.create_workspace(&spec).await.unwrap();
        assert!(seen.insert(ws.to_string()), "{ws} handed out twice");
        n.cleanup(&ws).await.unwrap();
    }
    assert_eq!(
        n.pool_stats().refill_failures,
        0,
        "{:?}",
        n.pool_last_error()
    );
}

#[tokio::test]
async fn a_workspace_with_mounts_gets_a_fresh_sandbox() {
    let root = tempfile::tempdir().unwrap();
    let Some(n) = pooled(root.path(), 1) else {
        return;
    };
    n.warm_up().await.unwrap();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("f"), b"mounted\n").unwrap();
    let m = orchestrator_core::Mount::new(
        host.path(),
        orchestrator_core::SandboxPath::new("m").unwrap(),
        true,
    )
    .unwrap();
    let ws = n
        .create_workspace(&WorkspaceSpec::new().mount(m))
        .await
        .unwrap();
    assert_eq!(sh(&n, &ws, "cat m/f").await, "mounted\n");
    let s = n.pool_stats();
    assert_eq!((s.hits, s.ready), (0, 1), "{s:?}");
    n.cleanup(&ws).await.unwrap();
}

#[tokio::test]
async fn the_pool_drains_with_the_backend() {
    let root = tempfile::tempdir().unwrap();
    let Some(n) = pooled(root.path(), 3) else {
        return;
    };
    n.warm_up().await.unwrap();
    let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    n.cleanup(&ws).await.unwrap();
    // A refill is under way; dropping the backend ends what waits and what
    // the refill makes.
    drop(n);
    wait_for("the pool's directories to go", || {
        std::fs::read_dir(root.path()).unwrap().count() == 0
    })
    .await;
}

/// A refill cut short (its runtime shut down while it starts a sandbox)
/// leaves no directory and no process behind.
#[test]
fn a_refill_cancelled_with_its_runtime_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    for pause_us in [0u64, 500, 2_000, 5_000] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let Some(n) = rt.block_on(async {
            let n = pooled(root.path(), 2)?;
            n.warm_up().await.unwrap();
            let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
            n.cleanup(&ws).await.unwrap();
            Some(n)
        }) else {
            return;
        };
        // The refill runs for a moment, then its runtime goes away.
        rt.block_on(async { tokio::time::sleep(Duration::from_micros(pause_us)).await });
        drop(rt);
        drop(n);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::read_dir(root.path()).unwrap().count() != 0 {
            assert!(
                Instant::now() < deadline,
                "left after a refill cancelled at {pause_us} µs: {:?}",
                std::fs::read_dir(root.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Every cgroup directory named `name` under the backend's cgroup parent,
/// in any mounted hierarchy.
fn cgroup_dirs(parent: &str, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mounts.lines() {
        let Some((mount, fs)) = line.split_once(" - ") else {
            continue;
        };
        if !fs.starts_with("cgroup") {
            continue;
        }
        let point = mount.split(' ').nth(4).unwrap();
        let d = std::path::Path::new(point).join(parent).join(name);
        if d.is_dir() {
            found.push(d);
        }
    }
    found
}

/// A pooled sandbox's cgroup is made ahead with the init in it: limits
/// given at create time are written to it, the commands' process limit
/// leaves the init out, stopping everything spares the init, and neither
/// cleanup nor dropping the backend leaves a cgroup behind.
#[tokio::test]
async fn pooled_cgroups_hold_the_init_and_leave_nothing() {
    let root = tempfile::tempdir().unwrap();
    let Some(n) = pooled(root.path(), 2) else {
        return;
    };
    if let Some(why) = n.cgroup_unavailable_reason() {
        eprintln!("note: skipped, no writable cgroup here: {why}");
        return;
    }
    let parent = NativeConfig::default().cgroup_parent;
    n.warm_up().await.unwrap();
    let pooled_ids: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(pooled_ids.len(), 2);
    for id in &pooled_ids {
        assert!(
            !cgroup_dirs(&parent, id).is_empty(),
            "no cgroup for pooled {id}"
        );
    }

    let limits = ResourceLimits::builder()
        .pids(3)
        .wall_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let ws = n
        .create_workspace(&WorkspaceSpec::new().limits(limits))
        .await
        .unwrap();
    assert_eq!(n.pool_stats().hits, 1);
    // sh and two children are three processes: allowed, the init aside.
    let out = sh(&n, &ws, "sleep 0.2 & sleep 0.2 & wait; echo ok").await;
    assert_eq!(out.trim(), "ok");
    // The init sits in the memory cgroup too: its commands are the OOM
    // killer's first choice, not it.
    let adj = sh(
        &n,
        &ws,
        "cat /proc/1/oom_score_adj /proc/self/oom_score_adj",
    )
    .await;
    let adj: Vec<&str> = adj.split_whitespace().collect();
    assert_eq!(adj, ["0", "500"], "init, command");
    // A fourth is refused.
    let out = n
        .run_command(
            &ws,
            &CommandSpec::shell("sleep 1 & sleep 1 & sleep 1 & wait")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(!out.status.success(), "{out:?}");

    // Stopping every process of the workspace spares its init: the next
    // command still runs.
    let bg = n
        .start_background(&ws, &CommandSpec::shell("sleep 30").build().unwrap())
        .await
        .unwrap();
    n.stop(&ws, None).await.unwrap();
    let snap = n.process_status(&ws, &bg).await.unwrap();
    assert!(snap.status.is_some(), "the background sleep survived stop");
    assert_eq!(sh(&n, &ws, "echo again").await.trim(), "again");

    n.cleanup(&ws).await.unwrap();
    assert!(n.residue(&ws).await.unwrap().is_empty());
    assert!(cgroup_dirs(&parent, ws.as_str()).is_empty());

    // Dropped, the backend removes the pool's cgroups with its sandboxes.
    let waiting: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    drop(n);
    // A refill still in flight discards what it makes a moment later.
    wait_for("the pool's cgroups to go", || {
        waiting
            .iter()
            .chain(&pooled_ids)
            .all(|id| cgroup_dirs(&parent, id).is_empty())
    })
    .await;
}

/// Refills wait for a quiet moment: a take from a pool at least half full
/// starts none while the workspace runs its command; its cleanup (nothing
/// else running) does; a take that leaves the pool below half full starts
/// one at once.
#[tokio::test]
async fn refills_wait_for_the_cleanup_unless_the_pool_runs_low() {
    let root = tempfile::tempdir().unwrap();
    let Some(n) = pooled(root.path(), 4) else {
        return;
    };
    n.warm_up().await.unwrap();
    let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let s = n.pool_stats();
    assert_eq!((s.ready, s.in_flight), (3, 0), "{s:?}");
    sh(&n, &ws, "true").await;
    assert_eq!(n.pool_stats().in_flight, 0);
    n.cleanup(&ws).await.unwrap();
    let s = n.pool_stats();
    assert_eq!(
        s.ready + s.in_flight,
        4,
        "the cleanup started the refill: {s:?}"
    );
    wait_for("the refill", || n.pool_stats().ready == 4).await;

    // Two taken at once: the second leaves the pool below half full.
    let a = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let b = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let c = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let s = n.pool_stats();
    assert_eq!(s.ready, 1, "{s:?}");
    assert!(
        s.in_flight >= 1,
        "a pool below half full refills at once: {s:?}"
    );
    // And one left at three quarters is refilled within the delay anyway.
    for ws in [a, b, c] {
        n.cleanup(&ws).await.unwrap();
    }
    wait_for("the refill", || n.pool_stats().ready == 4).await;
    let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let _busy = n
        .start_background(&ws, &CommandSpec::shell("sleep 5").build().unwrap())
        .await
        .unwrap();
    wait_for("the delayed refill", || n.pool_stats().ready == 4).await;
    n.cleanup(&ws).await.unwrap();
    assert_eq!(
        n.pool_stats().refill_failures,
        0,
        "{:?}",
        n.pool_last_error()
    );
}

/// A refill that fails is counted and its reason kept, and `warm_up` says
/// so; nothing half-made is left in the pool.
#[tokio::test]
async fn refill_failures_are_reported() {
    let root = tempfile::tempdir().unwrap();
    let ws_root = root.path().join("workspaces");
    let Some(n) = pooled(&ws_root, 2) else {
        return;
    };
    // The probe has answered (pooled() asked); now the root goes away, so
    // no workspace directory can be reserved.
    std::fs::remove_dir_all(&ws_root).unwrap();
    let e = n.warm_up().await.unwrap_err();
    let s = n.pool_stats();
    assert!(s.refill_failures >= 1, "{s:?}");
    assert_eq!(s.ready, 0, "{s:?}");
    let why = n.pool_last_error().expect("the last refill error is kept");
    assert_eq!(why, e.to_string());
    assert!(why.contains("workspaces"), "{why}");
}

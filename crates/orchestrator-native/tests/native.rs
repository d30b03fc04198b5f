//! Native-specific behaviour beyond the shared conformance suite: the rlimit
//! fallback and strict mode, limit reports, orphan reaping, dropped futures,
//! teardown on drop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator_core::{
    CommandSpec, Error, ExitStatus, IsolationMode, LimitKind, Orchestrator, ResourceLimits,
    WorkspaceId, WorkspaceSpec,
};
use orchestrator_native::{
    CgroupVersion, NativeConfig, NativeOrchestrator, CGROUP_V1, CGROUP_V2, RLIMIT,
};

fn config(root: &std::path::Path, cgroups: bool) -> NativeConfig {
    NativeConfig {
        workspace_root: root.to_path_buf(),
        use_cgroups: cgroups,
        ..NativeConfig::default()
    }
}

/// `config` for host processes (isolation `none`): the tests that follow
/// pids written by a command from the host need host pids.
fn host_config(root: &std::path::Path, cgroups: bool) -> NativeConfig {
    NativeConfig {
        isolation: IsolationMode::None,
        ..config(root, cgroups)
    }
}

/// Host pids of processes whose command line is exactly `cmdline` (words
/// joined by spaces).
fn processes_running(cmdline: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let words: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        if words.join(" ") == cmdline && pid_alive(pid) {
            found.push(pid);
        }
    }
    found
}

fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.contains(") Z "),
        Err(_) => false,
    }
}

#[tokio::test]
async fn rlimit_fallback_reports_honestly_and_strict_refuses() {
    let root = tempfile::tempdir().unwrap();
    let n = NativeOrchestrator::new(config(root.path(), false)).unwrap();
    assert_eq!(n.cgroup_version(), None);
    assert!(n.cgroup_unavailable_reason().unwrap().contains("disabled"));
    let avail = n.is_available().await;
    assert!(
        avail.is_available() && avail.reason().is_some(),
        "{avail:?}"
    );
    let caps = n.capabilities();
    assert!(!caps.enforces(LimitKind::Cpus));
    assert!(!caps.oom_detection);

    let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let limits = ResourceLimits::builder()
        .cpus(0.5)
        .memory_bytes(256 << 20)
        .open_files(64)
        .build()
        .unwrap();
    let report = n.apply_resource_limits(&ws, &limits).await.unwrap();
    let cpus = report.get(LimitKind::Cpus).unwrap();
    assert_eq!(cpus.enforced_by, None);
    assert!(cpus.note.as_deref().unwrap().contains("cgroup"));
    assert_eq!(
        report.get(LimitKind::Memory).unwrap().enforced_by,
        Some(RLIMIT)
    );

    // Strict: refused, and nothing changed (open files stay as before).
    let strict = ResourceLimits::builder()
        .cpus(0.5)
        .open_files(16)
        .strict(true)
        .build()
        .unwrap();
    match n.apply_resource_limits(&ws, &strict).await {
        Err(Error::LimitNotEnforceable { limit, .. }) => assert_eq!(limit, LimitKind::Cpus),
        other => panic!("{other:?}"),
    }
    let out = n
        .run_command(&ws, &CommandSpec::shell("ulimit -n").build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.stdout_str().trim(), "64");
    // Strict config refuses at creation too.
    let strict_n = NativeOrchestrator::new(NativeConfig {
        strict: true,
        ..config(root.path(), false)
    })
    .unwrap();
    let spec = WorkspaceSpec::new().limits(ResourceLimits::builder().cpus(1.0).build().unwrap());
    assert!(matches!(
        strict_n.create_workspace(&spec).await,
        Err(Error::LimitNotEnforceable { .. })
    ));
    n.cleanup(&ws).await.unwrap();
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "the workspace root is empty again"
    );
}

#[tokio::test]
async fn cgroup_mode_reports_the_cgroup_version() {
    let root = tempfile::tempdir().unwrap();
    let n = NativeOrchestrator::new(config(root.path(), true)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Unprivileged: cgroups cannot be written, the fallback must be chosen.
        assert_eq!(n.cgroup_version(), None);
        return;
    }
    let version = n.cgroup_version().unwrap_or_else(|| {
        panic!(
            "root without writable cgroups: {:?}",
            n.cgroup_unavailable_reason()
        )
    });
    let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let report = n
        .apply_resource_limits(
            &ws,
            &ResourceLimits::builder()
                .memory_bytes(64 << 20)
                .pids(32)
                .cpus(1.0)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let want = match version {
        CgroupVersion::V2 => CGROUP_V2,
        CgroupVersion::V1 => CGROUP_V1,
    };
    for e in &report.entries {
        assert_eq!(e.enforced_by, Some(want.clone()), "{e:?}");
    }
    let out = n
        .run_command(&ws, &CommandSpec::shell("echo hi").build().unwrap())
        .await
        .unwrap();
    assert!(
        out.cpu_time.is_some() && out.peak_memory.is_some(),
        "{out:?}"
    );
    n.cleanup(&ws).await.unwrap();
    assert!(n.residue(&ws).await.unwrap().is_empty());
}

#[tokio::test]
async fn orphans_of_dead_owners_are_reaped_live_ones_kept() {
    let root = tempfile::tempdir().unwrap();
    let n = NativeOrchestrator::new(config(root.path(), true)).unwrap();
    let live = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();

    // A workspace whose owner is a process that has exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    // Workspace names carry their owner: pid and start time.
    let orphan = format!("ws-{dead_pid:x}-1-1");
    let orphan = orphan.as_str();
    std::fs::create_dir_all(root.path().join(orphan).join("sub")).unwrap();
    // A name that names no owner is an orphan too.
    let nameless = "ws-orphan-1";
    std::fs::create_dir_all(root.path().join(nameless)).unwrap();
    // Anything else in the root is not ours to judge.
    std::fs::create_dir_all(root.path().join("not-a-workspace")).unwrap();
    // A process left running in the orphan's directory.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("300")
        .current_dir(root.path().join(orphan))
        .spawn()
        .unwrap();
    let sleeper_pid = sleeper.id() as i32;

    let reaped = n.reap_orphans().await.unwrap();
    assert_eq!(reaped.len(), 2, "{reaped:?}");
    assert!(reaped.iter().any(|r| r.contains(orphan)), "{reaped:?}");
    assert!(!root.path().join(orphan).exists());
    assert!(!root.path().join(nameless).exists());
    assert!(root.path().join("not-a-workspace").exists());
    let _ = sleeper.wait();
    assert!(!pid_alive(sleeper_pid));
    // Our own live workspace is untouched.
    assert!(n.workspace_path(&live).unwrap().is_dir());
    let again = n.reap_orphans().await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    n.cleanup(&live).await.unwrap();
}

#[tokio::test]
async fn cleanup_by_id_removes_a_dead_owners_workspace() {
    let root = tempfile::tempdir().unwrap();
    let n = NativeOrchestrator::new(config(root.path(), true)).unwrap();
    // A workspace left by an owner that is gone (pid 2^30 - 1 is above
    // any pid_max), with a process still in it.
    let ws = WorkspaceId::new("ws-3fffffff-1-1").unwrap();
    let dir = root.path().join(ws.as_str());
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("300")
        .current_dir(&dir)
        .spawn()
        .unwrap();
    n.cleanup(&ws).await.unwrap();
    assert!(!dir.exists());
    let _ = sleeper.wait();
    assert!(n.residue(&ws).await.unwrap().is_empty());
    // A live owner's workspace is left alone: here the owner is a `sleep`
    // child, named by its pid and start time.
    let mut owner = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let pid = owner.id();
    let start = orchestrator_core::owner::process_start_time(pid).unwrap();
    let theirs = WorkspaceId::new(format!("ws-{pid:x}-{start:x}-1")).unwrap();
    let their_dir = root.path().join(theirs.as_str());
    std::fs::create_dir_all(&their_dir).unwrap();
    n.cleanup(&theirs).await.unwrap();
    assert!(their_dir.is_dir(), "a live owner's workspace was removed");
    assert!(n.reap_orphans().await.unwrap().is_empty());
    assert!(their_dir.is_dir());
    // Once the owner is gone, it is an orphan.
    owner.kill().unwrap();
    owner.wait().unwrap();
    let reaped = n.reap_orphans().await.unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert!(!their_dir.exists());
}

#[tokio::test]
async fn dropped_run_command_future_kills_the_tree() {
    let root = tempfile::tempdir().unwrap();
    let n = Arc::new(NativeOrchestrator::new(host_config(root.path(), true)).unwrap());
    let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let tree = "sleep 300 & echo $! > child.pid; sleep 300";
    let cmd = CommandSpec::shell(tree).build().unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(500), n.run_command(&ws, &cmd)).await;
    let pid_file = n.workspace_path(&ws).unwrap().join("child.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pid_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pid_alive(pid), "child {pid} survived the dropped future");
    n.cleanup(&ws).await.unwrap();
}

#[tokio::test]
async fn dropping_the_backend_removes_its_workspaces() {
    let root = tempfile::tempdir().unwrap();
    let n = NativeOrchestrator::new(config(root.path(), true)).unwrap();
    let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let bg = n
        .start_background(&ws, &CommandSpec::new(["sleep", "300"]).build().unwrap())
        .await
        .unwrap();
    let _ = bg;
    let dir = n.workspace_path(&ws).unwrap();
    drop(n);
    assert!(!dir.exists());
    let n2 = NativeOrchestrator::new(config(root.path(), true)).unwrap();
    assert!(n2.residue(&ws).await.unwrap().is_empty());
}

#[tokio::test]
async fn workdir_that_is_a_file_and_bad_ids() {
    let root = tempfile::tempdir().unwrap();
    let n = NativeOrchestrator::new(config(root.path(), true)).unwrap();
    let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    n.run_command(&ws, &CommandSpec::shell("echo > f").build().unwrap())
        .await
        .unwrap();
    assert!(n
        .run_command(
            &ws,
            &CommandSpec::new(["true"]).workdir("f").build().unwrap()
        )
        .await
        .unwrap_err()
        .is_not_found());
    // A non-executable file is FailedToStart(PermissionDenied).
    let out = n
        .run_command(&ws, &CommandSpec::new(["./f"]).build().unwrap())
        .await
        .unwrap();
    assert!(
        matches!(out.status, ExitStatus::FailedToStart { .. }),
        "{out:?}"
    );
    assert!(WorkspaceId::new("../etc").is_err());
    n.cleanup(&ws).await.unwrap();
}

#[tokio::test]
async fn unwritable_root_is_a_typed_error() {
    let r = NativeOrchestrator::new(NativeConfig {
        workspace_root: "/proc/runbox-cannot-exist".into(),
        ..NativeConfig::default()
    });
    match r {
        Err(Error::Backend { backend, source }) => {
            assert_eq!(backend, "native");
            assert!(source
                .downcast_ref::<orchestrator_native::NativeOrchestratorError>()
                .is_some());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn output_beyond_the_default_cap_is_dropped_not_killed() {
    let root = tempfile::tempdir().unwrap();
    let n = NativeOrchestrator::new(config(root.path(), true)).unwrap();
    let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let cap = orchestrator_native::DEFAULT_OUTPUT_CAP;
    let script = format!("head -c {} /dev/zero; echo done >&2", cap + (4 << 20));
    let out = n
        .run_command(&ws, &CommandSpec::shell(script).build().unwrap())
        .await
        .unwrap();
    // No limit was requested: the command runs to its end, the capture is
    // bounded and says so.
    assert_eq!(out.status, ExitStatus::Exited(0), "{:?}", out.status);
    assert_eq!(out.stdout.len() as u64, cap);
    assert!(out.stdout_truncated);
    assert_eq!(out.stderr, b"done\n");
    n.cleanup(&ws).await.unwrap();
}

#[tokio::test]
async fn escapee_that_left_group_and_directory_is_killed_at_cleanup() {
    let root = tempfile::tempdir().unwrap();
    // No cgroup: found through its environment (HOME is the workspace).
    let n = NativeOrchestrator::new(host_config(root.path(), false)).unwrap();
    let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let out = n
        .run_command(
            &ws,
            &CommandSpec::shell(
                "cd / && setsid sleep 300 > /dev/null 2>&1 & echo $! > \"$HOME/pid\"",
            )
            .build()
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Exited(0));
    let pid: i32 = std::fs::read_to_string(n.workspace_path(&ws).unwrap().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    n.cleanup(&ws).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pid_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pid_alive(pid), "escaped process {pid} survived cleanup");
}

/// In a sandbox, a dropped `run_command` future kills the tree through the
/// init, and a process that left its group and session dies with the
/// sandbox at cleanup (with or without a cgroup).
#[tokio::test]
async fn sandboxed_trees_die_with_their_future_and_their_sandbox() {
    let root = tempfile::tempdir().unwrap();
    for cgroups in [true, false] {
        let n = NativeOrchestrator::new(config(root.path(), cgroups)).unwrap();
        if let Some(why) = n.isolation_unavailable_reason() {
            eprintln!("note: skipped, no isolation here: {why}");
            return;
        }
        let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
        let child = format!("sleep {}", 31000 + cgroups as u32);
        let tree = format!("{child} & {child}");
        let cmd = CommandSpec::shell(&tree).build().unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(500), n.run_command(&ws, &cmd)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_running(&child).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            processes_running(&child),
            Vec::<i32>::new(),
            "survived the future"
        );

        let escapee = format!("sleep {}", 32000 + cgroups as u32);
        // It gets a moment to leave the group before the command ends (the
        // group's leftovers are killed then).
        let script = format!("cd / && setsid {escapee} > /dev/null 2>&1 & sleep 1");
        let out = n
            .run_command(&ws, &CommandSpec::shell(&script).build().unwrap())
            .await
            .unwrap();
        assert_eq!(out.status, ExitStatus::Exited(0));
        // It may still be between setsid's fork and its exec.
        let deadline = Instant::now() + Duration::from_secs(5);
        while processes_running(&escapee).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(processes_running(&escapee).len(), 1, "the escapee runs");
        n.cleanup(&ws).await.unwrap();
        // cleanup returns once the sandbox's outer process has exited: its
        // pid namespace, escapee included, is gone by then.
        assert_eq!(
            processes_running(&escapee),
            Vec::<i32>::new(),
            "survived cleanup"
        );
        assert!(n.residue(&ws).await.unwrap().is_empty());
    }
}

/// Backends of one process sharing a root never draw the same id, and no
/// creation ever removes another workspace (the conformance suite makes one
/// backend per case; in a VM with a coarse clock two of them once drew the
/// same id, and the loser's error path deleted the winner's directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_backends_on_one_root_never_share_or_remove_workspaces() {
    let root = tempfile::tempdir().unwrap();
    let backends: Vec<NativeOrchestrator> = (0..8)
        .map(|_| NativeOrchestrator::new(config(root.path(), false)).unwrap())
        .collect();
    let mut tasks = Vec::new();
    for n in &backends {
        let n = n.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..100 {
                let n = n.clone();
                let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
                let marker = n.workspace_path(&ws).unwrap().join("marker");
                std::fs::write(&marker, ws.as_str()).unwrap();
                ids.push((ws, marker, n));
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = all.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(distinct.len(), all.len(), "two workspaces got the same id");
    for (id, marker, _) in &all {
        assert_eq!(
            std::fs::read_to_string(marker).unwrap(),
            id.as_str(),
            "a workspace's files were lost or overwritten"
        );
    }
    for (id, _, n) in &all {
        n.cleanup(id).await.unwrap();
    }
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("ws-"))
        .collect();
    assert!(left.is_empty(), "workspaces left after cleanup: {left:?}");
}

/// The registry's factory takes the settings `root` and `strict` and refuses
/// others, and a warm pool.
#[tokio::test]
async fn registry_factory_takes_root_and_strict() {
    use orchestrator_core::{registry, BackendOptions};
    let root = tempfile::tempdir().unwrap();
    let canonical = root.path().canonicalize().unwrap();
    let options = BackendOptions::new()
        .setting("root", root.path().to_string_lossy())
        .setting("strict", "true");
    let n = registry::create_with("native", &options).unwrap();
    let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    assert!(n.workspace_path(&ws).unwrap().starts_with(&canonical));
    n.cleanup(&ws).await.unwrap();
    // A warm pool and the isolation settings are taken.
    let pooled = options
        .clone()
        .pool_size(1)
        .setting("isolation", "auto")
        .setting("network", "none");
    let n = registry::create_with("native", &pooled).unwrap();
    let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    n.cleanup(&ws).await.unwrap();
    for bad in [
        BackendOptions::new().setting("image", "x"),
        BackendOptions::new().setting("strict", "yes"),
        BackendOptions::new().setting("root", ""),
        BackendOptions::new().pool_size(orchestrator_native::MAX_WARM_POOL + 1),
        BackendOptions::new().setting("isolation", "partial"),
        BackendOptions::new().setting("network", "bridge"),
    ] {
        let e = registry::create_with("native", &bad).unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{bad:?}: {e:?}");
    }
}

//! The rlimit fallback (no writable cgroups): the LimitReport is honest and
//! strict mode refuses what the fallback cannot enforce.
//!
//! Every test here forces the fallback (`use_cgroups: false`), so they run
//! as root too; what differs is RLIMIT_NPROC, which binds only non-root
//! users, and the expectations follow the effective uid. `cargo xtask
//! nonroot` runs this binary as an unprivileged user, where
//! `default_config_finds_no_writable_cgroups` also checks that the default
//! configuration falls back on its own.

use std::path::Path;
use std::time::Duration;

use orchestrator_core::{
    CommandSpec, Error, ExitStatus, LimitKind, LimitValue, Mechanism, Orchestrator, ResourceLimits,
    WorkspaceSpec,
};
use orchestrator_native::{NativeConfig, NativeOrchestrator, RLIMIT};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn fallback(root: &Path, strict: bool) -> NativeOrchestrator {
    NativeOrchestrator::new(NativeConfig {
        workspace_root: root.to_path_buf(),
        strict,
        use_cgroups: false,
        ..NativeConfig::default()
    })
    .expect("native backend")
}

fn all_limits(strict: bool) -> ResourceLimits {
    use LimitValue::{Bytes, Count, Cpus};
    let every_kind = [
        (LimitKind::Memory, Bytes(256 << 20)),
        (LimitKind::Cpus, Cpus(0.5)),
        (LimitKind::Pids, Count(64)),
        (
            LimitKind::WallTimeout,
            LimitValue::Duration(Duration::from_secs(30)),
        ),
        (
            LimitKind::CpuTime,
            LimitValue::Duration(Duration::from_secs(7)),
        ),
        (LimitKind::FileSize, Bytes(3 << 20)),
        (LimitKind::OpenFiles, Count(48)),
        (LimitKind::OutputBytes, Bytes(1 << 20)),
    ];
    every_kind
        .into_iter()
        .try_fold(ResourceLimits::builder().strict(strict), |b, (k, v)| {
            b.limit(k, v)
        })
        .and_then(|b| b.build())
        .expect("limits")
}

/// `Max ...` lines of /proc/self/limits as seen by a command in the
/// workspace: (soft, hard).
async fn proc_limits(o: &NativeOrchestrator, id: &orchestrator_core::WorkspaceId) -> String {
    let out = o
        .run_command(
            id,
            &CommandSpec::new(["cat", "/proc/self/limits"])
                .build()
                .unwrap(),
        )
        .await
        .expect("run");
    assert_eq!(out.status, ExitStatus::Exited(0), "{}", out.stderr_str());
    out.stdout_str().into_owned()
}

fn limit_line<'a>(limits: &'a str, name: &str) -> Vec<&'a str> {
    let line = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name:?} in {limits}"));
    line[name.len()..].split_whitespace().take(2).collect()
}

fn assert_clean(root: &Path) {
    let left: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in the workspace root: {left:?}");
}

#[tokio::test]
async fn report_is_honest_and_rlimits_really_apply() {
    let dir = tempfile::tempdir().unwrap();
    let o = fallback(dir.path(), false);
    assert_eq!(o.cgroup_version(), None);
    let caps = o.capabilities();
    assert!(!caps.oom_detection, "no OOM detection without a cgroup");
    assert!(!caps.enforces(LimitKind::Cpus));
    // RLIMIT_NPROC binds any user but root; an isolated command never runs
    // as root.
    let nproc_binds = !is_root() || caps.isolation;
    assert_eq!(caps.enforces(LimitKind::Pids), nproc_binds);
    let avail = o.is_available().await;
    assert!(avail.is_available(), "{avail:?}");
    assert!(
        avail.reason().unwrap_or("").contains("rlimit"),
        "degraded availability should say why: {avail:?}"
    );

    let id = o.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let report = o
        .apply_resource_limits(&id, &all_limits(false))
        .await
        .expect("non-strict apply reports, never fails");
    assert_eq!(report.entries.len(), 8, "{report:?}");
    let by = |k| report.get(k).unwrap_or_else(|| panic!("{k} missing"));
    assert_eq!(by(LimitKind::Memory).enforced_by, Some(RLIMIT));
    assert!(
        by(LimitKind::Memory)
            .note
            .as_deref()
            .unwrap_or("")
            .contains("RLIMIT_AS"),
        "memory note must say it is address space, not RSS: {:?}",
        by(LimitKind::Memory)
    );
    assert_eq!(by(LimitKind::Cpus).enforced_by, None);
    assert!(by(LimitKind::Cpus)
        .note
        .as_deref()
        .unwrap_or("")
        .contains("cgroup"));
    let pids_note = by(LimitKind::Pids).note.clone().unwrap_or_default();
    if !nproc_binds {
        assert_eq!(
            by(LimitKind::Pids).enforced_by,
            None,
            "RLIMIT_NPROC does not bind root"
        );
    } else if caps.isolation {
        assert_eq!(by(LimitKind::Pids).enforced_by, Some(RLIMIT));
        assert!(pids_note.contains("sandbox user"), "{pids_note}");
    } else {
        assert_eq!(by(LimitKind::Pids).enforced_by, Some(RLIMIT));
        assert!(
            pids_note.contains("every process of the user"),
            "{pids_note}"
        );
    }
    for k in [
        LimitKind::CpuTime,
        LimitKind::FileSize,
        LimitKind::OpenFiles,
    ] {
        assert_eq!(by(k).enforced_by, Some(RLIMIT), "{k}");
    }
    for k in [LimitKind::WallTimeout, LimitKind::OutputBytes] {
        assert_eq!(by(k).enforced_by, Some(Mechanism::RUNBOX), "{k}");
    }
    assert!(!report.all_enforced());

    // What the report claims is what a command gets.
    let limits = proc_limits(&o, &id).await;
    assert_eq!(
        limit_line(&limits, "Max address space"),
        [(256u64 << 20).to_string(), (256u64 << 20).to_string()]
    );
    assert_eq!(limit_line(&limits, "Max cpu time"), ["7", "8"]);
    assert_eq!(
        limit_line(&limits, "Max file size"),
        [(3u64 << 20).to_string(), (3u64 << 20).to_string()]
    );
    assert_eq!(limit_line(&limits, "Max open files"), ["48", "48"]);
    let nproc = limit_line(&limits, "Max processes");
    if !nproc_binds {
        assert_ne!(nproc, ["64", "64"], "RLIMIT_NPROC is not set for root");
    } else {
        assert_eq!(nproc, ["64", "64"]);
    }
    o.cleanup(&id).await.unwrap();
    assert_clean(dir.path());
}

#[tokio::test]
async fn strict_refuses_what_the_fallback_cannot_enforce() {
    let dir = tempfile::tempdir().unwrap();
    let o = fallback(dir.path(), false);
    let id = o.create_workspace(&WorkspaceSpec::new()).await.unwrap();

    // cpus cannot be enforced without a cgroup, whoever we are.
    match o.apply_resource_limits(&id, &all_limits(true)).await {
        Err(Error::LimitNotEnforceable { limit, reason }) => {
            assert_eq!(limit, LimitKind::Cpus);
            assert!(reason.contains("cgroup"), "{reason}");
        }
        other => panic!("strict apply with cpus should fail: {other:?}"),
    }
    // A refused strict request applies nothing at all.
    let limits = proc_limits(&o, &id).await;
    assert_ne!(limit_line(&limits, "Max open files"), ["48", "48"]);
    assert_ne!(limit_line(&limits, "Max cpu time"), ["7", "8"]);

    // pids: refused for root (RLIMIT_NPROC does not bind root), enforced
    // by RLIMIT_NPROC otherwise.
    let pids = ResourceLimits::builder()
        .pids(32)
        .build()
        .unwrap()
        .with_strict(true);
    let res = o.apply_resource_limits(&id, &pids).await;
    if is_root() && !o.capabilities().isolation {
        assert!(
            matches!(&res, Err(Error::LimitNotEnforceable { limit, .. }) if *limit == LimitKind::Pids),
            "{res:?}"
        );
    } else {
        let report = res.expect("pids is enforceable by RLIMIT_NPROC");
        assert_eq!(
            report.get(LimitKind::Pids).unwrap().enforced_by,
            Some(RLIMIT)
        );
    }

    // Strict limits on the spec: no workspace is made, nothing is left.
    let cpus = ResourceLimits::builder()
        .cpus(1.0)
        .build()
        .unwrap()
        .with_strict(true);
    let res = o
        .create_workspace(&WorkspaceSpec::new().limits(cpus.clone()))
        .await;
    assert!(
        matches!(&res, Err(Error::LimitNotEnforceable { limit, .. }) if *limit == LimitKind::Cpus),
        "{res:?}"
    );
    o.cleanup(&id).await.unwrap();
    assert_clean(dir.path());

    // A strict backend treats every request as strict.
    let strict = fallback(dir.path(), true);
    let id = strict
        .create_workspace(&WorkspaceSpec::new())
        .await
        .unwrap();
    let lax = all_limits(false).with_strict(false);
    let res = strict.apply_resource_limits(&id, &lax).await;
    assert!(
        matches!(&res, Err(Error::LimitNotEnforceable { .. })),
        "{res:?}"
    );
    // What it can enforce it accepts.
    let ok = ResourceLimits::builder()
        .memory_bytes(128 << 20)
        .open_files(64)
        .wall_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let report = strict.apply_resource_limits(&id, &ok).await.unwrap();
    assert!(report.all_enforced(), "{report:?}");
    strict.cleanup(&id).await.unwrap();
    assert_clean(dir.path());
}

/// Under RLIMIT_AS a memory hog fails to allocate (there is no OOM kill to
/// report): the status is an ordinary failure, never MemoryLimitExceeded.
#[tokio::test]
async fn memory_rlimit_fails_allocations_without_claiming_oom() {
    let dir = tempfile::tempdir().unwrap();
    let o = fallback(dir.path(), false);
    let id = o.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let l = ResourceLimits::builder()
        .memory_bytes(64 << 20)
        .wall_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    o.apply_resource_limits(&id, &l).await.unwrap();
    let out = o
        .run_command(
            &id,
            &CommandSpec::new(["tail", "/dev/zero"]).build().unwrap(),
        )
        .await
        .unwrap();
    assert!(!out.status.success(), "{:?}", out.status);
    assert_ne!(out.status, ExitStatus::MemoryLimitExceeded);
    assert_ne!(out.status, ExitStatus::TimedOut, "RLIMIT_AS did not bind");
    o.cleanup(&id).await.unwrap();
    assert_clean(dir.path());
}

/// Unprivileged, the default configuration finds no writable cgroup and
/// says so (skipped as root, where cgroups are writable).
#[tokio::test]
async fn default_config_finds_no_writable_cgroups() {
    if is_root() {
        eprintln!("SKIP default_config_finds_no_writable_cgroups: running as root (cargo xtask nonroot runs it unprivileged)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = NativeOrchestrator::new(NativeConfig {
        workspace_root: dir.path().to_path_buf(),
        ..NativeConfig::default()
    })
    .unwrap();
    assert_eq!(o.cgroup_version(), None);
    let why = o.cgroup_unavailable_reason().unwrap_or("");
    assert!(!why.is_empty());
    let caps = o.capabilities();
    assert!(!caps.enforces(LimitKind::Cpus));
    assert!(!caps.oom_detection);
    assert!(caps.enforces(LimitKind::Memory), "RLIMIT_AS");
    assert!(
        caps.enforces(LimitKind::Pids),
        "RLIMIT_NPROC binds non-root"
    );
}

/// A command may leave directories its owner cannot enter (rootless, the
/// sandbox user is the caller): cleanup still removes everything.
#[tokio::test]
async fn cleanup_removes_what_a_command_locked() {
    let dir = tempfile::tempdir().unwrap();
    let o = NativeOrchestrator::new(NativeConfig {
        workspace_root: dir.path().to_path_buf(),
        ..NativeConfig::default()
    })
    .expect("native backend");
    let id = o.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let script = "mkdir -p d/e && touch d/e/f && chmod 000 d/e && chmod 500 d";
    let out = o
        .run_command(&id, &CommandSpec::shell(script).build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Exited(0), "{out:?}");
    o.cleanup(&id).await.expect("cleanup of a locked tree");
    assert!(o.residue(&id).await.unwrap().is_empty());
    assert_clean(dir.path());
}

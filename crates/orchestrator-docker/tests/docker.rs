//! Docker-specific integration tests against the local daemon (skipped
//! with a message when there is none, unless RUNBOX_REQUIRE_DOCKER=1).

mod common;

use common::docker_cli;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator_core::{
    CommandSpec, Error, ExitStatus, Orchestrator, ResourceLimits, SandboxPath, StartFailure,
    WorkspaceSpec,
};
use orchestrator_docker::{
    DockerConfig, DockerOrchestrator, DockerOrchestratorError, PullProgress, TEST_IMAGE,
};

/// The backend with the test image, or None (skip) without a daemon.
async fn backend() -> Option<DockerOrchestrator> {
    common::backend(DockerConfig::new().default_image(TEST_IMAGE)).await
}

fn sp(path: &str) -> SandboxPath {
    SandboxPath::new(path).unwrap()
}

async fn assert_unavailable_fast(host: String) {
    let config = DockerConfig::new()
        .host(host.clone())
        .default_image(TEST_IMAGE);
    let b = DockerOrchestrator::new(config).expect("backend");
    let t = Instant::now();
    let a = b.is_available().await;
    let took = t.elapsed();
    assert!(!a.is_available(), "{host}: {a:?}");
    assert!(took < Duration::from_secs(2), "{host}: took {took:?}");
    let reason = a.reason().unwrap_or_default().to_string();
    assert!(!reason.is_empty());
    // Operations fail quickly too, as Unavailable or a timeout.
    let t = Instant::now();
    let e = b.create_workspace(&WorkspaceSpec::new()).await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(12),
        "{host}: create took {:?}",
        t.elapsed()
    );
    assert!(
        matches!(e, Error::Unavailable { .. } | Error::Backend { .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn missing_dead_and_silent_sockets_are_unavailable_within_2s() {
    let dir = tempfile::tempdir().unwrap();
    // Missing socket.
    assert_unavailable_fast(format!("unix://{}/missing.sock", dir.path().display())).await;
    // Dead socket: the file exists, nobody listens.
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    assert_unavailable_fast(format!("unix://{}", dead.display())).await;
    // Silent socket: accepts connections, never answers.
    let silent = dir.path().join("silent.sock");
    let listener = tokio::net::UnixListener::bind(&silent).unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h2 = held.clone();
    let acceptor = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            h2.lock().unwrap().push(s);
        }
    });
    assert_unavailable_fast(format!("unix://{}", silent.display())).await;
    acceptor.abort();
    // A dead TCP daemon.
    assert_unavailable_fast("tcp://127.0.0.1:9".to_string()).await;
}

#[tokio::test]
async fn no_image_is_invalid_input_before_the_daemon() {
    // A daemon that never answers: reaching it would take the request
    // deadline and end as Unavailable, not InvalidInput at once.
    let dir = tempfile::tempdir().unwrap();
    let silent = dir.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let host = format!("unix://{}", silent.display());
    let b = DockerOrchestrator::new(DockerConfig::new().host(&host)).expect("backend");
    let t = Instant::now();
    let e = b.create_workspace(&WorkspaceSpec::new()).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    assert!(e.to_string().contains("no image"), "{e}");
    // A warm pool needs an image to fill it with.
    let e = DockerOrchestrator::new(DockerConfig::new().host(&host).warm_pool(1)).unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
}

#[tokio::test]
async fn bad_host_scheme_is_invalid_input() {
    let e = DockerOrchestrator::new(DockerConfig::new().host("gopher://x")).unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
}

#[tokio::test]
async fn missing_image_pull_fails_naming_the_image() {
    let Some(_) = backend().await else { return };
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let config = DockerConfig::new()
        .pull_timeout(Duration::from_secs(60))
        .pull_progress(PullProgress::new(move |e| {
            ev.lock().unwrap().push(e.clone())
        }));
    let b = DockerOrchestrator::new(config).unwrap();
    let image = "runbox-no-such-image-xyz:never";
    let t = Instant::now();
    let e = b
        .create_workspace(&WorkspaceSpec::new().image(image))
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(65));
    let msg = e.to_string();
    assert!(msg.contains(image), "{msg}");
    let src = e.backend_source().expect("backend error");
    assert!(
        matches!(
            src.downcast_ref::<DockerOrchestratorError>(),
            Some(DockerOrchestratorError::ImagePull { .. })
        ),
        "{src:?}"
    );
    // Nothing was created.
    assert_eq!(
        docker_cli(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.runbox.owner.pid={}", std::process::id()),
            "--filter",
            "ancestor=runbox-no-such-image-xyz:never"
        ])
        .trim(),
        ""
    );
}

#[tokio::test]
async fn labels_limits_at_create_and_permission_denied() {
    let Some(b) = backend().await else { return };
    let limits = ResourceLimits::builder()
        .memory_bytes(64 << 20)
        .pids(32)
        .cpus(0.5)
        .open_files(50)
        .build()
        .unwrap();
    let id = b
        .create_workspace(
            &WorkspaceSpec::new()
                .execution_id("exec-42")
                .label("team", "qa")
                .limits(limits),
        )
        .await
        .unwrap();
    let name = format!("runbox-{id}");
    let fmt = "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} {{.HostConfig.NetworkMode}} {{.HostConfig.Init}} {{index .Config.Labels \"io.runbox.execution\"}} {{index .Config.Labels \"team\"}} {{index .Config.Labels \"io.runbox.owner\"}} {{index .Config.Labels \"io.runbox.workspace\"}}";
    let got = docker_cli(&["inspect", "-f", fmt, &name]);
    assert_eq!(
        got.trim(),
        format!("67108864 67108864 36 500000000 none true exec-42 qa runbox {id}")
    );
    let out = b
        .run_command(&id, &CommandSpec::shell("ulimit -n").build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.stdout, b"50\n");
    // No network.
    let out = b
        .run_command(
            &id,
            &CommandSpec::shell("ls /sys/class/net").build().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_str().trim(), "lo");
    // A file that is not executable: permission denied, not "not found".
    b.run_command(
        &id,
        &CommandSpec::shell("echo 'echo hi' > script; chmod 644 script")
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let out = b
        .run_command(&id, &CommandSpec::new(["./script"]).build().unwrap())
        .await
        .unwrap();
    match out.status {
        ExitStatus::FailedToStart { reason, .. } => {
            assert_eq!(reason, StartFailure::PermissionDenied)
        }
        other => panic!("{other:?}"),
    }
    // A script exiting 127 by itself is an exit, not a start failure.
    let out = b
        .run_command(&id, &CommandSpec::shell("exit 127").build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Exited(127));
    b.cleanup(&id).await.unwrap();
    assert!(b.residue(&id).await.unwrap().is_empty());
}

#[tokio::test]
async fn hostile_symlink_chain_is_rejected_by_copy_from_and_copy_to() {
    let Some(b) = backend().await else { return };
    let id = b.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let out = b
        .run_command(
            &id,
            &CommandSpec::shell("mkdir -p t/d && ln -s . t/sub && ln -s ../sub/.. t/d/s && ln -s ../sub/../.. t/d/s2 && echo x > t/f").build().unwrap(),
        )
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let host = tempfile::tempdir().unwrap();
    let e = b
        .copy_from(&id, &sp("t"), &host.path().join("out"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PathEscapesSandbox { .. }), "{e:?}");
    assert_eq!(
        std::fs::read_dir(host.path()).unwrap().count(),
        0,
        "left files behind"
    );
    std::fs::write(host.path().join("f"), b"payload").unwrap();
    // t/d/s leads to the workspace root (inside the workspace, outside t):
    // fine for paths, but t/d/s2 leads one level further, out of it.
    b.copy_to(&id, &host.path().join("f"), &sp("t/d/s/planted"))
        .await
        .unwrap();
    let out = b
        .run_command(&id, &CommandSpec::shell("cat planted").build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.stdout, b"payload");
    let e = b
        .copy_to(&id, &host.path().join("f"), &sp("t/d/s2/planted"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PathEscapesSandbox { .. }), "{e:?}");
    let e = b
        .copy_from(&id, &sp("t/d/s2"), &host.path().join("out2"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PathEscapesSandbox { .. }), "{e:?}");
    let e = b
        .run_command(
            &id,
            &CommandSpec::new(["true"])
                .workdir("t/d/s2")
                .build()
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PathEscapesSandbox { .. }), "{e:?}");
    // Inside links are fine to go through.
    b.copy_to(&id, &host.path().join("f"), &sp("t/sub/via-link"))
        .await
        .unwrap();
    let out = b
        .run_command(&id, &CommandSpec::shell("cat t/via-link").build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.stdout, b"payload");
    b.cleanup(&id).await.unwrap();
}

#[tokio::test]
async fn dropped_run_command_kills_its_command() {
    let Some(b) = backend().await else { return };
    let id = b.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let cmd = CommandSpec::shell("echo $$ > pid; sleep 1000")
        .build()
        .unwrap();
    let fut = b.run_command(&id, &cmd);
    let _ = tokio::time::timeout(Duration::from_millis(1500), fut).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = b
            .run_command(
                &id,
                &CommandSpec::shell("p=$(cat pid); [ -d /proc/$p ] && echo alive || echo dead")
                    .build()
                    .unwrap(),
            )
            .await
            .unwrap();
        if out.stdout_str().trim() == "dead" {
            break;
        }
        assert!(Instant::now() < deadline, "the dropped command still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.cleanup(&id).await.unwrap();
}

#[tokio::test]
async fn reap_orphans_removes_dead_owners_only_and_drop_cleans_up() {
    let Some(b) = backend().await else { return };
    // A live workspace of this process must survive reaping.
    let live = b.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    // A container whose owner is gone: same labels, a pid that is not alive.
    let name = format!("runbox-orphan-test-{}", std::process::id());
    let _ = docker_cli(&["rm", "-f", &name]);
    let created = docker_cli(&[
        "create",
        "--name",
        &name,
        "--label",
        "io.runbox.owner=runbox",
        "--label",
        "io.runbox.workspace=dk-orphan-test",
        "--label",
        "io.runbox.owner.pid=4194303",
        "--label",
        "io.runbox.owner.start=1",
        TEST_IMAGE,
        "sleep",
        "1000",
    ]);
    assert!(!created.trim().is_empty());
    // A second backend in this process: its workspace must survive too.
    let other = backend().await.unwrap();
    let other_ws = other.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let reaped = b.reap_orphans().await.unwrap();
    assert!(
        reaped.iter().any(|r| r.contains("dk-orphan-test")),
        "{reaped:?}"
    );
    assert!(
        docker_cli(&["ps", "-aq", "--filter", &format!("name={name}")])
            .trim()
            .is_empty()
    );
    assert!(
        !b.residue(&live).await.unwrap().is_empty(),
        "live workspace was reaped"
    );
    assert!(
        !other.residue(&other_ws).await.unwrap().is_empty(),
        "other backend's workspace was reaped"
    );
    let out = b
        .run_command(&live, &CommandSpec::shell("echo ok").build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.stdout, b"ok\n");
    // Dropping a backend removes what it did not clean up.
    drop(other);
    assert!(
        b.residue(&other_ws).await.unwrap().is_empty(),
        "drop left the container"
    );
    b.cleanup(&live).await.unwrap();
    assert!(b.residue(&live).await.unwrap().is_empty());
}

/// Creates a stopped runbox container of workspace `ws` whose owner labels
/// name `owner`.
fn container_owned_by(name: &str, ws: &str, owner: &orchestrator_core::owner::Owner) {
    let _ = docker_cli(&["rm", "-f", name]);
    let mut args = vec![
        "create".to_string(),
        "--name".into(),
        name.into(),
        "--label".into(),
        "io.runbox.owner=runbox".into(),
        "--label".into(),
        format!("io.runbox.workspace={ws}"),
    ];
    for (k, v) in owner.labels("io.runbox.owner") {
        args.extend(["--label".to_string(), format!("{k}={v}")]);
    }
    args.extend([TEST_IMAGE.to_string(), "true".into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(!docker_cli(&refs).trim().is_empty());
}

#[tokio::test]
async fn cleanup_takes_a_foreign_workspace_only_from_a_gone_owner() {
    use orchestrator_core::owner::Owner;
    use orchestrator_core::WorkspaceId;

    let Some(b) = backend().await else { return };
    let me = std::process::id();
    // Another live process owns this one: cleanup leaves it (and is Ok).
    let mut owner = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let live = Owner::of_pid(owner.id()).unwrap();
    let (name, ws) = (
        format!("runbox-live-owner-{me}"),
        format!("dk-live-owner-{me}"),
    );
    container_owned_by(&name, &ws, &live);
    let id = WorkspaceId::new(&ws).unwrap();
    b.cleanup(&id).await.unwrap();
    assert_eq!(
        b.residue(&id).await.unwrap().len(),
        1,
        "a live owner's container went"
    );
    // Once that owner is a zombie it counts as gone.
    owner.kill().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !orchestrator_core::owner::ProcStat::read(owner.id()).is_some_and(|s| s.is_zombie()) {
        assert!(Instant::now() < deadline, "the owner never became a zombie");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.cleanup(&id).await.unwrap();
    assert!(
        b.residue(&id).await.unwrap().is_empty(),
        "a zombie owner's container stayed"
    );
    owner.wait().unwrap();
    // This process's own containers go too.
    container_owned_by(&name, &ws, &Owner::current());
    b.cleanup(&id).await.unwrap();
    assert!(
        b.residue(&id).await.unwrap().is_empty(),
        "this process's container stayed"
    );
}

#[tokio::test]
async fn containers_are_hardened_reported_and_leave_no_volume() {
    use orchestrator_core::{IsolationLevel, NetworkMode};
    use orchestrator_docker::{
        CAPABILITIES_DROPPED, DOCKER, NO_NEW_PRIVS, READ_ONLY_ROOT, SECCOMP,
    };

    let config = DockerConfig::new()
        .default_image(TEST_IMAGE)
        .tmp_limits(8 << 20, 64);
    let Some(b) = common::backend(config).await else {
        return;
    };
    let id = b.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let name = format!("runbox-{id}");
    let fmt = "{{.HostConfig.ReadonlyRootfs}} {{json .HostConfig.CapDrop}} {{json .HostConfig.SecurityOpt}} {{index .HostConfig.Tmpfs \"/tmp\"}}";
    assert_eq!(
        docker_cli(&["inspect", "-f", fmt, &name]).trim(),
        format!(
            "true [\"ALL\"] [\"no-new-privileges\"] rw,exec,nosuid,nodev,mode=1777,size={},nr_inodes=64",
            8 << 20
        )
    );
    let label = format!("label=io.runbox.workspace={id}");
    let volumes = docker_cli(&["volume", "ls", "-q", "--filter", &label]);
    assert_eq!(volumes.lines().count(), 1, "{volumes}");
    // The /tmp caps hold: 16 MiB do not fit in 8, nor 100 files in 64 inodes.
    let out = b
        .run_command(
            &id,
            &CommandSpec::shell(
                "dd if=/dev/zero of=/tmp/big bs=1048576 count=16 2>/dev/null && echo fit; rm -f /tmp/big; \
                 i=0; while [ $i -lt 100 ]; do touch /tmp/f$i 2>/dev/null || break; i=$((i + 1)); done; echo $i",
            )
            .build()
            .unwrap(),
        )
        .await
        .unwrap();
    let text = out.stdout_str();
    assert!(!text.contains("fit"), "16 MiB fit in /tmp: {out:?}");
    let files: u32 = text.trim().parse().unwrap_or(u32::MAX);
    assert!((50..100).contains(&files), "{out:?}");
    // The workspace is writable and copies still work with a read-only root.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), b"payload").unwrap();
    b.copy_to(&id, &host.path().join("in"), &sp("sub/in"))
        .await
        .unwrap();
    b.copy_from(&id, &sp("sub/in"), &host.path().join("out"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(host.path().join("out")).unwrap(), b"payload");

    let r = b.isolation(&id).await.unwrap();
    assert_eq!(r.level, IsolationLevel::Full, "{r:?}");
    assert_eq!(r.network, NetworkMode::None, "{r:?}");
    for m in [DOCKER, CAPABILITIES_DROPPED, NO_NEW_PRIVS, READ_ONLY_ROOT] {
        assert!(r.enforced_by.contains(&m), "{m} missing: {r:?}");
    }
    let daemon_seccomp =
        docker_cli(&["info", "-f", "{{json .SecurityOptions}}"]).contains("name=seccomp");
    assert_eq!(r.enforced_by.contains(&SECCOMP), daemon_seccomp, "{r:?}");

    b.cleanup(&id).await.unwrap();
    assert!(b.residue(&id).await.unwrap().is_empty());
    assert_eq!(
        docker_cli(&["volume", "ls", "-q", "--filter", &label]).trim(),
        ""
    );
    assert!(b.isolation(&id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn leaked_volumes_are_residue_and_gone_owners_volumes_are_reaped() {
    use orchestrator_core::owner::Owner;
    use orchestrator_core::WorkspaceId;

    let Some(b) = backend().await else { return };
    let me = std::process::id();
    let volume = |name: &str, ws: &str, owner: &[(String, String)]| {
        let _ = docker_cli(&["volume", "rm", "-f", name]);
        let mut args = vec![
            "volume".to_string(),
            "create".into(),
            "--label".into(),
            "io.runbox.owner=runbox".into(),
            "--label".into(),
            format!("io.runbox.workspace={ws}"),
        ];
        for (k, v) in owner {
            args.extend(["--label".to_string(), format!("{k}={v}")]);
        }
        args.push(name.to_string());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(docker_cli(&refs).trim(), name);
    };
    let dead = [
        ("io.runbox.owner.pid".to_string(), "4194303".to_string()),
        ("io.runbox.owner.start".to_string(), "1".to_string()),
    ];
    let (gone_vol, gone_ws) = (format!("runbox-vol-gone-{me}"), format!("dk-vol-gone-{me}"));
    volume(&gone_vol, &gone_ws, &dead);
    let gone_id = WorkspaceId::new(&gone_ws).unwrap();
    let residue = b.residue(&gone_id).await.unwrap();
    assert_eq!(residue, [format!("volume {gone_vol}")]);
    // A dangling volume of this process: not reaped (its container may be
    // in creation), but cleanup of its workspace removes it.
    let mine: Vec<(String, String)> = Owner::current()
        .labels("io.runbox.owner")
        .into_iter()
        .collect();
    let (my_vol, my_ws) = (format!("runbox-vol-mine-{me}"), format!("dk-vol-mine-{me}"));
    volume(&my_vol, &my_ws, &mine);
    let reaped = b.reap_orphans().await.unwrap();
    assert!(reaped.iter().any(|r| r.contains(&gone_vol)), "{reaped:?}");
    assert!(!reaped.iter().any(|r| r.contains(&my_vol)), "{reaped:?}");
    assert!(b.residue(&gone_id).await.unwrap().is_empty());
    let my_id = WorkspaceId::new(&my_ws).unwrap();
    assert_eq!(b.residue(&my_id).await.unwrap().len(), 1);
    b.cleanup(&my_id).await.unwrap();
    assert!(b.residue(&my_id).await.unwrap().is_empty());
}

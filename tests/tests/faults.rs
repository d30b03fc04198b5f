//! Fault scenarios, through the public API and the `runbox` CLI:
//!
//! - the docker daemon unreachable (DOCKER_HOST at a missing socket, a
//!   socket nobody listens on, a listener that accepts and never answers):
//!   docker is unavailable within 2 s, its calls fail with a typed error
//!   within seconds, and native keeps working in the same service;
//! - a workspace directory removed behind the native backend's back: the
//!   next call is NotFound (the directory is not silently recreated) and
//!   cleanup still succeeds without residue;
//! - a full disk (a 1 MiB tmpfs as the workspace root; root only, and
//!   required under CI=true): copy_to of 4 MiB fails with a typed ENOSPC
//!   error, leaves no partial or staging file, and the workspace still works;
//! - `runbox run` processes killed with SIGKILL mid-run (native with and
//!   without a cgroup, and docker when available — required with
//!   RUNBOX_REQUIRE_DOCKER=1): `runbox gc` leaves no process, directory,
//!   cgroup or container.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use execution_service::{
    CompleteOptions, ExecutionRequest, ExecutionService, ExecutionState, ExecutionStore,
    ListFilter, MemoryStore, SqliteStore, StartOptions,
};
use orchestrator_core::{
    CommandSpec, Error, Orchestrator, ResourceLimits, SandboxPath, WorkspaceSpec,
};
use orchestrator_docker::{DockerConfig, DockerOrchestrator, TEST_IMAGE};
use orchestrator_native::{NativeConfig, NativeOrchestrator, NativeOrchestratorError};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn native(root: &Path) -> NativeOrchestrator {
    NativeOrchestrator::new(NativeConfig {
        workspace_root: root.to_path_buf(),
        ..NativeConfig::default()
    })
    .expect("native backend")
}

fn sandbox(path: &str) -> SandboxPath {
    SandboxPath::new(path).unwrap()
}

/// The workspace root is empty.
fn assert_root_clean(root: &Path) {
    let mut left: Vec<String> = Vec::new();
    for e in std::fs::read_dir(root).unwrap().flatten() {
        left.push(e.file_name().to_string_lossy().into_owned());
    }
    assert!(left.is_empty(), "left in {}: {left:?}", root.display());
}

// ----- docker unreachable --------------------------------------------------

/// The unreachable daemons: (description, DOCKER_HOST).
fn unreachable_daemons(dir: &Path) -> Vec<(&'static str, String)> {
    let dead = dir.join("dead.sock");
    // Bound and closed: the file exists, connect() is refused.
    drop(UnixListener::bind(&dead).unwrap());
    let silent = dir.join("silent.sock");
    let listener = UnixListener::bind(&silent).unwrap();
    // Accepts every connection and never answers (nor closes).
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            match s {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
    });
    vec![
        (
            "missing socket",
            format!("unix://{}", dir.join("missing.sock").display()),
        ),
        ("dead socket", format!("unix://{}", dead.display())),
        ("silent socket", format!("unix://{}", silent.display())),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_unreachable_is_unavailable_fast_and_native_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let nat = Arc::new(native(root.path()));
    let request_deadline = DockerConfig::new().request_timeout;
    for (what, host) in unreachable_daemons(dir.path()) {
        // An image, since the backend has no default one: the daemon is
        // what is missing here.
        let config = DockerConfig::new().host(&host).default_image(TEST_IMAGE);
        let docker = Arc::new(DockerOrchestrator::new(config).unwrap());

        let t = Instant::now();
        let a = docker.is_available().await;
        let took = t.elapsed();
        assert!(!a.is_available(), "{what}: {a:?}");
        assert!(
            took < Duration::from_secs(2),
            "{what}: is_available took {took:?}"
        );
        assert!(a.reason().is_some(), "{what}: no reason given");
        eprintln!("{what}: is_available false in {took:?}");

        let t = Instant::now();
        let e = docker
            .create_workspace(&WorkspaceSpec::new())
            .await
            .expect_err("create_workspace on an unreachable daemon");
        let took = t.elapsed();
        // One request deadline (DockerConfig::request_timeout), not
        // bollard's 120 s.
        assert!(
            took < request_deadline + Duration::from_secs(2),
            "{what}: create took {took:?}"
        );
        assert!(
            matches!(e, Error::Unavailable { .. }),
            "{what}: expected Unavailable, got {e:?}"
        );
        eprintln!("{what}: create_workspace Unavailable in {took:?}");

        // The same service: a docker execution fails (typed, quickly, with
        // nothing left active) while a native one runs at the same time.
        let svc = ExecutionService::builder()
            .store(MemoryStore::new())
            .orchestrator(nat.clone())
            .docker_orchestrator(docker.clone())
            .build()
            .unwrap();
        let t = Instant::now();
        let (d, n) = tokio::join!(
            svc.execute(ExecutionRequest::new(["true"]).use_docker(true)),
            async {
                let t = Instant::now();
                let r = svc.execute(ExecutionRequest::shell("echo native-ok")).await;
                (r, t.elapsed())
            }
        );
        let e = d.expect_err("docker execution must fail");
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "{what}: {:?}",
            t.elapsed()
        );
        assert!(
            matches!(e.orchestrator_error(), Some(Error::Unavailable { .. })),
            "{what}: expected an Unavailable orchestrator error, got {e:?}"
        );
        let (n, native_took) = n;
        let n = n.expect("native execution");
        assert_eq!(n.output.stdout, b"native-ok\n");
        assert!(
            native_took < Duration::from_secs(2),
            "{what}: native waited for docker ({native_took:?})"
        );
        let active = svc
            .list_filtered(&ListFilter::states(&[
                ExecutionState::Starting,
                ExecutionState::Running,
            ]))
            .await
            .unwrap();
        assert!(active.is_empty(), "{what}: active records left: {active:?}");
        svc.wait_for_cleanups().await;
    }
    assert_root_clean(root.path());
}

/// The same through the CLI, with DOCKER_HOST in its environment.
#[test]
fn cli_with_unreachable_docker_host() {
    let Some(bin) = runbox_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    for (what, host) in unreachable_daemons(dir.path()) {
        let cli = |args: &[&str]| {
            let t = Instant::now();
            let out = Command::new(&bin)
                .arg("--state-dir")
                .arg(state.path())
                .args(args)
                .env("DOCKER_HOST", &host)
                .env("RUNBOX_WORKSPACE_ROOT", root.path())
                .stdin(Stdio::null())
                .output()
                .unwrap();
            (out, t.elapsed())
        };
        let (out, took) = cli(&["backends", "--json"]);
        assert!(
            took < Duration::from_secs(5),
            "{what}: backends took {took:?}"
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{what}: backends --json: {e}: {out:?}"));
        let text = v.to_string();
        assert!(text.contains("docker"), "{what}: {text}");

        let (out, took) = cli(&["run", "--backend", "docker", "--", "true"]);
        assert!(took < Duration::from_secs(8), "{what}: run took {took:?}");
        assert_eq!(out.status.code(), Some(125), "{what}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(err.contains("unavailable"), "{what}: {err}");

        let (out, _) = cli(&["run", "--", "echo", "still-native"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {out:?}");
        assert_eq!(out.stdout, b"still-native\n");
    }
    assert_root_clean(root.path());
}

// ----- workspace removed behind the backend's back ------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_removed_behind_the_backend_is_not_found_and_cleans_up() {
    let root = tempfile::tempdir().unwrap();
    let o = native(root.path());
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("f");
    std::fs::write(&file, b"data").unwrap();

    for with_cgroup in [false, true] {
        let id = o.create_workspace(&WorkspaceSpec::new()).await.unwrap();
        if with_cgroup && o.cgroup_version().is_some() {
            let l = ResourceLimits::builder().pids(32).build().unwrap();
            o.apply_resource_limits(&id, &l).await.unwrap();
        }
        let pid = o
            .start_background(&id, &CommandSpec::shell("sleep 300").build().unwrap())
            .await
            .unwrap();
        let dir = o.workspace_path(&id).expect("native has a path");
        std::fs::remove_dir_all(&dir).unwrap();

        let e = o
            .run_command(&id, &CommandSpec::new(["true"]).build().unwrap())
            .await
            .unwrap_err();
        assert!(e.is_not_found(), "run_command: {e:?}");
        let e = o.copy_to(&id, &file, &sandbox("f")).await.unwrap_err();
        assert!(e.is_not_found(), "copy_to: {e:?}");
        assert!(!dir.exists(), "copy_to recreated the removed workspace");
        let e = o
            .copy_from(&id, &sandbox("f"), &host.path().join("out"))
            .await
            .unwrap_err();
        assert!(e.is_not_found(), "copy_from: {e:?}");
        let e = o
            .start_background(&id, &CommandSpec::new(["true"]).build().unwrap())
            .await
            .unwrap_err();
        assert!(e.is_not_found(), "start_background: {e:?}");
        assert!(!dir.exists());

        // The background command (cwd deleted) is still ended by cleanup.
        assert!(o.process_status(&id, &pid).await.unwrap().status.is_none());
        o.cleanup(&id).await.expect("cleanup after removal");
        o.cleanup(&id).await.expect("cleanup again");
        let residue = o.residue(&id).await.unwrap();
        assert!(residue.is_empty(), "residue: {residue:?}");
        let e = o
            .run_command(&id, &CommandSpec::new(["true"]).build().unwrap())
            .await
            .unwrap_err();
        assert!(e.is_not_found(), "after cleanup: {e:?}");
    }
    assert_root_clean(root.path());

    // Through the service: start, remove the directory, complete.
    let svc = ExecutionService::builder()
        .store(MemoryStore::new())
        .orchestrator(Arc::new(o.clone()))
        .build()
        .unwrap();
    let id = svc
        .submit(ExecutionRequest::shell("sleep 300"))
        .await
        .unwrap();
    let ws = svc.start(&id, StartOptions::default()).await.unwrap();
    std::fs::remove_dir_all(o.workspace_path(&ws).unwrap()).unwrap();
    let rec = svc
        .complete(&id, CompleteOptions::default())
        .await
        .expect("complete after removal");
    assert!(rec.state.is_terminal(), "{rec:?}");
    assert!(o.residue(&ws).await.unwrap().is_empty());
    assert_root_clean(root.path());
}

// ----- full disk -----------------------------------------------------------

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_copy_fails_cleanly_and_workspace_still_works() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the full-disk scenario needs root to mount a tmpfs, and CI=true requires it"
        );
        eprintln!("SKIP full_disk_copy_fails_cleanly_and_workspace_still_works: not root (mounting a tmpfs needs root)");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0755", "runbox-full-disk"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs: {st}");
    let _umount = Mount(mnt.clone());

    {
        let o = native(&mnt);
        let id = o.create_workspace(&WorkspaceSpec::new()).await.unwrap();
        let dir = o.workspace_path(&id).unwrap();
        let host = tempfile::tempdir().unwrap();
        let big = host.path().join("big.bin");
        std::fs::write(&big, vec![0x5au8; 4 << 20]).unwrap();
        let tree = host.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("a"), b"small").unwrap();
        std::fs::write(tree.join("sub/big"), vec![1u8; 4 << 20]).unwrap();

        for (src, dest) in [
            (&big, "big.bin"),
            (&tree, "tree"),
            (&big, "nested/dir/big.bin"),
        ] {
            let e = o.copy_to(&id, src, &sandbox(dest)).await.unwrap_err();
            // Typed: the native error, an I/O error, ENOSPC.
            let native = e
                .backend_source()
                .and_then(|s| s.downcast_ref::<NativeOrchestratorError>())
                .unwrap_or_else(|| panic!("{dest}: not a native backend error: {e:?}"));
            match native {
                NativeOrchestratorError::Io { source, .. } => {
                    assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{dest}: {e}")
                }
                other => panic!("{dest}: expected an I/O error, got {other:?}"),
            }
            assert!(e.to_string().contains("No space left"), "{dest}: {e}");
            // Nothing half-written: no partial file, no staging file.
            let mut left = Vec::new();
            walk(&dir, &mut left);
            // (copy_to makes missing parent directories first; they stay.)
            left.retain(|p| *p != dir.join("nested") && *p != dir.join("nested/dir"));
            assert!(left.is_empty(), "{dest}: left behind {left:?}");
        }

        // The workspace still works once the disk has room.
        let small = host.path().join("small.txt");
        std::fs::write(&small, b"fits\n").unwrap();
        o.copy_to(&id, &small, &sandbox("small.txt")).await.unwrap();
        let out = o
            .run_command(
                &id,
                &CommandSpec::new(["cat", "small.txt"]).build().unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, b"fits\n");
        let out = o
            .run_command(
                &id,
                &CommandSpec::shell("echo more > more.txt && cat more.txt")
                    .build()
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, b"more\n");
        o.cleanup(&id).await.unwrap();
        assert!(o.residue(&id).await.unwrap().is_empty());
        assert_root_clean(&mnt);
    }
}

/// Every entry under `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        out.push(p.clone());
        if e.file_type().unwrap().is_dir() {
            walk(&p, out);
        }
    }
}

// ----- SIGKILL mid-run, then `runbox gc` -----------------------------------

/// The `runbox` binary: `$RUNBOX_BIN`, else built (`cargo build -p
/// runbox-cli --bin runbox`, a no-op when fresh) next to this test's
/// target directory. `None` (with a visible message) when it cannot be had
/// outside CI.
fn runbox_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RUNBOX_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/faults-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("runbox");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "runbox-cli", "--bin", "runbox"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
        cmd.arg("--release");
    }
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    if ok && bin.is_file() {
        return Some(bin);
    }
    let msg = format!("cannot build the runbox binary at {}", bin.display());
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    eprintln!("SKIP: {msg}; set RUNBOX_BIN");
    None
}

/// Kills what a failing test started (the CLI processes and the commands,
/// found by their unique marker).
struct Guard {
    children: Vec<std::process::Child>,
    marker: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in runbox_e2e::processes_matching(&self.marker) {
            // SAFETY: kill(2) of a process this test started (unique marker).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

fn docker_ready() -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = DockerConfig::from_env();
        let d = match DockerOrchestrator::new(config.clone()) {
            Ok(d) => d,
            Err(e) => return Err(format!("cannot create the docker backend: {e}")),
        };
        let a = d.is_available().await;
        if !a.is_available() {
            return Err(format!("docker unavailable: {:?}", a.reason()));
        }
        orchestrator_docker::ensure_test_image(&config, &Default::default())
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot build the test image: {e}"))
    })
    .map_or_else(
        |why| {
            assert!(
                !runbox_e2e::docker_required(),
                "RUNBOX_REQUIRE_DOCKER=1 but {why}"
            );
            eprintln!("SKIP (docker part of sigkill_cli_then_gc_leaves_nothing): {why}");
            false
        },
        |()| true,
    )
}

#[test]
fn sigkill_cli_then_gc_leaves_nothing() {
    let Some(bin) = runbox_bin() else { return };
    let with_docker = docker_ready();
    let state = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    let marker = format!("{}", 3_000_000 + std::process::id() % 1_000_000);
    let sleep = format!("sleep {marker}");

    // Native runs as host processes: they outlive the killed CLI, which is
    // what gc must recover from. (An isolated run ends with the CLI: its
    // sandbox init sees the control socket close; see the CLI's
    // gc_reaps_a_killed_run.)
    let mut runs: Vec<Vec<String>> = vec![
        // Native, no cgroup: a background child in the same group and one
        // in its own session.
        vec![
            "run".into(),
            "--isolation".into(),
            "none".into(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            format!("{sleep} & setsid {sleep} & {sleep}"),
        ],
        // Native with limits (a cgroup when the host has them).
        vec![
            "run".into(),
            "--isolation".into(),
            "none".into(),
            "--memory".into(),
            "64M".into(),
            "--pids".into(),
            "32".into(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            format!("{sleep} & {sleep}"),
        ],
    ];
    if with_docker {
        runs.push(vec![
            "run".into(),
            "--backend".into(),
            "docker".into(),
            "--image".into(),
            TEST_IMAGE.into(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            format!("{sleep} & {sleep}"),
        ]);
    }
    let mut guard = Guard {
        children: Vec::new(),
        marker: sleep.clone(),
    };
    for args in &runs {
        let child = Command::new(&bin)
            .arg("--state-dir")
            .arg(state.path())
            .args(args)
            .env("RUNBOX_WORKSPACE_ROOT", &root_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        guard.children.push(child);
    }

    // Ready: every execution recorded running with its sandbox, and every
    // command's processes up (two per run).
    let db = state.path().join("runbox.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let running = |rt: &tokio::runtime::Runtime| -> Vec<execution_service::ExecutionRecord> {
        if !db.exists() {
            return Vec::new();
        }
        let Ok(store) = SqliteStore::open(&db) else {
            return Vec::new();
        };
        rt.block_on(store.list(&ListFilter::states(&[ExecutionState::Running])))
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.sandbox_id.is_some())
            .collect()
    };
    let ready = runbox_e2e::wait_until(60, || {
        running(&rt).len() == runs.len()
            && runbox_e2e::processes_matching(&sleep).len() >= 2 * runs.len()
    });
    if !ready {
        let mut stderr = String::new();
        for c in &mut guard.children {
            let _ = c.kill();
            if let Some(mut e) = c.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
        }
        panic!(
            "not ready: {} running records, processes {:?}; CLI stderr: {stderr}",
            running(&rt).len(),
            runbox_e2e::processes_matching(&sleep)
        );
    }
    let records = running(&rt);
    let sandboxes: Vec<(String, bool)> = records
        .iter()
        .map(|r| (r.sandbox_id.clone().unwrap(), r.used_docker()))
        .collect();

    // The crash.
    for c in &mut guard.children {
        // SAFETY: kill(2) of our own child.
        assert_eq!(unsafe { libc::kill(c.id() as i32, libc::SIGKILL) }, 0);
        let st = c.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    }
    guard.children.clear();
    // What the crash left: the commands still run, the sandboxes exist.
    assert!(
        runbox_e2e::processes_matching(&sleep).len() >= 2 * runs.len(),
        "the commands should outlive the killed CLI"
    );
    for (sb, docker) in &sandboxes {
        if !docker {
            assert!(root_path.join(sb).is_dir(), "{sb} missing before gc");
        }
    }

    let gc = |json: bool| {
        let mut cmd = Command::new(&bin);
        cmd.arg("--state-dir")
            .arg(state.path())
            .arg("gc")
            .env("RUNBOX_WORKSPACE_ROOT", &root_path)
            .stdin(Stdio::null());
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = gc(true);
    assert_eq!(out.status.code(), Some(0), "gc: {out:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("gc --json: {e}: {out:?}"));
    let recovered = report["recovered"].as_array().cloned().unwrap_or_default();
    assert_eq!(recovered.len(), runs.len(), "{report}");
    assert!(
        report["errors"].as_array().is_some_and(|e| e.is_empty()),
        "{report}"
    );

    // Nothing left: processes, directories, metadata, cgroups, containers.
    assert!(
        runbox_e2e::wait_until(10, || runbox_e2e::processes_matching(&sleep).is_empty()),
        "processes left: {:?}",
        runbox_e2e::processes_matching(&sleep)
    );
    assert_root_clean(&root_path);
    for (sb, docker) in &sandboxes {
        if *docker {
            let out = Command::new("docker")
                .args(["ps", "-aq", "--filter"])
                .arg(format!("id={sb}"))
                .output()
                .unwrap();
            let out2 = Command::new("docker")
                .args(["ps", "-aq", "--filter"])
                .arg(format!("name={sb}"))
                .output()
                .unwrap();
            assert!(
                out.stdout.is_empty() && out2.stdout.is_empty(),
                "container {sb} left"
            );
        } else {
            let cgroups = runbox_e2e::cgroups_matching(sb);
            assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
        }
    }
    // Every record is ended.
    let store = SqliteStore::open(&db).unwrap();
    let all = rt.block_on(store.list(&ListFilter::all())).unwrap();
    assert_eq!(all.len(), runs.len());
    for r in &all {
        assert_eq!(r.state, ExecutionState::Failed, "{r:?}");
    }
    // A second gc finds nothing.
    let out = gc(true);
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["recovered"].as_array().is_some_and(|a| a.is_empty()),
        "{report}"
    );
    drop(guard);
}

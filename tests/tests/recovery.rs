//! Crash recovery: a child process (this test binary, re-invoked) starts
//! executions with a SQLite store and is killed with SIGKILL mid-run; then
//! `recover()` in this process must leave no workspace directory, cgroup,
//! process or labelled container behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use execution_service::{
    ExecutionId, ExecutionRequest, ExecutionService, ExecutionState, SqliteStore, StartOptions,
};
use orchestrator_core::{Orchestrator, WorkspaceId};
use orchestrator_docker::LABEL_EXECUTION as EXECUTION_LABEL;
use orchestrator_docker::{DockerConfig, DockerOrchestrator, TEST_IMAGE};
use orchestrator_native::{NativeConfig, NativeOrchestrator};

const CHILD_ENV: &str = "RUNBOX_E2E_CRASH_CHILD";

fn native(root: &Path) -> Arc<dyn Orchestrator> {
    Arc::new(
        NativeOrchestrator::new(NativeConfig {
            workspace_root: root.to_path_buf(),
            ..NativeConfig::default()
        })
        .unwrap(),
    )
}

struct ChildConfig {
    db: PathBuf,
    root: PathBuf,
    marker: String,
    docker: bool,
}

impl ChildConfig {
    fn to_env(&self) -> String {
        serde_json::json!({
            "db": self.db,
            "root": self.root,
            "marker": self.marker,
            "docker": self.docker,
        })
        .to_string()
    }
    fn from_env(s: &str) -> Self {
        let v: serde_json::Value = serde_json::from_str(s).unwrap();
        Self {
            db: PathBuf::from(v["db"].as_str().unwrap()),
            root: PathBuf::from(v["root"].as_str().unwrap()),
            marker: v["marker"].as_str().unwrap().to_string(),
            docker: v["docker"].as_bool().unwrap(),
        }
    }
}

/// Not a test on its own: the body of the child process the crash test
/// starts (it returns at once unless `RUNBOX_E2E_CRASH_CHILD` is set).
#[test]
fn crash_child_helper() {
    let Ok(cfg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cfg = ChildConfig::from_env(&cfg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut builder = ExecutionService::builder()
            .store(SqliteStore::open(&cfg.db).unwrap())
            .orchestrator(native(&cfg.root));
        if cfg.docker {
            builder = builder.docker_orchestrator(docker());
        }
        let svc = builder.build().unwrap();
        if cfg.docker {
            let id = svc
                .submit(ExecutionRequest::new(["sleep", &cfg.marker]).image(TEST_IMAGE))
                .await
                .unwrap();
            let ws = svc
                .start(&id, StartOptions { use_docker: true })
                .await
                .unwrap();
            println!("DOCKER {id} {ws}");
        }
        let script = format!("sleep {m} & sleep {m}; wait", m = cfg.marker);
        // Two started executions with background commands.
        for _ in 0..2 {
            let id = svc.submit(ExecutionRequest::shell(&script)).await.unwrap();
            let ws = svc.start(&id, StartOptions::default()).await.unwrap();
            println!("STARTED {id} {ws}");
        }
        // One `execute` in the middle of its foreground command.
        let s2 = svc.clone();
        let script2 = script.clone();
        tokio::spawn(async move { s2.execute(ExecutionRequest::shell(script2)).await });
        let (id, ws) = loop {
            let running = svc
                .list()
                .await
                .unwrap()
                .into_iter()
                .find(|r| r.state == ExecutionState::Running && r.process_id.is_none());
            if let Some(r) = running {
                break (r.id.clone(), r.sandbox_id.clone().unwrap());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Give the foreground command a moment to spawn.
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!("STARTED {id} {ws}");
        println!("READY");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
}

/// Kills the child (and, through the test's own recovery or the panic path,
/// what it started) if the test fails before the deliberate SIGKILL.
struct KillOnDrop(Option<std::process::Child>, String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
            // The test failed before its SIGKILL: do not leave the
            // commands running either.
            for pid in runbox_e2e::processes_matching(&self.1) {
                // SAFETY: kill(2) of a process we started (matched by its
                // unique marker).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

struct Crashed {
    started: Vec<(ExecutionId, WorkspaceId)>,
    docker: Vec<(ExecutionId, WorkspaceId)>,
}

fn docker() -> Arc<dyn Orchestrator> {
    Arc::new(DockerOrchestrator::new(DockerConfig::new().default_image(TEST_IMAGE)).unwrap())
}

/// Runs the child until READY, checks it made what it says, SIGKILLs it.
fn run_and_kill_child(cfg: &ChildConfig) -> Crashed {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, cfg.to_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut child = KillOnDrop(Some(child), format!("sleep {}", cfg.marker));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut started = Vec::new();
    let mut in_docker = Vec::new();
    loop {
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(e) => panic!("child did not get ready: {e}"),
        };
        // libtest may print "test crash_child_helper ... " on the same line.
        if line.trim_end().ends_with("READY") {
            break;
        }
        if let Some((_, rest)) = line.split_once("STARTED ") {
            let mut it = rest.split(' ');
            let id = ExecutionId::new(it.next().unwrap()).unwrap();
            let ws = WorkspaceId::new(it.next().unwrap()).unwrap();
            started.push((id, ws));
        } else if let Some((_, rest)) = line.split_once("DOCKER ") {
            let mut it = rest.split(' ');
            let id = ExecutionId::new(it.next().unwrap()).unwrap();
            let ws = WorkspaceId::new(it.next().unwrap()).unwrap();
            in_docker.push((id, ws));
        }
    }
    assert_eq!(in_docker.len(), usize::from(cfg.docker));
    for (id, _) in &in_docker {
        assert_eq!(
            runbox_e2e::containers_labelled(EXECUTION_LABEL, id.as_str()).len(),
            1
        );
    }
    assert_eq!(started.len(), 3);
    for (_, ws) in &started {
        assert!(cfg.root.join(ws.as_str()).is_dir(), "{ws} not created");
    }
    let needle = format!("sleep {}", cfg.marker);
    assert!(
        runbox_e2e::wait_until(10, || runbox_e2e::processes_matching(&needle).len() >= 6),
        "commands not running: {:?}",
        runbox_e2e::processes_matching(&needle)
    );
    let mut child = child.0.take().unwrap();
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    assert!(!status.success());
    Crashed {
        started,
        docker: in_docker,
    }
}

async fn crash_and_recover(docker: Option<Arc<dyn Orchestrator>>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ChildConfig {
        db: dir.path().join("runbox.db"),
        root: dir.path().join("workspaces"),
        marker: format!(
            "{}",
            700_000 + (std::process::id() % 10_000) * 10 + u32::from(docker.is_some())
        ),
        docker: docker.is_some(),
    };
    let crashed = tokio::task::spawn_blocking({
        let cfg = ChildConfig {
            db: cfg.db.clone(),
            root: cfg.root.clone(),
            marker: cfg.marker.clone(),
            docker: cfg.docker,
        };
        move || run_and_kill_child(&cfg)
    })
    .await
    .unwrap();
    let needle = format!("sleep {}", cfg.marker);
    // The crash really left things behind: every workspace directory (and
    // records that say running). An isolated sandbox's init ends when the
    // service's end of its socket closes, taking its commands with it, so
    // the commands themselves may already be gone: that they do not
    // survive is checked below.
    for (_, ws) in &crashed.started {
        assert!(
            cfg.root.join(ws.as_str()).is_dir(),
            "{ws}: nothing left to recover"
        );
    }

    let native = native(&cfg.root);
    let mut builder = ExecutionService::builder()
        .store(SqliteStore::open(&cfg.db).unwrap())
        .orchestrator(native.clone());
    if let Some(d) = &docker {
        builder = builder.docker_orchestrator(d.clone());
    }
    let svc = builder.build().unwrap();
    let report = svc.recover().await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let recovered: Vec<&ExecutionId> = report.recovered.iter().map(|r| &r.id).collect();
    for (id, ws) in &crashed.started {
        assert!(recovered.contains(&id), "{id} not recovered: {report:?}");
        let rec = svc.get(id).await.unwrap();
        assert_eq!(rec.state, ExecutionState::Failed);
        assert!(rec.error.as_deref().unwrap().contains("gone"));
        assert!(rec.sandbox_released);
        assert!(!cfg.root.join(ws.as_str()).exists(), "{ws} dir left");
        let residue = native.residue(ws).await.unwrap();
        assert!(residue.is_empty(), "{ws}: {residue:?}");
        assert!(
            runbox_e2e::cgroups_matching(ws.as_str()).is_empty(),
            "{ws}: cgroups left {:?}",
            runbox_e2e::cgroups_matching(ws.as_str())
        );
    }
    assert!(
        runbox_e2e::wait_until(5, || runbox_e2e::processes_matching(&needle).is_empty()),
        "processes left: {:?}",
        runbox_e2e::processes_matching(&needle)
    );
    // Nothing else in the workspace root but the backend's metadata.
    let left: Vec<_> = std::fs::read_dir(&cfg.root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    if let Some(d) = &docker {
        for (id, ws) in &crashed.docker {
            assert!(recovered.contains(&id), "{id} not recovered: {report:?}");
            let rec = svc.get(id).await.unwrap();
            assert_eq!(rec.state, ExecutionState::Failed);
            assert!(d.residue(ws).await.unwrap().is_empty());
            assert!(runbox_e2e::containers_labelled(EXECUTION_LABEL, id.as_str()).is_empty());
            assert!(runbox_e2e::containers_labelled("io.runbox.execution", id.as_str()).is_empty());
        }
    }
    // A second recovery has nothing to do.
    let again = svc.recover().await.unwrap();
    assert!(again.recovered.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_after_sigkill_leaves_nothing_native() {
    crash_and_recover(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_after_sigkill_leaves_nothing_native_and_docker() {
    let Some(d) =
        runbox_e2e::docker_backend("recover_after_sigkill_leaves_nothing_native_and_docker").await
    else {
        return;
    };
    crash_and_recover(Some(d)).await;
}

//! Whether this host can isolate: one real sandbox is built in a scratch
//! directory and a command run in it (user namespaces may be disabled,
//! restricted by a security module, or lack a piece the sandbox needs; only
//! trying tells). The answer is kept for the process, per set-up (the
//! workspace aside).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::client::Sandbox;
use super::protocol::{Setup, Spawn};
use crate::sync::lock;

/// Answers by set-up (encoded, its workspace cleared).
type Answers = HashMap<Vec<u8>, Result<(), String>>;

static ANSWERS: Mutex<Option<Answers>> = Mutex::new(None);

/// `Ok` when a sandbox like `setup` (its workspace replaced by a scratch
/// directory under `root`, owned by `owner`) can be built and run a
/// command here; else why not.
pub(crate) fn probe(root: &Path, setup: &Setup) -> Result<(), String> {
    let key = {
        let mut s = setup.clone();
        s.workspace = PathBuf::new();
        s.encode()
    };
    if let Some(a) = lock(&ANSWERS).as_ref().and_then(|m| m.get(&key)) {
        return a.clone();
    }
    let answer = try_once(root, setup);
    match &answer {
        Ok(()) => tracing::debug!("full isolation available"),
        Err(why) => tracing::info!(%why, "full isolation unavailable"),
    }
    lock(&ANSWERS)
        .get_or_insert_with(HashMap::new)
        .insert(key, answer.clone());
    answer
}

fn try_once(root: &Path, setup: &Setup) -> Result<(), String> {
    let dir = scratch_dir(root, setup).map_err(|e| format!("probe directory: {e}"))?;
    let mut setup = setup.clone();
    setup.workspace = dir.clone();
    setup.mounts.clear();
    // Its own thread and runtime: callers may be inside a runtime or not.
    let ran = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("probe runtime: {e}"))?;
        rt.block_on(run_true(&setup))
    })
    .join()
    .unwrap_or_else(|_| Err("the isolation probe panicked".into()));
    let _ = std::fs::remove_dir_all(&dir);
    ran
}

fn scratch_dir(root: &Path, setup: &Setup) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = root.join(format!(".probe-{}-{n}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o755).create(&dir)?;
    std::os::unix::fs::chown(&dir, Some(setup.host_uid), Some(setup.host_gid))?;
    Ok(dir)
}

async fn run_true(setup: &Setup) -> Result<(), String> {
    let sandbox = Sandbox::start(setup).await.map_err(|e| e.to_string())?;
    let null = || -> Result<OwnedFd, String> {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| e.to_string())
    };
    let spawn = Spawn {
        id: 0,
        argv: vec![b"true".to_vec()],
        env: Vec::new(),
        cwd: b"/workspace".to_vec(),
        limits: Vec::new(),
        stdin: false,
        cgroups: 0,
    };
    let result = match sandbox.spawn(spawn, vec![null()?, null()?]).await {
        Ok(Ok(mut cmd)) => match cmd.wait().await {
            Some(s) if s.success() => Ok(()),
            other => Err(format!(
                "a command in the probe sandbox ended with {other:?}"
            )),
        },
        Ok(Err(errno)) => Err(format!(
            "a command could not start in the probe sandbox: {}",
            std::io::Error::from_raw_os_error(errno)
        )),
        Err(e) => Err(e.to_string()),
    };
    sandbox.shutdown().await;
    result
}

//! Helpers for runbox's end-to-end tests (the tests themselves are in
//! `tests/tests/*.rs`): finding leftover processes and cgroups, and the
//! Docker skip-or-fail rule.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

/// Whether Docker tests must run (`RUNBOX_REQUIRE_DOCKER=1`): then an absent
/// daemon is a failure, not a skip.
pub fn docker_required() -> bool {
    std::env::var("RUNBOX_REQUIRE_DOCKER").is_ok_and(|v| v == "1")
}

/// Pids of processes whose command line contains `needle`.
pub fn processes_matching(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            // Zombies are gone for our purposes once reaped; count the rest.
            let state = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = state
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(false);
            if !zombie {
                out.push(pid);
            }
        }
    }
    out
}

/// Directories under /sys/fs/cgroup (any hierarchy, a few levels deep)
/// whose name contains `needle`.
pub fn cgroups_matching(needle: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, needle: &str, depth: usize, out: &mut Vec<PathBuf>) {
        if depth == 0 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if !ft.is_dir() || ft.is_symlink() {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().contains(needle) {
                out.push(p.clone());
            }
            walk(&p, needle, depth - 1, out);
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), needle, 5, &mut out);
    out
}

/// Waits (polling) until `f` holds, at most `secs` seconds.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The docker backend with the test image built, or `None` (after a visible
/// "SKIPPED" line) when no daemon answers. With `RUNBOX_REQUIRE_DOCKER=1` an
/// absent daemon panics instead: CI must not pass by skipping.
pub async fn docker_backend(
    test: &str,
) -> Option<std::sync::Arc<orchestrator_docker::DockerOrchestrator>> {
    use orchestrator_core::Orchestrator;
    use orchestrator_docker::{
        ensure_test_image, DockerConfig, DockerOrchestrator, TestImageOptions, TEST_IMAGE,
    };
    static IMAGE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let config = DockerConfig::new().default_image(TEST_IMAGE);
    let backend = match DockerOrchestrator::new(config.clone()) {
        Ok(b) => b,
        Err(e) => panic!("{test}: cannot create the docker backend: {e}"),
    };
    let avail = backend.is_available().await;
    if !avail.is_available() {
        if docker_required() {
            panic!(
                "{test}: docker unavailable and RUNBOX_REQUIRE_DOCKER=1: {:?}",
                avail.reason()
            );
        }
        eprintln!("SKIPPED {test}: docker unavailable: {:?}", avail.reason());
        return None;
    }
    IMAGE
        .get_or_init(|| async {
            if let Err(e) = ensure_test_image(&config, &TestImageOptions::default()).await {
                panic!("{test}: cannot build {TEST_IMAGE}: {e}");
            }
        })
        .await;
    Some(std::sync::Arc::new(backend))
}

/// Ids of containers (running or not) carrying `label=value`, via the docker
/// CLI (independent of the backend under test).
pub fn containers_labelled(label: &str, value: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}={value}")])
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(String::from)
            .collect(),
        Err(e) => panic!("docker CLI: {e}"),
    }
}

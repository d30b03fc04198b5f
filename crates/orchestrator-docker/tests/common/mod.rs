//! Helpers shared by the docker integration test targets.

use orchestrator_core::Orchestrator;
use orchestrator_docker::{ensure_test_image, DockerConfig, DockerOrchestrator, TestImageOptions};

static IMAGE_LOCK: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

/// A backend for `config` with the test image built, or None (after a
/// visible "SKIPPED" line) without a daemon; with RUNBOX_REQUIRE_DOCKER=1 a
/// missing daemon panics instead.
pub async fn backend(config: DockerConfig) -> Option<DockerOrchestrator> {
    let b = DockerOrchestrator::new(config.clone()).expect("backend");
    let avail = b.is_available().await;
    if !avail.is_available() {
        if std::env::var("RUNBOX_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!(
                "docker unavailable and RUNBOX_REQUIRE_DOCKER=1: {:?}",
                avail.reason()
            );
        }
        eprintln!("SKIPPED: docker unavailable: {:?}", avail.reason());
        return None;
    }
    let mut built = IMAGE_LOCK.lock().await;
    if !*built {
        ensure_test_image(&config, &TestImageOptions::default())
            .await
            .expect("test image");
        *built = true;
    }
    Some(b)
}

/// Stdout of the docker CLI (independent of the backend under test).
pub fn docker_cli(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker cli");
    String::from_utf8_lossy(&out.stdout).to_string()
}

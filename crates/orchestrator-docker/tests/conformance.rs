//! The shared conformance suite against the local Docker daemon, with the
//! busybox test image (built here when missing). Without a daemon every case
//! is ignored with the reason; with `RUNBOX_REQUIRE_DOCKER=1` they fail.

use std::sync::Arc;

use orchestrator_core::{Orchestrator, Result};
use orchestrator_docker::{
    ensure_test_image, DockerConfig, DockerOrchestrator, TestImageOptions, TEST_IMAGE,
};

static IMAGE_LOCK: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

async fn factory() -> Result<Arc<dyn Orchestrator>> {
    let config = DockerConfig::from_env().default_image(TEST_IMAGE);
    let backend = DockerOrchestrator::new(config.clone())?;
    if backend.is_available().await.is_available() {
        let mut built = IMAGE_LOCK.lock().await;
        if !*built {
            ensure_test_image(&config, &TestImageOptions::default()).await?;
            *built = true;
        }
    }
    Ok(Arc::new(backend))
}

orchestrator_core::conformance_tests!(factory, require_env = "RUNBOX_REQUIRE_DOCKER");

//! The shared conformance suite against the local Docker daemon with a
//! warm pool of 2 (filled before each case), so every case's workspaces
//! come from the pool where the spec allows it. Without a daemon every case
//! is ignored with the reason; with `RUNBOX_REQUIRE_DOCKER=1` they fail.

use std::sync::Arc;

use orchestrator_core::{Orchestrator, Result};
use orchestrator_docker::{
    ensure_test_image, DockerConfig, DockerOrchestrator, TestImageOptions, TEST_IMAGE,
};

static IMAGE_LOCK: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

async fn factory() -> Result<Arc<dyn Orchestrator>> {
    let config = DockerConfig::from_env()
        .default_image(TEST_IMAGE)
        .warm_pool(2);
    let backend = DockerOrchestrator::new(config.clone())?;
    if backend.is_available().await.is_available() {
        {
            let mut built = IMAGE_LOCK.lock().await;
            if !*built {
                ensure_test_image(&config, &TestImageOptions::default()).await?;
                *built = true;
            }
        }
        backend.warm_up().await?;
    }
    Ok(Arc::new(backend))
}

orchestrator_core::conformance_tests!(factory, require_env = "RUNBOX_REQUIRE_DOCKER");

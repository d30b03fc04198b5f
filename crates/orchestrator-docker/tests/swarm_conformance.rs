//! The shared conformance suite against the `swarm` backend, on the cluster
//! `cargo xtask swarm-up` brings up (its managers come from
//! `RUNBOX_SWARM_MANAGERS` or the cluster file; the nodes hold the busybox
//! test image). Without a swarm every case is ignored with the reason; with
//! `RUNBOX_REQUIRE_SWARM=1` (as `cargo xtask swarm-test` runs it) they fail.

use std::sync::Arc;

use orchestrator_core::{Orchestrator, Result};
use orchestrator_docker::{SwarmConfig, SwarmOrchestrator, TEST_IMAGE};

async fn factory() -> Result<Arc<dyn Orchestrator>> {
    let mut config = SwarmConfig::from_env();
    if config.docker.default_image.is_none() {
        config.docker.default_image = Some(TEST_IMAGE.to_string());
    }
    Ok(Arc::new(SwarmOrchestrator::new(config)?))
}

orchestrator_core::conformance_tests!(factory, require_env = "RUNBOX_REQUIRE_SWARM");

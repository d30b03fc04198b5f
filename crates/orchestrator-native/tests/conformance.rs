//! The shared conformance suite against the native backend.
//!
//! As root on a host with writable cgroups every case runs; elsewhere cases
//! needing a capability the host lacks are reported as ignored.

use std::sync::Arc;

use orchestrator_core::{Orchestrator, Result};
use orchestrator_native::{NativeConfig, NativeOrchestrator};

async fn factory() -> Result<Arc<dyn Orchestrator>> {
    let mut config = NativeConfig::default();
    if std::env::var("RUNBOX_NATIVE_NO_CGROUPS").as_deref() == Ok("1") {
        config.use_cgroups = false;
    }
    Ok(Arc::new(NativeOrchestrator::new(config)?))
}

orchestrator_core::conformance_tests!(factory);

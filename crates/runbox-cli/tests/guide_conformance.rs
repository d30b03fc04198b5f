//! The shared conformance suite against the example backend of
//! docs/writing-a-backend.md: the guide's backend really passes the suite it
//! tells teams to run (cases it does not claim are reported as ignored).

// In a backend crate this is `hostdir_backend`, the crate itself.
#[path = "guide/hostdir.rs"]
mod hostdir_backend;

use std::sync::Arc;

use orchestrator_core::{Orchestrator, Result};

async fn factory() -> Result<Arc<dyn Orchestrator>> {
    let root = std::env::temp_dir().join("runbox-hostdir-conformance");
    Ok(Arc::new(hostdir_backend::HostdirOrchestrator::new(root)?))
}

orchestrator_core::conformance_tests!(factory);

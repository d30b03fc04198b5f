//! The shared conformance suite against FakeOrchestrator in its shell mode:
//! the fake must pass every case its capabilities claim, like any backend.

use std::sync::Arc;

use orchestrator_core::testing::FakeOrchestrator;
use orchestrator_core::{Orchestrator, Result};

async fn factory() -> Result<Arc<dyn Orchestrator>> {
    Ok(Arc::new(FakeOrchestrator::named("fake").with_shell()))
}

orchestrator_core::conformance_tests!(factory);

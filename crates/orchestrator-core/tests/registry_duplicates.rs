//! Two backends claiming one name is a build mistake: a clear panic.

use std::sync::Arc;

use orchestrator_core::testing::FakeOrchestrator;
use orchestrator_core::{registry, BackendOptions, Orchestrator, Result};

fn make(_: &BackendOptions) -> Result<Arc<dyn Orchestrator>> {
    Ok(Arc::new(FakeOrchestrator::named("twin")))
}

orchestrator_core::register_backend!("twin", "the first twin", make);
orchestrator_core::register_backend!("twin", "the second twin", make);

#[test]
#[should_panic(expected = "two backends registered the name \"twin\"")]
fn duplicate_names_panic_clearly() {
    let _ = registry::backends();
}

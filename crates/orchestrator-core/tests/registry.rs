//! The registry: sorted iteration, lookup, typed error for unknown names.

use std::sync::Arc;

use orchestrator_core::testing::FakeOrchestrator;
use orchestrator_core::{registry, BackendOptions, Error, Orchestrator, Result};

fn make_b(_: &BackendOptions) -> Result<Arc<dyn Orchestrator>> {
    Ok(Arc::new(FakeOrchestrator::named("b-backend")))
}
fn make_a(_: &BackendOptions) -> Result<Arc<dyn Orchestrator>> {
    Ok(Arc::new(FakeOrchestrator::named("a-backend")))
}

orchestrator_core::register_backend!("b-backend", "second by name", make_b);
orchestrator_core::register_backend!("a-backend", "first by name", make_a);

#[test]
fn iteration_is_sorted_and_complete() {
    assert_eq!(registry::names(), vec!["a-backend", "b-backend"]);
    let regs = registry::backends();
    assert_eq!(regs[0].description, "first by name");
}

#[test]
fn create_by_name_and_unknown_name() {
    let b = registry::create("b-backend").unwrap();
    assert_eq!(b.name(), "b-backend");
    match registry::create("nope") {
        Err(Error::NotFound { what, id }) => {
            assert_eq!(what, "backend");
            assert!(id.contains("a-backend, b-backend"), "{id}");
        }
        other => panic!("{other:?}"),
    }
}

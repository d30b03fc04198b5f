//! Unit tests of the service against the core's FakeOrchestrator: both code
//! paths, the missing-docker case, a backend error on each operation, strict
//! limits, dropped futures, recovery, and a proptest state machine.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::owner::Owner;
use orchestrator_core::testing::{
    full_capabilities, ok_output, Call, FakeError, FakeOrchestrator, Op,
};
use orchestrator_core::{
    BackendOptions, Capabilities, Error as CoreError, ExecOutput, ExitStatus, Orchestrator,
    OutputSink, ResourceLimits, Stream, WorkspaceSpec,
};

use super::{CompleteOptions, ExecutionService, StartOptions, DOCKER_BACKEND};
use crate::error::ServiceError;
use crate::record::{
    BackendPreference, ExecutionId, ExecutionRecord, ExecutionRequest, ExecutionState,
};
use crate::store::MemoryStore;

mod backends;
mod construction;
mod execute;
mod failures;
mod guard;
mod isolation;
mod lifecycle;
mod named;
mod recovery;
mod state_machine;

struct Fixture {
    svc: ExecutionService,
    native: Arc<FakeOrchestrator>,
    docker: Arc<FakeOrchestrator>,
}

fn fixture() -> Fixture {
    fixture_with(FakeOrchestrator::named("native"))
}

fn fixture_with(native: FakeOrchestrator) -> Fixture {
    let native = Arc::new(native);
    let docker = Arc::new(FakeOrchestrator::named("docker"));
    let svc = ExecutionService::builder()
        .orchestrator(native.clone())
        .docker_orchestrator(docker.clone())
        .build()
        .unwrap();
    Fixture {
        svc,
        native,
        docker,
    }
}

fn native_only() -> (ExecutionService, Arc<FakeOrchestrator>) {
    let native = Arc::new(FakeOrchestrator::named("native"));
    let svc = ExecutionService::builder()
        .orchestrator(native.clone())
        .build()
        .unwrap();
    (svc, native)
}

fn limits() -> ResourceLimits {
    ResourceLimits::builder()
        .memory_bytes(64 << 20)
        .wall_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn dead_owner() -> Owner {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let owner = Owner::of_pid(child.id()).expect("an unreaped child has a /proc entry");
    child.wait().unwrap();
    owner
}

fn assert_backend_error(err: &ServiceError, op: Op, backend: &str) {
    match err {
        ServiceError::Orchestrator {
            operation,
            backend: b,
            ..
        } => {
            assert_eq!(*operation, op.name());
            assert_eq!(b, backend);
        }
        other => panic!("expected a backend error in {op}, got {other:?}"),
    }
    let fake = err
        .backend_source()
        .and_then(|s| s.downcast_ref::<FakeError>())
        .unwrap_or_else(|| panic!("{err}: backend error not reachable"));
    assert_eq!(fake.op, op);
    // Reachable through the std source chain too.
    let mut src = std::error::Error::source(err);
    let mut found = false;
    while let Some(s) = src {
        found |= s.downcast_ref::<FakeError>().is_some();
        src = s.source();
    }
    assert!(found);
}

/// The name asked for and the names available, of an unknown-backend error.
fn unknown_backend(err: &ServiceError) -> (&str, &[String]) {
    match err {
        ServiceError::UnknownBackend { name, available } => (name, available),
        other => panic!("expected an unknown backend, got {other:?}"),
    }
}

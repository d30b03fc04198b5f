//! # execution-service
//!
//! Runs executions in sandboxes through runbox's backends, native first and
//! docker optional, as in the seed's "after" architecture:
//!
//! - Backends live in a map by name with one default.
//!   [`ExecutionService::new`] gives the native orchestrator and no docker;
//!   [`ExecutionService::builder`] injects `orchestrator` (the default) and
//!   `docker_orchestrator` (the backend named [`DOCKER_BACKEND`]), as in the
//!   seed, or any backend under any name, injected or by registered name.
//! - [`ExecutionService::start`] / [`ExecutionService::complete`] provision
//!   and tear down a recorded execution's sandbox (`use_docker` or the
//!   request picks the backend; the record remembers its name, so `complete`
//!   cannot pick the wrong one); [`ExecutionService::execute`] does
//!   everything in one call and never leaks its sandbox, even when its
//!   future is dropped.
//! - Records ([`ExecutionRecord`], a validated state machine) live in an
//!   [`ExecutionStore`]: [`MemoryStore`] or [`SqliteStore`].
//! - [`ExecutionService::recover`] reaps what a crashed process left behind.
//!
//! The [`guide`] module is docs/service.md: the compatibility matrix and
//! each injection pattern, compiled as doctests.
#![deny(missing_docs)]

// The modules are private: every public item has one path, at the crate
// root.
mod error;
mod record;
mod service;
mod store;

// Every backend this crate enables must be referenced, or the linker drops
// the crate and its registration with it.
use orchestrator_docker as _;
use orchestrator_native as _;

#[doc = include_str!("../../../docs/service.md")]
pub mod guide {}

pub use error::ServiceError;
pub use record::{
    BackendPreference, ExecutionId, ExecutionRecord, ExecutionRequest, ExecutionState,
    FileTransfer, InvalidTransition, IsolationSummary, LimitSummary, ResultSummary,
};
pub use service::{
    create_backend, CompleteOptions, ExecutionResult, ExecutionService, ExecutionServiceBuilder,
    RecoveredExecution, RecoveryReport, StartOptions, DEFAULT_BACKEND, DOCKER_BACKEND,
};
pub use store::{ExecutionStore, ListFilter, MemoryStore, SqliteStore, StoreError};

#[cfg(test)]
mod registry_tests {
    #[test]
    fn registered_backends_are_exactly_the_enabled_ones() {
        assert_eq!(
            orchestrator_core::registry::names(),
            ["docker", "native", "swarm"]
        );
    }
}

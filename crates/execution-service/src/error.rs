//! [`ServiceError`]: every way a service call can fail.
//!
//! Backend failures keep the core [`orchestrator_core::Error`] as their
//! source, and that keeps the backend's own error
//! (`NativeOrchestratorError`, `DockerOrchestratorError`, ...) as its source:
//! callers handle all backends uniformly and can still downcast.

use orchestrator_core::Error as CoreError;

use crate::record::{ExecutionId, ExecutionState};
use crate::store::StoreError;

/// Errors of the execution service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A backend operation failed.
    #[error("{operation} on backend {backend} failed: {source}")]
    Orchestrator {
        /// The trait method that failed ("create_workspace", ...).
        operation: &'static str,
        /// The backend's name.
        backend: String,
        /// The core error (whose source is the backend's own error).
        #[source]
        source: CoreError,
    },
    /// The request is invalid (bad limits, command, sandbox path...).
    #[error("invalid execution request: {0}")]
    InvalidRequest(#[source] CoreError),
    /// A request, record or builder names a backend that is not there:
    /// not configured in the service (docker included, when `use_docker` or
    /// a docker preference asks for it without a docker orchestrator), or
    /// not registered.
    #[error("unknown backend {name:?} (available: {}); add one with ExecutionService::builder().backend_named(..), or docker_orchestrator(..) for docker", available.join(", "))]
    UnknownBackend {
        /// The name asked for.
        name: String,
        /// The names that would have worked.
        available: Vec<String>,
    },
    /// No execution with this id.
    #[error("unknown execution {0}")]
    UnknownExecution(ExecutionId),
    /// The execution is in a state that does not allow the operation.
    #[error("execution {id} is {state}: cannot {operation}")]
    InvalidState {
        /// The execution.
        id: ExecutionId,
        /// Its current state.
        state: ExecutionState,
        /// What was attempted ("start", "complete", ...).
        operation: &'static str,
    },
    /// `use_docker` contradicts the backend recorded for the execution: the
    /// service refuses rather than tear down on the wrong backend.
    #[error("execution {id} runs on backend {recorded} (use_docker={recorded_docker}) but use_docker={requested_docker} was given")]
    BackendMismatch {
        /// The execution.
        id: ExecutionId,
        /// The backend recorded as holding the sandbox.
        recorded: String,
        /// Whether the record says docker.
        recorded_docker: bool,
        /// What the caller said.
        requested_docker: bool,
    },
    /// The execution was cancelled (by `cancel`, or a dropped future) while
    /// this call was working on it; its sandbox is torn down.
    #[error("execution {0} was cancelled")]
    Cancelled(ExecutionId),
    /// The record store failed.
    #[error("execution store: {0}")]
    Store(#[from] StoreError),
}

impl ServiceError {
    pub(crate) fn backend(operation: &'static str, backend: &str, source: CoreError) -> Self {
        ServiceError::Orchestrator {
            operation,
            backend: backend.to_string(),
            source,
        }
    }

    /// The core error, for backend failures and invalid requests.
    pub fn orchestrator_error(&self) -> Option<&CoreError> {
        match self {
            ServiceError::Orchestrator { source, .. } | ServiceError::InvalidRequest(source) => {
                Some(source)
            }
            _ => None,
        }
    }

    /// The backend's own error (downcast it to `NativeOrchestratorError`,
    /// `DockerOrchestratorError`, ...), when the backend reported one.
    pub fn backend_source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.orchestrator_error()
            .and_then(CoreError::backend_source)
    }

    /// A short, stable name of the error kind (for logs, JSON and exit
    /// codes).
    pub fn kind(&self) -> &'static str {
        match self {
            ServiceError::Orchestrator { source, .. } => source.kind(),
            ServiceError::InvalidRequest(_) => "invalid_request",
            ServiceError::UnknownBackend { .. } => "unknown_backend",
            ServiceError::UnknownExecution(_) => "unknown_execution",
            ServiceError::InvalidState { .. } => "invalid_state",
            ServiceError::BackendMismatch { .. } => "backend_mismatch",
            ServiceError::Cancelled(_) => "cancelled",
            ServiceError::Store(_) => "store",
        }
    }
}

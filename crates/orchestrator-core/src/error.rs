//! The one error type every backend converts into.
//!
//! Callers match on [`Error`] whatever backend they use; a backend's own error
//! type (for example `NativeOrchestratorError`) stays reachable through
//! [`std::error::Error::source`] or [`Error::backend_source`] and can be
//! downcast.

use std::path::PathBuf;

use crate::limits::LimitKind;

/// A boxed error from a backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used throughout runbox.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the orchestrator contract.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The workspace, process or backend does not exist (or no longer does).
    #[error("{what} not found: {id}")]
    NotFound {
        /// What kind of thing was looked up ("workspace", "process", "backend").
        what: &'static str,
        /// The identifier that was not found.
        id: String,
    },
    /// The backend cannot serve requests right now (daemon down, ...).
    #[error("backend {backend} unavailable: {reason}")]
    Unavailable {
        /// Backend name.
        backend: String,
        /// Why it is unavailable.
        reason: String,
    },
    /// The caller passed something invalid (a limit, an argv, an id).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A sandbox path would lead outside the sandbox.
    #[error("path escapes the sandbox: {path}: {reason}")]
    PathEscapesSandbox {
        /// The offending path as given.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// A limit was requested in strict mode that the backend cannot enforce.
    #[error("limit {limit} cannot be enforced: {reason}")]
    LimitNotEnforceable {
        /// The limit.
        limit: LimitKind,
        /// Why it cannot be enforced.
        reason: String,
    },
    /// The backend does not support this operation at all.
    #[error("backend {backend} does not support {operation}")]
    Unsupported {
        /// Backend name.
        backend: String,
        /// The unsupported operation.
        operation: String,
    },
    /// A backend-specific failure; `source` is the backend's own error type.
    #[error("{backend} backend error: {source}")]
    Backend {
        /// Backend name.
        backend: String,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Shorthand for [`Error::NotFound`] of a workspace.
    pub fn workspace_not_found(id: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what: "workspace",
            id: id.to_string(),
        }
    }

    /// Shorthand for [`Error::NotFound`] of a process.
    pub fn process_not_found(id: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what: "process",
            id: id.to_string(),
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    /// Wraps a backend's own error.
    pub fn backend(
        backend: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Backend {
            backend: backend.into(),
            source: Box::new(source),
        }
    }

    /// Is this a [`Error::NotFound`]?
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// The backend's own error, when this is [`Error::Backend`]; downcast it
    /// to the backend's error type.
    pub fn backend_source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            Error::Backend { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }

    /// A short, stable name of the error kind (for logs and JSON).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Unavailable { .. } => "unavailable",
            Error::InvalidInput(_) => "invalid_input",
            Error::PathEscapesSandbox { .. } => "path_escapes_sandbox",
            Error::LimitNotEnforceable { .. } => "limit_not_enforceable",
            Error::Unsupported { .. } => "unsupported",
            Error::Backend { .. } => "backend",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("disk on fire")]
    struct Mine;

    #[test]
    fn backend_source_downcasts() {
        let e = Error::backend("x", Mine);
        assert_eq!(e.kind(), "backend");
        assert!(e.backend_source().unwrap().downcast_ref::<Mine>().is_some());
        let via_std = std::error::Error::source(&e).unwrap();
        assert!(via_std.downcast_ref::<Mine>().is_some());
        assert_eq!(e.to_string(), "x backend error: disk on fire");
    }

    #[test]
    fn not_found_helpers() {
        assert!(Error::workspace_not_found("w1").is_not_found());
        assert!(!Error::invalid("x").is_not_found());
    }
}

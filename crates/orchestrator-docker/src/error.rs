//! [`DockerOrchestratorError`], the backend's own error, and its conversion
//! into [`orchestrator_core::Error`].

use std::time::Duration;

use orchestrator_core::Error;

/// Errors of the Docker backend. Converted into [`orchestrator_core::Error`]
/// at the trait boundary: unreachable daemons become
/// [`Error::Unavailable`], unsafe archives [`Error::PathEscapesSandbox`],
/// configuration mistakes [`Error::InvalidInput`], everything else
/// [`Error::Backend`] (downcast its source to this type).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerOrchestratorError {
    /// The configuration cannot be used (bad `DOCKER_HOST` scheme, ...).
    #[error("invalid docker configuration: {0}")]
    Config(String),
    /// The daemon cannot be reached.
    #[error("cannot reach the docker daemon at {host}: {reason}")]
    Unreachable {
        /// The daemon address.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// A daemon request did not answer within its deadline.
    #[error("docker request `{operation}` got no answer within {timeout:?}")]
    Timeout {
        /// The request.
        operation: &'static str,
        /// Its deadline.
        timeout: Duration,
    },
    /// The daemon answered a request with an error.
    #[error("docker request `{operation}` failed: {source}")]
    Api {
        /// The request.
        operation: &'static str,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// An image is missing locally and could not be pulled.
    #[error("image {image} is not available locally and pulling it failed: {reason}")]
    ImagePull {
        /// The image.
        image: String,
        /// Why the pull failed.
        reason: String,
    },
    /// Building an image failed.
    #[error("building image {image} failed: {reason}")]
    ImageBuild {
        /// The image.
        image: String,
        /// Why.
        reason: String,
    },
    /// An archive entry would land outside its destination.
    #[error("unsafe archive entry {entry:?}: {reason}")]
    UnsafeArchive {
        /// The entry's name.
        entry: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A malformed archive.
    #[error("archive error: {0}")]
    Archive(String),
    /// A host filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The warm pool could not be filled.
    #[error("cannot fill the docker warm pool: {reason}")]
    WarmPool {
        /// The failed refill's error.
        reason: String,
    },
    /// The swarm node that runs a workspace is lost (down, cut off, or
    /// its daemon gone): the workspace cannot be reached any more.
    #[error("swarm node {node} is lost: {reason}")]
    NodeLost {
        /// The node's hostname (or id).
        node: String,
        /// What the swarm or its daemon said.
        reason: String,
    },
    /// A swarm task runs on a node whose daemon endpoint is not known.
    #[error("no daemon endpoint is known for swarm node {node}: {hint}")]
    NoEndpoint {
        /// The node's hostname and id.
        node: String,
        /// How to configure one.
        hint: String,
    },
    /// The swarm managers cannot serve a request (no leader, none reachable,
    /// this daemon not a manager), after retries.
    #[error("the swarm managers cannot serve `{operation}`: {reason}")]
    NoManager {
        /// The request.
        operation: &'static str,
        /// The last manager's answer.
        reason: String,
    },
    /// A helper command runbox runs inside the container failed.
    #[error("runbox helper in container {container} failed: {reason}")]
    Helper {
        /// The container.
        container: String,
        /// What happened.
        reason: String,
    },
}

impl DockerOrchestratorError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The HTTP status the daemon answered with, for API errors.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Api {
                source: bollard::errors::Error::DockerResponseServerError { status_code, .. },
                ..
            } => Some(*status_code),
            _ => None,
        }
    }
}

/// Is this bollard error a failure to talk to the daemon at all?
pub(crate) fn is_connection_error(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as B;
    matches!(
        e,
        B::IOError { .. }
            | B::HyperLegacyError { .. }
            | B::SocketNotFoundError(_)
            | B::RequestTimeoutError
            | B::HttpClientError { .. }
    )
}

impl From<DockerOrchestratorError> for Error {
    fn from(e: DockerOrchestratorError) -> Self {
        match e {
            DockerOrchestratorError::Config(msg) => Error::InvalidInput(msg),
            DockerOrchestratorError::Unreachable { .. } => Error::Unavailable {
                backend: crate::BACKEND_NAME.into(),
                reason: e.to_string(),
            },
            DockerOrchestratorError::NodeLost { .. }
            | DockerOrchestratorError::NoEndpoint { .. }
            | DockerOrchestratorError::NoManager { .. } => Error::Unavailable {
                backend: crate::swarm::BACKEND_NAME.into(),
                reason: e.to_string(),
            },
            DockerOrchestratorError::UnsafeArchive { entry, reason } => Error::PathEscapesSandbox {
                path: entry.into(),
                reason,
            },
            other => Error::backend(crate::BACKEND_NAME, other),
        }
    }
}

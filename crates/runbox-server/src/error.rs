//! [`ServerError`]: why `runbox serve` could not start or serve.

/// A failure to start or run the server (exit code 125).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No tokens and a non-loopback address.
    #[error("refusing to listen on {0} without tokens: only a loopback address may be bound without authentication (give --token-file FILE or RUNBOX_TOKENS)")]
    Unauthenticated(std::net::SocketAddr),
    /// The state directory or the store could not be opened.
    #[error("state directory {path}: {reason}")]
    State {
        /// The directory or file.
        path: std::path::PathBuf,
        /// What failed.
        reason: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

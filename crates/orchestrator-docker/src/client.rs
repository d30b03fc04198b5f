//! Connecting to the daemon (with version negotiation) and putting a
//! deadline on every request, so nothing waits for bollard's 120 s default.

use std::future::Future;
use std::time::Duration;

use bollard::Docker;

use crate::config::DockerConfig;
use crate::error::{is_connection_error, DockerOrchestratorError as E};

/// A client for the configured daemon, not yet negotiated. Fails only for
/// an address bollard cannot use (unknown scheme).
pub(crate) fn connect(config: &DockerConfig) -> Result<Docker, E> {
    let r = match &config.host {
        Some(h) => Docker::connect_with_host(h),
        None => Docker::connect_with_local_defaults(),
    };
    r.map_err(|e| match e {
        bollard::errors::Error::SocketNotFoundError(path) => E::Unreachable {
            host: config.host_description(),
            reason: format!("socket {path} does not exist"),
        },
        e => E::Config(format!(
            "cannot use docker host {}: {e}",
            config.host_description()
        )),
    })
}

/// Runs one daemon request with a deadline; connection failures become
/// [`E::Unreachable`].
pub(crate) async fn deadline<T>(
    host: &str,
    operation: &'static str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, E> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(E::Timeout { operation, timeout }),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if is_connection_error(&e) => Err(E::Unreachable {
            host: host.to_string(),
            reason: format!("{operation}: {e}"),
        }),
        Ok(Err(e)) => Err(E::Api {
            operation,
            source: e,
        }),
    }
}

/// Connects and negotiates the API version within `timeout`. A daemon that
/// accepts the connection but does not answer the negotiation in time is
/// unreachable (Unavailable), like one that refuses it.
pub(crate) async fn negotiated(config: &DockerConfig, timeout: Duration) -> Result<Docker, E> {
    let raw = connect(config)?;
    let host = config.host_description();
    match deadline(
        &host,
        "negotiate API version",
        timeout,
        raw.negotiate_version(),
    )
    .await
    {
        Err(E::Timeout { timeout, .. }) => Err(E::Unreachable {
            host,
            reason: format!("no answer to API version negotiation within {timeout:?}"),
        }),
        r => r,
    }
}

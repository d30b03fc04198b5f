//! Requests to the swarm managers: each goes to the manager that last
//! answered, and moves on to the next one while managers are unreachable
//! or between leaders ("node lost leader status", "does not have a
//! leader"), until the failover deadline.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bollard::Docker;

use super::config::SwarmConfig;
use crate::client::{deadline, negotiated};
use crate::error::DockerOrchestratorError as E;

/// The pause after every manager has failed once, before the next round.
const ROUND_PAUSE: Duration = Duration::from_millis(250);

/// The managers of one swarm.
#[derive(Debug)]
pub(crate) struct Managers {
    endpoints: Vec<String>,
    clients: Vec<tokio::sync::OnceCell<Docker>>,
    current: AtomicUsize,
    config: SwarmConfig,
}

impl Managers {
    pub fn new(config: &SwarmConfig) -> Self {
        let endpoints = config.manager_endpoints();
        Self {
            clients: endpoints
                .iter()
                .map(|_| tokio::sync::OnceCell::new())
                .collect(),
            endpoints,
            current: AtomicUsize::new(0),
            config: config.clone(),
        }
    }

    /// The manager endpoints, for messages.
    pub fn describe(&self) -> String {
        self.endpoints.join(", ")
    }

    async fn client(&self, i: usize) -> Result<Docker, E> {
        let timeout = self.config.docker.request_timeout;
        let config = self.config.docker_at(&self.endpoints[i]);
        let c = self.clients[i]
            .get_or_try_init(|| async { negotiated(&config, timeout).await })
            .await?;
        Ok(c.clone())
    }

    /// Runs `request` against the managers with the configured failover
    /// deadline.
    pub async fn call<T, F, Fut>(&self, operation: &'static str, request: F) -> Result<T, E>
    where
        F: Fn(Docker) -> Fut,
        Fut: Future<Output = Result<T, bollard::errors::Error>>,
    {
        self.call_within(operation, self.config.failover_timeout, request)
            .await
    }

    /// Runs `request` against the current manager; while the answer says
    /// the managers cannot serve it now, against the next, for at most
    /// `budget` in all. Other errors (404, 409, bad requests) return at
    /// once.
    pub async fn call_within<T, F, Fut>(
        &self,
        operation: &'static str,
        budget: Duration,
        request: F,
    ) -> Result<T, E>
    where
        F: Fn(Docker) -> Fut,
        Fut: Future<Output = Result<T, bollard::errors::Error>>,
    {
        let until = tokio::time::Instant::now() + budget;
        let n = self.endpoints.len();
        let mut failed_in_round = 0;
        // A round in which every manager said "not a swarm manager" ends
        // the call: no amount of waiting makes a plain daemon a manager.
        let mut not_managers = 0;
        loop {
            let i = self.current.load(Ordering::Relaxed) % n;
            let endpoint = &self.endpoints[i];
            let answer = match self.client(i).await {
                Ok(docker) => {
                    deadline(
                        endpoint,
                        operation,
                        self.config.docker.request_timeout,
                        request(docker),
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            let e = match answer {
                Ok(v) => return Ok(v),
                Err(e) if manager_cannot_serve(&e) => e,
                Err(e) => return Err(e),
            };
            tracing::debug!(manager = %endpoint, operation, error = %e, "swarm manager cannot serve; trying the next");
            if tokio::time::Instant::now() >= until {
                return Err(E::NoManager {
                    operation,
                    reason: format!("last tried {endpoint}: {e}"),
                });
            }
            let _ =
                self.current
                    .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
            failed_in_round += 1;
            if is_not_a_manager(&e) {
                not_managers += 1;
            }
            if failed_in_round >= n {
                if not_managers >= n {
                    return Err(E::NoManager {
                        operation,
                        reason: format!("no endpoint is a swarm manager (last: {endpoint}: {e})"),
                    });
                }
                failed_in_round = 0;
                not_managers = 0;
                tokio::time::sleep(ROUND_PAUSE.min(until - tokio::time::Instant::now())).await;
            }
        }
    }
}

/// Whether the daemon answered that it is no swarm manager (a plain
/// daemon, or a worker).
fn is_not_a_manager(e: &E) -> bool {
    matches!(e, E::Api {
        source: bollard::errors::Error::DockerResponseServerError { message, .. },
        ..
    } if message.to_ascii_lowercase().contains("not a swarm manager"))
}

/// Whether an error means "this manager cannot serve now" (unreachable,
/// no answer, not a manager, no leader, lost leadership), so another
/// manager or a later try may succeed.
pub(crate) fn manager_cannot_serve(e: &E) -> bool {
    match e {
        E::Unreachable { .. } | E::Timeout { .. } => true,
        E::Api {
            source:
                bollard::errors::Error::DockerResponseServerError {
                    status_code,
                    message,
                },
            ..
        } => {
            let m = message.to_ascii_lowercase();
            *status_code == 503
                || m.contains("leader")
                || m.contains("not a swarm manager")
                || m.contains("code = unavailable")
                || m.contains("context deadline exceeded")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status_code: u16, message: &str) -> E {
        E::Api {
            operation: "x",
            source: bollard::errors::Error::DockerResponseServerError {
                status_code,
                message: message.into(),
            },
        }
    }

    #[test]
    fn leader_changes_and_unreachable_managers_are_retried_others_not() {
        for e in [
            api(
                500,
                "rpc error: code = Unknown desc = node lost leader status",
            ),
            api(503, "The swarm does not have a leader."),
            api(503, "This node is not a swarm manager."),
            api(500, "rpc error: code = Unavailable desc = connection error"),
            E::Unreachable {
                host: "h".into(),
                reason: "refused".into(),
            },
        ] {
            assert!(manager_cannot_serve(&e), "{e}");
        }
        for e in [
            api(404, "service x not found"),
            api(409, "name conflicts with an existing object"),
            api(400, "invalid constraint"),
        ] {
            assert!(!manager_cannot_serve(&e), "{e}");
        }
    }

    #[tokio::test]
    async fn no_reachable_manager_fails_within_the_budget() {
        let config = SwarmConfig::new().managers([
            "unix:///nonexistent/runbox-m1.sock",
            "unix:///nonexistent/runbox-m2.sock",
        ]);
        let m = Managers::new(&config);
        let t0 = std::time::Instant::now();
        let r = m
            .call_within("ping", Duration::from_millis(600), |d| async move {
                d.ping().await
            })
            .await;
        assert!(matches!(r, Err(E::NoManager { .. })), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }
}

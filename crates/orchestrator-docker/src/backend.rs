//! [`DockerOrchestrator`] itself: its configuration, the lazily negotiated
//! client with a deadline on every request, the table of live workspaces,
//! and removing what it still holds when it is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use orchestrator_core::owner::Owner;
use orchestrator_core::{Availability, Capabilities, Error, Result, WorkspaceId};

use crate::client::{connect, deadline};
use crate::config::{DockerConfig, MAX_WARM_POOL};
use crate::container::{self, lock};
use crate::error::DockerOrchestratorError as E;
use crate::isolation::DaemonSecurity;
use crate::limits;
use crate::pool::Shared;
use crate::workspace::Ws;

/// The Docker backend: each workspace is a container, each command an exec.
///
/// Create it with [`DockerOrchestrator::new`]; it connects lazily (the first
/// request negotiates the API version), so creating it never blocks and
/// never fails for a daemon that is down — [`orchestrator_core::Orchestrator::is_available`]
/// tells.
#[derive(Debug)]
pub struct DockerOrchestrator {
    pub(crate) config: DockerConfig,
    pub(crate) host: String,
    client: tokio::sync::OnceCell<Docker>,
    /// The daemon's security features, asked on the first isolation report.
    pub(crate) security: tokio::sync::OnceCell<DaemonSecurity>,
    pub(crate) owner: Owner,
    pub(crate) workspaces: Mutex<HashMap<WorkspaceId, Arc<Ws>>>,
    /// The warm pool and the image cache; refills hold only a `Weak`.
    pub(crate) shared: Arc<Shared>,
    /// The configuration as refills get it.
    pub(crate) refill_config: Arc<DockerConfig>,
}

impl DockerOrchestrator {
    /// A backend with this configuration. Fails only for a configuration
    /// that cannot work (an unknown `DOCKER_HOST` scheme, an empty image, a
    /// warm pool without an image).
    pub fn new(config: DockerConfig) -> Result<Self> {
        if config
            .default_image
            .as_deref()
            .is_some_and(|i| i.trim().is_empty())
        {
            return Err(Error::invalid("docker default image is empty"));
        }
        if config.warm_pool > 0 && config.default_image.is_none() {
            return Err(Error::invalid(
                "a docker warm pool needs an image: set DockerConfig::default_image \
                 (or RUNBOX_DOCKER_IMAGE)",
            ));
        }
        if config.request_timeout.is_zero() || config.availability_timeout.is_zero() {
            return Err(Error::invalid(
                "docker request deadlines must be greater than zero",
            ));
        }
        if config.tmp_size_bytes == 0 || config.tmp_inodes == 0 {
            return Err(Error::invalid(
                "the size and inode cap of the docker /tmp must be greater than zero",
            ));
        }
        if config.warm_pool > MAX_WARM_POOL {
            return Err(Error::invalid(format!(
                "docker warm_pool is {}, at most {MAX_WARM_POOL} is allowed",
                config.warm_pool
            )));
        }
        // Only a scheme bollard cannot use is a configuration error; a socket
        // that does not exist (yet) is for is_available to report.
        if let Err(e) = connect(&config) {
            if !matches!(e, E::Unreachable { .. }) {
                return Err(e.into());
            }
        }
        Ok(Self {
            host: config.host_description(),
            refill_config: Arc::new(config.clone()),
            config,
            client: tokio::sync::OnceCell::new(),
            security: tokio::sync::OnceCell::new(),
            owner: Owner::current(),
            workspaces: Mutex::new(HashMap::new()),
            shared: Arc::new(Shared::new()),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The negotiated client (negotiating on first use).
    pub(crate) async fn docker(&self) -> std::result::Result<Docker, E> {
        self.docker_within(self.config.request_timeout).await
    }

    async fn docker_within(&self, timeout: Duration) -> std::result::Result<Docker, E> {
        let c = self
            .client
            .get_or_try_init(|| crate::client::negotiated(&self.config, timeout))
            .await?;
        Ok(c.clone())
    }

    /// Runs one quick daemon request under the request deadline.
    pub(crate) async fn call<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> std::result::Result<T, E> {
        deadline(&self.host, operation, self.config.request_timeout, fut).await
    }

    /// Whether the daemon answers a ping within the availability deadline.
    pub(crate) async fn availability(&self) -> Availability {
        let limit = self.config.availability_timeout;
        let check = async {
            let docker = self.docker_within(limit).await?;
            self.call("ping", docker.ping()).await?;
            Ok::<_, E>(())
        };
        match tokio::time::timeout(limit, check).await {
            Ok(Ok(())) => Availability::Available,
            Ok(Err(E::Timeout { .. })) | Err(_) => Availability::unavailable(format!(
                "the docker daemon at {} did not answer within {limit:?}",
                self.host
            )),
            Ok(Err(e)) => Availability::unavailable(e.to_string()),
        }
    }

    /// `capabilities`: copies and background processes, every limit kind,
    /// OOM detection through the container's memory cgroup, containers
    /// other processes meet (the daemon's), full isolation (every container
    /// is hardened, see `container`), and network isolation when the
    /// containers get no network.
    pub(crate) fn what_it_can_do(&self) -> Capabilities {
        Capabilities {
            copy: true,
            background: true,
            direct_access: false,
            network_isolation: self.config.network_mode == "none",
            isolation: true,
            oom_detection: true,
            cross_process: true,
            images: true,
            mounts: true,
            limits: limits::enforced_kinds(),
        }
    }

    /// A name part no other backend of this process draws.
    pub(crate) fn unique(&self) -> String {
        container::unique(self.owner.pid)
    }

    /// The live workspace `id` of this backend.
    pub(crate) fn ws(&self, id: &WorkspaceId) -> Result<Arc<Ws>> {
        lock(&self.workspaces)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::workspace_not_found(id))
    }

    /// Removes a container by force; a container already gone is fine.
    pub(crate) async fn remove(&self, container: &str) -> std::result::Result<(), E> {
        let docker = self.docker().await?;
        container::remove(&docker, &self.config, container).await
    }
}

impl Drop for DockerOrchestrator {
    /// Removes the containers of workspaces that were never cleaned up and
    /// those waiting in the warm pool, so a dropped backend (a panicking
    /// caller) leaves nothing behind; refills still running remove theirs
    /// when they end. Runs on a helper thread with its own runtime and
    /// client, bounded in time.
    fn drop(&mut self) {
        let mut containers: Vec<String> = lock(&self.workspaces)
            .drain()
            .map(|(_, ws)| ws.container.clone())
            .collect();
        let pooled = self.shared.close();
        let n_pooled = pooled.len();
        containers.extend(pooled);
        if containers.is_empty() {
            return;
        }
        container::remove_blocking(&self.config, containers.clone(), Duration::ZERO);
        let refs: Vec<&str> = containers.iter().map(String::as_str).collect();
        container::live_remove(&refs);
        tracing::info!(
            count = containers.len(),
            pooled = n_pooled,
            "removed containers of a dropped docker backend"
        );
    }
}

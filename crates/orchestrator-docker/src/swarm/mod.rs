//! The `swarm` backend: each workspace is a one-replica Docker Swarm
//! service (restart condition none) whose task's container is driven like
//! a docker workspace, through the same exec, archive and limit code, on
//! the daemon of the node that runs it (Swarm has no cross-node exec).
//!
//! - `config`: [`SwarmConfig`] and where it comes from;
//! - `manager`: requests to the managers, with failover;
//! - `nodes`: node readiness and node daemon endpoints;
//! - `service`: the service spec, start and removal;
//! - `lifecycle`: create_workspace, apply_resource_limits, cleanup;
//! - `watch`: marking the workspaces of lost nodes;
//! - `reap`: residue and reap_orphans by label;
//! - `orchestrator`: the trait impl.

mod config;
mod lifecycle;
mod manager;
mod nodes;
mod orchestrator;
mod reap;
mod service;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::owner::Owner;
use orchestrator_core::{Error, Result, WorkspaceId};
use tokio::sync::watch as tokio_watch;

pub(crate) use config::config_from_options;
pub use config::{SwarmConfig, CLUSTER_FILE, ENDPOINT_LABEL, LABEL_BACKEND, LABEL_CONSTRAINTS};
pub use nodes::NodeView;

use crate::config::MAX_WARM_POOL;
use crate::container::lock;
use crate::DockerOrchestrator;
use manager::Managers;
use nodes::Endpoints;

/// The backend's registered name.
pub const BACKEND_NAME: &str = "swarm";

/// A live swarm workspace of this backend.
#[derive(Debug)]
pub(crate) struct Placement {
    /// Its service's name.
    pub service: String,
    /// The node running its task.
    pub node_id: String,
    /// Reports the node's loss to the workspace's route.
    pub lost: tokio_watch::Sender<Option<String>>,
}

/// What the backend and its node watcher share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: SwarmConfig,
    pub managers: Managers,
    pub endpoints: Endpoints,
    pub placements: Mutex<HashMap<WorkspaceId, Placement>>,
    /// Whether each node daemon (by endpoint) runs commands with
    /// no_new_privs, learnt from its first workspace.
    pub no_new_privs: Mutex<HashMap<String, bool>>,
}

/// The Docker Swarm backend: workspaces are one-replica services placed
/// by the swarm; commands and copies go to the daemon of the task's node.
///
/// ```no_run
/// use orchestrator_core::{CommandSpec, Orchestrator, WorkspaceSpec};
/// use orchestrator_docker::{SwarmConfig, SwarmOrchestrator};
///
/// # async fn demo() -> orchestrator_core::Result<()> {
/// let swarm = SwarmOrchestrator::new(
///     SwarmConfig::from_env().managers(["unix:///run/runbox-swarm/n1/docker.sock"]),
/// )?;
/// let id = swarm
///     .create_workspace(&WorkspaceSpec::new().image("runbox-testbox:latest"))
///     .await?;
/// let out = swarm
///     .run_command(&id, &CommandSpec::shell("hostname").build()?)
///     .await?;
/// println!("ran on {}", String::from_utf8_lossy(&out.stdout));
/// swarm.cleanup(&id).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SwarmOrchestrator {
    /// The container engine: its table holds each workspace's route.
    pub(crate) engine: DockerOrchestrator,
    pub(crate) shared: Arc<Shared>,
    pub(crate) owner: Owner,
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SwarmOrchestrator {
    /// A backend with this configuration. Fails only for a configuration
    /// that cannot work (no manager, a malformed endpoint, a zero
    /// deadline); a swarm that is down is for `is_available` to tell.
    pub fn new(config: SwarmConfig) -> Result<Self> {
        let managers = config.manager_endpoints();
        if managers.iter().any(|m| m.trim().is_empty()) {
            return Err(Error::invalid("a swarm manager endpoint is empty"));
        }
        if config.docker.warm_pool > 0 {
            return Err(Error::invalid(format!(
                "the swarm backend has no warm pool (asked for {}, at most {MAX_WARM_POOL} on docker)",
                config.docker.warm_pool
            )));
        }
        for d in [
            config.start_timeout,
            config.remove_timeout,
            config.failover_timeout,
            config.node_check_interval,
        ] {
            if d.is_zero() {
                return Err(Error::invalid(
                    "swarm deadlines and intervals must be greater than zero",
                ));
            }
        }
        if !matches!(config.docker.network_mode.as_str(), "none" | "host") {
            return Err(Error::invalid(format!(
                "swarm network mode {:?}: only none (the default) and host are supported",
                config.docker.network_mode
            )));
        }
        if config.endpoint_label.trim().is_empty() {
            return Err(Error::invalid("the swarm endpoint label is empty"));
        }
        // The engine checks the docker settings and every address's scheme.
        let engine = DockerOrchestrator::new(config.docker_at(&managers[0]))?;
        for endpoint in managers.iter().skip(1).chain(config.nodes.values()) {
            DockerOrchestrator::new(config.docker_at(endpoint))?;
        }
        Ok(Self {
            engine,
            shared: Arc::new(Shared {
                managers: Managers::new(&config),
                endpoints: Endpoints::new(&config),
                placements: Mutex::new(HashMap::new()),
                no_new_privs: Mutex::new(HashMap::new()),
                config,
            }),
            owner: Owner::current(),
            watcher: Mutex::new(None),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SwarmConfig {
        &self.shared.config
    }

    /// Every node of the swarm as the managers see it now.
    pub async fn nodes(&self) -> Result<Vec<NodeView>> {
        Ok(nodes::list(&self.shared.managers, &self.shared.config.endpoint_label).await?)
    }

    /// The hostname of the node that runs workspace `id`'s task, while this
    /// backend holds the workspace.
    pub fn node_of(&self, id: &WorkspaceId) -> Option<String> {
        lock(&self.engine.workspaces)
            .get(id)?
            .route
            .as_ref()
            .map(|r| r.node.clone())
    }

    /// Starts the node watcher once (on the first workspace).
    fn ensure_watcher(&self) {
        let mut w = lock(&self.watcher);
        if w.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        *w = Some(tokio::spawn(watch::run(Arc::downgrade(&self.shared))));
    }
}

impl Drop for SwarmOrchestrator {
    /// Removes the services of workspaces never cleaned up (the swarm then
    /// removes their containers), so a dropped backend leaves nothing
    /// running; bounded in time, on a helper thread.
    fn drop(&mut self) {
        if let Some(w) = lock(&self.watcher).take() {
            w.abort();
        }
        // The engine must not remove the containers itself: the swarm would
        // see its task fail, and the service would stay.
        lock(&self.engine.workspaces).clear();
        let services: Vec<String> = lock(&self.shared.placements)
            .drain()
            .map(|(_, p)| p.service)
            .collect();
        if services.is_empty() {
            return;
        }
        lifecycle::remove_services_blocking(&self.shared.config, services.clone());
        tracing::info!(
            count = services.len(),
            "removed services of a dropped swarm backend"
        );
    }
}

/// How long the blocking removal at drop may take in all.
pub(crate) const DROP_BUDGET: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_that_cannot_work_are_refused() {
        let ok = SwarmConfig::new().managers(["unix:///nonexistent/m.sock"]);
        assert!(SwarmOrchestrator::new(ok.clone()).is_ok());
        let cases = [
            ok.clone().managers([" "]),
            ok.clone()
                .docker(crate::DockerConfig::new().network_mode("bridge")),
            ok.clone()
                .docker(crate::DockerConfig::new().warm_pool(1).default_image("i")),
            ok.clone().endpoint_label(""),
            ok.clone().start_timeout(Duration::ZERO),
            ok.clone().node("n1", "ftp://nowhere"),
        ];
        for c in cases {
            match SwarmOrchestrator::new(c.clone()) {
                Err(Error::InvalidInput(_)) => {}
                other => panic!("{c:?}: {other:?}"),
            }
        }
    }
}

//! A swarm workspace over its life: its service created and its task
//! waited for, the route to the task's node daemon, limits changed in
//! place there, and cleanup removing the service and waiting until its
//! container is gone from the node.

use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;
use orchestrator_core::{Error, LimitReport, ResourceLimits, Result, WorkspaceId, WorkspaceSpec};
use tokio::sync::watch;

use super::config::SwarmConfig;
use super::manager::Managers;
use super::nodes::NodeView;
use super::service::{self, Placed};
use super::{Placement, Shared, SwarmOrchestrator, DROP_BUDGET};
use crate::client::deadline;
use crate::container::{self, lock, Recipe};
use crate::error::DockerOrchestratorError as E;
use crate::limits;
use crate::route::Route;
use crate::workspace::Ws;

/// How long cleanup leaves a container to the node's agent before
/// removing it through the node's daemon itself.
const AGENT_GRACE: Duration = Duration::from_secs(5);

/// Removes a service whose creation was abandoned (the caller's future
/// dropped) once the creating future is gone.
struct Undo {
    shared: Arc<Shared>,
    service: Option<String>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        let Some(name) = self.service.take() else {
            return;
        };
        let shared = self.shared.clone();
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                if let Err(e) = service::remove(&shared.managers, &name).await {
                    tracing::warn!(service = %name, error = %e, "cannot remove the service of an abandoned workspace");
                }
                container::live_remove(&[&name]);
            });
        }
    }
}

impl SwarmOrchestrator {
    /// `create_workspace`: a one-replica service, waited for until its task
    /// runs, then reached on its node's daemon.
    pub(crate) async fn create(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        let config = &self.shared.config;
        let lim = spec.limits.clone().unwrap_or_default();
        if lim.strict() || config.docker.strict_limits {
            limits::report(&lim).check_strict()?;
        }
        let Some(image) = spec.image.as_ref().or(config.docker.default_image.as_ref()) else {
            return Err(Error::invalid(
                "no image: set WorkspaceSpec::image or the swarm default image \
                 (RUNBOX_SWARM_IMAGE)",
            ));
        };
        if !spec.mounts.is_empty() {
            // A host path would name the node's filesystem, not this one's.
            return Err(Error::Unsupported {
                backend: super::BACKEND_NAME.into(),
                operation: "bind mounts (a host path names the node's filesystem; copy files in with copy_to)".into(),
            });
        }
        let id = WorkspaceId::new(format!("sw-{}", self.engine.unique()))?;
        let name = container::name_of(&id);
        let recipe = Recipe {
            id: &id,
            image,
            labels: &spec.labels,
            execution_id: spec.execution_id.as_deref(),
            limits: &lim,
            mounts: &[],
        };
        let body = service::spec(config, &self.owner, &name, &recipe)?;
        // Alive on purpose from before it exists, for a concurrent reap.
        container::live_add(&name);
        let mut undo = Undo {
            shared: self.shared.clone(),
            service: Some(name.clone()),
        };
        let created = self
            .shared
            .managers
            .call("create service", |d| {
                let body = body.clone();
                async move { d.create_service(body, None).await }
            })
            .await;
        match created {
            Ok(_) => {}
            // A retried create whose first try went through.
            Err(e) if e.status_code() == Some(409) => {}
            // What the caller sent (a constraint swarm cannot parse, say).
            Err(e) if e.status_code() == Some(400) => {
                container::live_remove(&[&name]);
                undo.service = None;
                return Err(Error::invalid(format!(
                    "the swarm refused the workspace's service: {e}"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let started = async {
            let placed = service::wait_running(config, &self.shared.managers, &name, image).await?;
            let (route, node) = self.route_to(&placed.node_id).await?;
            let cg = limits::cgroup_fields(&lim);
            if cg != limits::CgroupFields::default() {
                // What a service cannot say (no swap beyond the memory
                // limit), in place on the node.
                deadline(
                    &route.host,
                    "update container",
                    config.docker.request_timeout,
                    route
                        .docker
                        .update_container(&placed.container, cg.update_body()),
                )
                .await?;
            }
            if config.docker.network_mode == "none" {
                disconnect_networks(config, &route, &placed.container).await?;
            }
            Ok::<_, Error>((placed, route, node))
        };
        let (placed, route, node) = match started.await {
            Ok(s) => s,
            Err(e) => {
                if let Err(r) = self.remove_service_and_wait(&name, None).await {
                    tracing::warn!(service = %name, error = %r, "cannot remove the service of a failed workspace");
                }
                // Disarmed only now: a drop during the removal still undoes.
                undo.service = None;
                return Err(e);
            }
        };
        let (lost_tx, lost_rx) = watch::channel(None);
        let route = Route {
            lost: lost_rx,
            ..route
        };
        undo.service = None;
        lock(&self.engine.workspaces).insert(
            id.clone(),
            Arc::new(Ws::new(placed.container.clone(), lim, Some(route))),
        );
        lock(&self.shared.placements).insert(
            id.clone(),
            Placement {
                service: name.clone(),
                node_id: placed.node_id.clone(),
                lost: lost_tx,
            },
        );
        self.ensure_watcher();
        tracing::info!(workspace = %id, service = %name, node = %node.name(), container = %placed.container, "swarm workspace created");
        Ok(id)
    }

    /// The route to node `node_id`'s daemon (not yet watched for loss).
    pub(crate) async fn route_to(
        &self,
        node_id: &str,
    ) -> std::result::Result<(Route, NodeView), E> {
        let node = self.node(node_id).await?;
        let endpoint = self.shared.endpoints.endpoint_of(&node)?;
        let docker = self.shared.endpoints.client(&endpoint).await?;
        let (_, lost) = watch::channel(None);
        Ok((
            Route {
                docker,
                host: endpoint,
                node: if node.hostname.is_empty() {
                    node.id.clone()
                } else {
                    node.hostname.clone()
                },
                lost,
            },
            node,
        ))
    }

    /// Node `node_id` as the managers see it.
    pub(crate) async fn node(&self, node_id: &str) -> std::result::Result<NodeView, E> {
        let n = self
            .shared
            .managers
            .call("inspect node", |d| {
                let id = node_id.to_string();
                async move { d.inspect_node(&id).await }
            })
            .await?;
        Ok(NodeView::of(&n, &self.shared.config.endpoint_label))
    }

    /// `apply_resource_limits`: in place on the node (`docker update`; a
    /// service update would restart the task), and in later commands' plans.
    pub(crate) async fn apply_limits(
        &self,
        id: &WorkspaceId,
        requested: &ResourceLimits,
    ) -> Result<LimitReport> {
        self.engine.apply_limits(id, requested).await
    }

    /// `cleanup`: removes the workspace's service, then waits until its
    /// container is gone from its node (removing it there if the node's
    /// agent is slow). A lost node's container goes when the node returns
    /// (its agent removes tasks of removed services) or is reaped then.
    /// For a workspace this backend does not hold: its services whose
    /// owner is this process or gone.
    pub(crate) async fn remove_workspace(&self, id: &WorkspaceId) -> Result<()> {
        let placement = lock(&self.shared.placements).remove(id);
        let ws = lock(&self.engine.workspaces).remove(id);
        let Some(p) = placement else {
            for (name, owner_ok) in self.services_of(id).await? {
                if owner_ok {
                    self.remove_service_and_wait(&name, None).await?;
                } else {
                    tracing::info!(workspace = %id, service = %name, "cleanup leaves a service of another live owner");
                }
            }
            tracing::info!(workspace = %id, "swarm workspace cleaned up");
            return Ok(());
        };
        if let Some(ws) = &ws {
            for bg in lock(&ws.procs).values() {
                bg.abort();
            }
        }
        let known = ws
            .as_ref()
            .map(|ws| (ws.container.clone(), ws.route.clone()));
        // The workspace has left the tables: should this future be dropped
        // before the service is removed, the guard removes it.
        let mut undo = Undo {
            shared: self.shared.clone(),
            service: Some(p.service.clone()),
        };
        let removed = self.remove_service_and_wait(&p.service, known).await;
        undo.service = None;
        if let Err(e) = removed {
            // Kept, so a later cleanup can finish the job.
            if let Some(ws) = ws {
                lock(&self.engine.workspaces).insert(id.clone(), ws);
            }
            lock(&self.shared.placements).insert(id.clone(), p);
            return Err(e);
        }
        tracing::info!(workspace = %id, "swarm workspace cleaned up");
        Ok(())
    }

    /// Removes service `name` and waits until the containers of its tasks
    /// are gone from every node that can be reached. `known` is the
    /// container and route of a workspace this backend holds.
    pub(crate) async fn remove_service_and_wait(
        &self,
        name: &str,
        known: Option<(String, Option<Route>)>,
    ) -> Result<()> {
        let managers = &self.shared.managers;
        let mut placed: Vec<Placed> = service::tasks(managers, name)
            .await?
            .iter()
            .filter_map(|t| {
                Some(Placed {
                    node_id: t.node_id.clone()?,
                    container: t
                        .status
                        .as_ref()?
                        .container_status
                        .as_ref()?
                        .container_id
                        .clone()?,
                })
            })
            .collect();
        service::remove(managers, name).await?;
        container::live_remove(&[name]);
        if let Some((cid, Some(route))) = known {
            placed.retain(|p| p.container != cid);
            if route.check().is_ok() {
                // Removed on its node at once rather than after the agent's
                // stop: nothing of the workspace is worth a graceful end,
                // and the agent finds it gone (404) when it gets there.
                let at = self.shared.config.docker_at(&route.host);
                match container::remove(&route.docker, &at, &cid).await {
                    Ok(()) | Err(E::Unreachable { .. } | E::Timeout { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                self.wait_gone(&route.docker, &route.host, &cid).await?;
            } else {
                tracing::info!(service = %name, node = %route.node, "the node is lost: its container goes when it returns");
            }
        }
        for p in placed {
            match self.route_to(&p.node_id).await {
                Ok((route, _)) => {
                    self.wait_gone(&route.docker, &route.host, &p.container)
                        .await?
                }
                Err(e) => {
                    tracing::info!(service = %name, node = %p.node_id, error = %e, "cannot reach the node: its container goes when it returns");
                }
            }
        }
        Ok(())
    }

    /// Waits until container `cid` is gone from the daemon at `host`,
    /// removing it there after [`AGENT_GRACE`]. An unreachable daemon
    /// ends the wait (its node is down: the container goes with it).
    async fn wait_gone(&self, docker: &Docker, host: &str, cid: &str) -> Result<()> {
        let config = &self.shared.config;
        let t0 = tokio::time::Instant::now();
        let mut removed_here = false;
        loop {
            let r = deadline(
                host,
                "inspect container",
                config.docker.request_timeout,
                docker.inspect_container(cid, None::<InspectContainerOptions>),
            )
            .await;
            match r {
                Err(e) if e.status_code() == Some(404) => return Ok(()),
                // A node that does not answer (dead, or cut off behind TCP)
                // cannot be waited for: its agent removes the container of
                // the removed service when it returns.
                Err(E::Unreachable { .. } | E::Timeout { .. }) => {
                    tracing::info!(container = %cid, %host, "node daemon not answering: its container goes when it returns");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            let waited = t0.elapsed();
            if waited >= config.remove_timeout {
                return Err(E::Helper {
                    container: cid.to_string(),
                    reason: format!("still on its node {waited:?} after its service was removed"),
                }
                .into());
            }
            if waited >= AGENT_GRACE && !removed_here {
                removed_here = true;
                container::remove(docker, &config.docker_at(host), cid).await?;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Disconnects a task's container from every network it has (the node's
/// default bridge), leaving it only its loopback: swarm cannot create a
/// task without a network.
async fn disconnect_networks(
    config: &SwarmConfig,
    route: &Route,
    container: &str,
) -> std::result::Result<(), E> {
    let timeout = config.docker.request_timeout;
    let c = deadline(
        &route.host,
        "inspect container",
        timeout,
        route
            .docker
            .inspect_container(container, None::<InspectContainerOptions>),
    )
    .await?;
    let networks: Vec<String> = c
        .network_settings
        .and_then(|n| n.networks)
        .map(|n| n.into_keys().collect())
        .unwrap_or_default();
    for network in networks {
        let body = bollard::models::NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(true),
        };
        deadline(
            &route.host,
            "disconnect network",
            timeout,
            route.docker.disconnect_network(&network, body),
        )
        .await?;
    }
    Ok(())
}

/// Removes services from synchronous code (a `Drop`), on a helper thread
/// with its own runtime, within [`DROP_BUDGET`].
pub(crate) fn remove_services_blocking(config: &SwarmConfig, services: Vec<String>) {
    // All at once, each within the budget (less a margin for the last
    // request), so none is cut off by the caller's deadline.
    let config = SwarmConfig {
        failover_timeout: DROP_BUDGET.saturating_sub(config.docker.request_timeout * 2),
        ..config.clone()
    };
    crate::blocking::run_bounded("runbox-swarm-drop", DROP_BUDGET, async move {
        let managers = Managers::new(&config);
        let managers = &managers;
        futures_util::future::join_all(services.iter().map(|s| async move {
            if let Err(e) = service::remove(managers, s).await {
                tracing::warn!(service = %s, error = %e, "cannot remove the service of a dropped swarm backend");
            }
            container::live_remove(&[s]);
        }))
        .await;
    });
}

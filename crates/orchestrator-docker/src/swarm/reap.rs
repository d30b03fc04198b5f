//! Finding swarm workspaces by label: the services of a workspace, what it
//! left on the managers and the nodes (`residue`), and what owners that
//! are gone left (`reap_orphans`).

use std::collections::{HashMap, HashSet};

use bollard::models::Service;
use bollard::query_parameters::ListServicesOptions;
use bollard::Docker;
use orchestrator_core::owner::Owner;
use orchestrator_core::{Result, WorkspaceId};

use super::config::LABEL_BACKEND;
use super::SwarmOrchestrator;
use crate::config::{LABEL_WORKSPACE, OWNER_LABEL};
use crate::container;
use crate::error::DockerOrchestratorError as E;
use crate::reap::{container_description, list_containers, list_volumes};

/// The label swarm puts on a task's container naming its service.
const SERVICE_NAME_LABEL: &str = "com.docker.swarm.service.name";

fn owner_of_service(s: &Service) -> Option<Owner> {
    let labels = s.spec.as_ref()?.labels.as_ref()?;
    Owner::from_label_fn(OWNER_LABEL, |k| labels.get(k).map(String::as_str))
}

fn name_of(s: &Service) -> String {
    s.spec
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_default()
}

impl SwarmOrchestrator {
    /// The swarm backend's services carrying `label=value`.
    async fn services(&self, label: &str, value: &str) -> std::result::Result<Vec<Service>, E> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{label}={value}"),
                format!("{LABEL_BACKEND}={}", super::BACKEND_NAME),
            ],
        )]);
        self.shared
            .managers
            .call("list services", |d| {
                let opts = ListServicesOptions {
                    filters: Some(filters.clone()),
                    ..Default::default()
                };
                async move { d.list_services(Some(opts)).await }
            })
            .await
    }

    /// The services of workspace `id`, each with whether this process may
    /// remove it (its owner is this process or gone).
    pub(crate) async fn services_of(&self, id: &WorkspaceId) -> Result<Vec<(String, bool)>> {
        Ok(self
            .services(LABEL_WORKSPACE, id.as_str())
            .await?
            .iter()
            .map(|s| {
                let ok = owner_of_service(s).is_some_and(|o| container::gone_or_me(&o));
                (name_of(s), ok)
            })
            .collect())
    }

    /// Every node daemon that can be reached now, with its endpoint.
    async fn reachable_nodes(&self) -> Result<Vec<(String, Docker, String)>> {
        let mut out = Vec::new();
        for n in self.nodes().await? {
            let Ok(endpoint) = self.shared.endpoints.endpoint_of(&n) else {
                continue;
            };
            match self.shared.endpoints.client(&endpoint).await {
                Ok(d) => out.push((n.name(), d, endpoint)),
                Err(e) => {
                    tracing::debug!(node = %n.name(), error = %e, "node daemon not reachable")
                }
            }
        }
        Ok(out)
    }

    /// `residue`: the services, containers and workspace volumes still
    /// labelled with workspace `id`, on the managers and every node daemon
    /// that can be reached.
    pub(crate) async fn residue_of(&self, id: &WorkspaceId) -> Result<Vec<String>> {
        let timeout = self.shared.config.docker.request_timeout;
        let mut left: Vec<String> = self
            .services(LABEL_WORKSPACE, id.as_str())
            .await?
            .iter()
            .map(|s| format!("service {}", name_of(s)))
            .collect();
        for (node, docker, host) in self.reachable_nodes().await? {
            let on_node = |what: String| format!("{what} on node {node}");
            let containers = match list_containers(
                &docker,
                &host,
                timeout,
                LABEL_WORKSPACE,
                id.as_str(),
            )
            .await
            {
                Ok(c) => c,
                // Down since it was listed: what it holds goes with it.
                Err(E::Unreachable { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            left.extend(containers.iter().map(|c| on_node(container_description(c))));
            let volumes =
                match list_volumes(&docker, &host, timeout, LABEL_WORKSPACE, id.as_str(), false)
                    .await
                {
                    Ok(v) => v,
                    Err(E::Unreachable { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
            left.extend(
                volumes
                    .iter()
                    .map(|v| on_node(format!("volume {}", v.name))),
            );
        }
        Ok(left)
    }

    /// `reap_orphans`: removes the swarm services of runbox whose owner is
    /// gone (or is this process without a workspace holding them), then the
    /// containers and volumes of such owners left on reachable nodes by
    /// services that no longer exist (a node that was down at cleanup).
    pub(crate) async fn reap(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let all = self
            .services(OWNER_LABEL, crate::config::OWNER_VALUE)
            .await?;
        let mut alive: HashSet<String> = HashSet::new();
        for s in &all {
            let name = name_of(s);
            let live = container::is_live_name(&name);
            let orphan = !live && owner_of_service(s).filter(container::gone_or_me).is_some();
            if !orphan {
                alive.insert(name);
                continue;
            }
            let pid = owner_of_service(s).map_or(0, |o| o.pid);
            self.remove_service_and_wait(&name, None).await?;
            let desc = format!("service {name} (owner pid {pid} gone)");
            tracing::info!(%desc, "reaped orphan");
            removed.push(desc);
        }
        let timeout = self.shared.config.docker.request_timeout;
        for (node, docker, host) in self.reachable_nodes().await? {
            let Ok(containers) =
                list_containers(&docker, &host, timeout, LABEL_BACKEND, super::BACKEND_NAME).await
            else {
                continue;
            };
            for c in containers {
                let service = c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .cloned();
                if service.as_ref().is_some_and(|s| alive.contains(s)) {
                    continue;
                }
                let Some(owner) =
                    container::owner_of(&c).filter(|o| *o != Owner::current() && o.is_dead())
                else {
                    continue;
                };
                let Some(cid) = &c.id else { continue };
                container::remove(&docker, &self.shared.config.docker_at(&host), cid).await?;
                let desc = format!(
                    "{} on node {node} (owner pid {} gone)",
                    container_description(&c),
                    owner.pid
                );
                tracing::info!(%desc, "reaped orphan");
                removed.push(desc);
            }
        }
        Ok(removed)
    }
}

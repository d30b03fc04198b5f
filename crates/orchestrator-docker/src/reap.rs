//! Finding runbox's containers and workspace volumes by label: what a
//! workspace left behind (`residue`) and what owners that are gone left
//! (`reap_orphans`).

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;

use bollard::models::{ContainerSummary, Volume};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveVolumeOptions,
};
use orchestrator_core::owner::Owner;
use orchestrator_core::{Result, WorkspaceId};

use crate::client::deadline;
use crate::config::{LABEL_WORKSPACE, OWNER_LABEL, OWNER_VALUE};
use crate::container;
use crate::error::DockerOrchestratorError as E;
use crate::DockerOrchestrator;

/// Every container, running or not, carrying `label=value`, on the daemon
/// `docker` at `host`.
pub(crate) async fn list_containers(
    docker: &Docker,
    host: &str,
    timeout: Duration,
    label: &str,
    value: &str,
) -> std::result::Result<Vec<ContainerSummary>, E> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    deadline(
        host,
        "list containers",
        timeout,
        docker.list_containers(Some(opts)),
    )
    .await
}

/// Every volume carrying `label=value` on the daemon `docker` at `host`,
/// only those no container uses when `dangling`.
pub(crate) async fn list_volumes(
    docker: &Docker,
    host: &str,
    timeout: Duration,
    label: &str,
    value: &str,
    dangling: bool,
) -> std::result::Result<Vec<Volume>, E> {
    let mut filters: HashMap<String, Vec<String>> = HashMap::new();
    filters.insert("label".into(), vec![format!("{label}={value}")]);
    if dangling {
        filters.insert("dangling".into(), vec!["true".into()]);
    }
    let opts = ListVolumesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let listed = deadline(
        host,
        "list volumes",
        timeout,
        docker.list_volumes(Some(opts)),
    )
    .await?;
    Ok(listed.volumes.unwrap_or_default())
}

impl DockerOrchestrator {
    /// Every container, running or not, carrying `label=value`.
    pub(crate) async fn list(
        &self,
        label: &str,
        value: &str,
    ) -> std::result::Result<Vec<ContainerSummary>, E> {
        let docker = self.docker().await?;
        list_containers(
            &docker,
            &self.host,
            self.config.request_timeout,
            label,
            value,
        )
        .await
    }

    /// Every volume carrying `label=value`, only those no container uses
    /// when `dangling`.
    pub(crate) async fn list_volumes(
        &self,
        label: &str,
        value: &str,
        dangling: bool,
    ) -> std::result::Result<Vec<Volume>, E> {
        let docker = self.docker().await?;
        list_volumes(
            &docker,
            &self.host,
            self.config.request_timeout,
            label,
            value,
            dangling,
        )
        .await
    }

    /// `residue`: the containers and workspace volumes still labelled with
    /// workspace `id`.
    pub(crate) async fn containers_of(&self, id: &WorkspaceId) -> Result<Vec<String>> {
        let mut left: Vec<String> = self
            .list(LABEL_WORKSPACE, id.as_str())
            .await?
            .iter()
            .map(container_description)
            .collect();
        left.extend(
            self.list_volumes(LABEL_WORKSPACE, id.as_str(), false)
                .await?
                .iter()
                .map(|v| format!("volume {}", v.name)),
        );
        Ok(left)
    }

    /// Removes the volumes of workspace `id` that no container uses and
    /// whose owner is this process or gone (`cleanup` of a workspace this
    /// backend does not hold, after its containers).
    pub(crate) async fn remove_dangling_volumes(&self, id: &WorkspaceId) -> Result<()> {
        for v in self
            .list_volumes(LABEL_WORKSPACE, id.as_str(), true)
            .await?
        {
            let owner = Owner::from_label_fn(OWNER_LABEL, |k| v.labels.get(k).map(String::as_str));
            if owner.is_some_and(|o| container::gone_or_me(&o)) {
                self.remove_volume(&v.name).await?;
            }
        }
        Ok(())
    }

    /// Removes a volume; one already gone, or taken into use meanwhile, is
    /// left (false).
    async fn remove_volume(&self, name: &str) -> Result<bool> {
        let docker = self.docker().await?;
        match self
            .call(
                "remove volume",
                docker.remove_volume(name, None::<RemoveVolumeOptions>),
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.status_code(), Some(404 | 409)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes workspace volumes no container uses whose owner is gone
    /// (one whose owner is this process may belong to a container being
    /// created right now, so it is left to `cleanup`'s removal or a later
    /// owner's reap). Returns a description of each.
    async fn reap_volumes(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for v in self.list_volumes(OWNER_LABEL, OWNER_VALUE, true).await? {
            let owner = Owner::from_label_fn(OWNER_LABEL, |k| v.labels.get(k).map(String::as_str));
            let Some(owner) = owner.filter(|o| *o != Owner::current() && o.is_dead()) else {
                continue;
            };
            // Gone meanwhile, or taken into use: not an orphan now.
            if !self.remove_volume(&v.name).await? {
                continue;
            }
            let desc = format!(
                "volume {} of workspace {} (owner pid {} gone)",
                v.name,
                v.labels.get(LABEL_WORKSPACE).map_or("", String::as_str),
                owner.pid
            );
            tracing::info!(%desc, "reaped orphan volume");
            removed.push(desc);
        }
        Ok(removed)
    }

    /// `reap_orphans`: removes runbox containers whose owner process is
    /// gone (a zombie counts as gone; an owner on another host is never
    /// judged), or is this process without a live workspace or pool
    /// holding them.
    pub(crate) async fn reap(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for c in self.list(OWNER_LABEL, OWNER_VALUE).await? {
            let Some(cid) = c.id.clone() else { continue };
            // A swarm task's container is the swarm backend's to reap
            // (through its service), even on a daemon that is also a node.
            let swarm_owned = c
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::swarm::LABEL_BACKEND))
                .is_some_and(|b| b == crate::swarm::BACKEND_NAME);
            if container::is_live(&c) || swarm_owned {
                continue;
            }
            let Some(owner) = container::owner_of(&c).filter(container::gone_or_me) else {
                continue;
            };
            let workspace = c.labels.as_ref().and_then(|l| l.get(LABEL_WORKSPACE));
            let desc = format!(
                "{} of workspace {} (owner pid {} gone)",
                container_description(&c),
                workspace.map_or("", String::as_str),
                owner.pid
            );
            self.remove(&cid).await?;
            tracing::info!(%desc, "reaped orphan");
            removed.push(desc);
        }
        // After the containers: removing one removes its volume, so what
        // is left dangling here had no container (a failed removal).
        removed.extend(self.reap_volumes().await?);
        Ok(removed)
    }
}

/// `container NAME (SHORT-ID, STATE)`, for residue and reap reports.
pub(crate) fn container_description(c: &ContainerSummary) -> String {
    let name = c
        .names
        .as_ref()
        .and_then(|n| n.first().cloned())
        .unwrap_or_default();
    let id: String = c.id.clone().unwrap_or_default().chars().take(12).collect();
    let state = c.state.as_ref().map(|s| s.to_string()).unwrap_or_default();
    format!("container {} ({id}, {state})", name.trim_start_matches('/'))
}

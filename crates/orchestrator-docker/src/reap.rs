//! Finding runbox's containers by label: what a workspace left behind
//! (`residue`) and the containers of owners that are gone (`reap_orphans`).

use std::collections::HashMap;

use bollard::models::ContainerSummary;
use bollard::query_parameters::ListContainersOptionsBuilder;
use orchestrator_core::{Result, WorkspaceId};

use crate::config::{LABEL_WORKSPACE, OWNER_LABEL, OWNER_VALUE};
use crate::container;
use crate::error::DockerOrchestratorError as E;
use crate::DockerOrchestrator;

impl DockerOrchestrator {
    /// Every container, running or not, carrying `label=value`.
    pub(crate) async fn list(
        &self,
        label: &str,
        value: &str,
    ) -> std::result::Result<Vec<ContainerSummary>, E> {
        let docker = self.docker().await?;
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("label".into(), vec![format!("{label}={value}")]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.call("list containers", docker.list_containers(Some(opts)))
            .await
    }

    /// `residue`: the containers still labelled with workspace `id`.
    pub(crate) async fn containers_of(&self, id: &WorkspaceId) -> Result<Vec<String>> {
        Ok(self
            .list(LABEL_WORKSPACE, id.as_str())
            .await?
            .iter()
            .map(container_description)
            .collect())
    }

    /// `reap_orphans`: removes runbox containers whose owner process is
    /// gone (a zombie counts as gone; an owner on another host is never
    /// judged), or is this process without a live workspace or pool
    /// holding them.
    pub(crate) async fn reap(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for c in self.list(OWNER_LABEL, OWNER_VALUE).await? {
            let Some(cid) = c.id.clone() else { continue };
            if container::is_live(&c) {
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
        Ok(removed)
    }
}

/// `container NAME (SHORT-ID, STATE)`, for residue and reap reports.
fn container_description(c: &ContainerSummary) -> String {
    let name = c
        .names
        .as_ref()
        .and_then(|n| n.first().cloned())
        .unwrap_or_default();
    let id: String = c.id.clone().unwrap_or_default().chars().take(12).collect();
    let state = c.state.as_ref().map(|s| s.to_string()).unwrap_or_default();
    format!("container {} ({id}, {state})", name.trim_start_matches('/'))
}

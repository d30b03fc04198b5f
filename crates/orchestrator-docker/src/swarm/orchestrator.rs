//! `impl Orchestrator for SwarmOrchestrator`: the workspace's life is the
//! swarm's (`lifecycle`, `reap`); commands, copies and background
//! processes are the docker engine's, on the task's node; errors name the
//! swarm backend.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orchestrator_core::{
    async_trait, Availability, Capabilities, CommandSpec, Error, ExecOutput, IsolationReport,
    LimitReport, Orchestrator, ProcessId, ProcessSnapshot, ResourceLimits, Result, SandboxPath,
    WorkspaceId, WorkspaceSpec,
};

use super::{SwarmOrchestrator, BACKEND_NAME};
use crate::container::lock;
use crate::isolation::NO_NEW_PRIVS;

/// An error of the docker engine as the swarm backend's.
fn rebrand<T>(r: Result<T>) -> Result<T> {
    r.map_err(|e| match e {
        Error::Unavailable { backend, reason } if backend == crate::BACKEND_NAME => {
            Error::Unavailable {
                backend: BACKEND_NAME.into(),
                reason,
            }
        }
        Error::Backend { backend, source } if backend == crate::BACKEND_NAME => Error::Backend {
            backend: BACKEND_NAME.into(),
            source,
        },
        e => e,
    })
}

impl SwarmOrchestrator {
    /// The managers' view: Available when every node is ready, Degraded
    /// saying how many are when some are not, Unavailable when no manager
    /// answers or no node is ready.
    async fn availability(&self) -> Availability {
        let budget = self.shared.config.docker.availability_timeout;
        let listed = self
            .shared
            .managers
            .call_within("list nodes", budget, |d| async move {
                d.list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
                    .await
            })
            .await;
        let nodes: Vec<super::NodeView> = match listed {
            Ok(n) => n
                .iter()
                .map(|n| super::NodeView::of(n, &self.shared.config.endpoint_label))
                .collect(),
            Err(e) => {
                return Availability::unavailable(format!(
                    "no swarm manager answered ({}): {e}",
                    self.shared.managers.describe()
                ))
            }
        };
        let ready: Vec<&super::NodeView> = nodes.iter().filter(|n| n.ready && n.active).collect();
        let not_ready: Vec<String> = nodes
            .iter()
            .filter(|n| !(n.ready && n.active))
            .map(|n| format!("{} {}", n.name(), n.state))
            .collect();
        if ready.is_empty() {
            return Availability::unavailable(format!(
                "no swarm node is ready ({})",
                not_ready.join(", ")
            ));
        }
        if not_ready.is_empty() {
            Availability::Available
        } else {
            Availability::degraded(format!(
                "{} of {} swarm nodes ready; not ready: {}",
                ready.len(),
                nodes.len(),
                not_ready.join(", ")
            ))
        }
    }
}

impl SwarmOrchestrator {
    /// Whether the daemon running `id` gives commands no_new_privs (its
    /// `no-new-privileges` option), and the node's name.
    async fn node_sets_no_new_privs(&self, id: &WorkspaceId) -> Result<(bool, String)> {
        let ws = self.engine.ws(id)?;
        let ctx = self.engine.ctx(&ws).await?;
        let node = ws
            .route
            .as_ref()
            .map_or_else(String::new, |r| r.node.clone());
        if let Some(known) = lock(&self.shared.no_new_privs).get(&ctx.host) {
            return Ok((*known, node));
        }
        let (code, _, _) = crate::exec::helper(
            &ctx,
            "grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status",
            &[],
        )
        .await?;
        let enforced = code == 0;
        lock(&self.shared.no_new_privs).insert(ctx.host.clone(), enforced);
        Ok((enforced, node))
    }
}

#[async_trait]
impl Orchestrator for SwarmOrchestrator {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    /// The docker engine's, without bind mounts (a host path names the
    /// node's filesystem).
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            mounts: false,
            ..self.engine.what_it_can_do()
        }
    }

    async fn is_available(&self) -> Availability {
        self.availability().await
    }

    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        rebrand(self.create(spec).await)
    }

    async fn apply_resource_limits(
        &self,
        workspace: &WorkspaceId,
        requested: &ResourceLimits,
    ) -> Result<LimitReport> {
        rebrand(self.apply_limits(workspace, requested).await)
    }

    async fn copy_to(
        &self,
        workspace: &WorkspaceId,
        source: &Path,
        dest: &SandboxPath,
    ) -> Result<()> {
        rebrand(self.engine.upload(workspace, source, dest).await)
    }

    async fn copy_from(
        &self,
        workspace: &WorkspaceId,
        source: &SandboxPath,
        dest: &Path,
    ) -> Result<()> {
        rebrand(self.engine.download(workspace, source, dest).await)
    }

    async fn run_command(&self, workspace: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput> {
        rebrand(self.engine.run_foreground(workspace, cmd).await)
    }

    async fn start_background(
        &self,
        workspace: &WorkspaceId,
        cmd: &CommandSpec,
    ) -> Result<ProcessId> {
        rebrand(self.engine.spawn_background(workspace, cmd).await)
    }

    async fn process_status(
        &self,
        workspace: &WorkspaceId,
        process: &ProcessId,
    ) -> Result<ProcessSnapshot> {
        rebrand(self.engine.snapshot(workspace, process))
    }

    async fn wait_process(
        &self,
        workspace: &WorkspaceId,
        process: &ProcessId,
        at_most: Option<Duration>,
    ) -> Result<Option<ExecOutput>> {
        rebrand(self.engine.wait_for(workspace, process, at_most).await)
    }

    async fn stop(&self, workspace: &WorkspaceId, process: Option<&ProcessId>) -> Result<()> {
        rebrand(self.engine.stop_processes(workspace, process).await)
    }

    async fn cleanup(&self, workspace: &WorkspaceId) -> Result<()> {
        rebrand(self.remove_workspace(workspace).await)
    }

    fn workspace_path(&self, _workspace: &WorkspaceId) -> Option<PathBuf> {
        None
    }

    async fn residue(&self, workspace: &WorkspaceId) -> Result<Vec<String>> {
        rebrand(self.residue_of(workspace).await)
    }

    /// The docker engine's report, with no_new_privs only where the node
    /// enforces it: a service on API 1.41 cannot ask for it, the node
    /// daemon's `no-new-privileges` option gives it (asked once per node).
    async fn isolation(&self, workspace: &WorkspaceId) -> Result<IsolationReport> {
        let mut r = rebrand(self.engine.isolation_of(workspace).await)?;
        let (enforced, node) = rebrand(self.node_sets_no_new_privs(workspace).await)?;
        if !enforced {
            r.enforced_by.retain(|m| *m != NO_NEW_PRIVS);
            let note = format!(
                "node {node} runs commands without no_new_privs: set \"no-new-privileges\": true in its daemon.json"
            );
            r.note = Some(match r.note.take() {
                Some(n) => format!("{n}; {note}"),
                None => note,
            });
        }
        Ok(r)
    }

    async fn reap_orphans(&self) -> Result<Vec<String>> {
        rebrand(self.reap().await)
    }
}

//! `run_command`: one command in the foreground, from its spec to its
//! [`ExecOutput`], with its session killed if the caller drops the future
//! before the command ended.

use orchestrator_core::{CommandSpec, ExecOutput, Result, WorkspaceId};

use super::kill::kill_session;
use super::{finish, run, Ctx};
use crate::DockerOrchestrator;

/// Kills a command's session when a `run_command` future is dropped before
/// the command ended.
struct KillOnDrop {
    ctx: Option<Ctx>,
    tag: String,
}

impl KillOnDrop {
    fn disarm(&mut self) {
        self.ctx = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                let tag = std::mem::take(&mut self.tag);
                h.spawn(async move {
                    if let Err(e) = kill_session(&ctx, &tag).await {
                        tracing::warn!(error = %e, "cannot kill the command of a dropped run_command");
                    }
                });
            }
        }
    }
}

impl DockerOrchestrator {
    /// `run_command`: runs `cmd` in workspace `id` until it ends.
    pub(crate) async fn run_foreground(
        &self,
        id: &WorkspaceId,
        cmd: &CommandSpec,
    ) -> Result<ExecOutput> {
        let (_, ctx, plan, capture) = self.prepare(id, cmd).await?;
        let mut guard = KillOnDrop {
            ctx: Some(ctx.clone()),
            tag: plan.tag.clone(),
        };
        let raw = ctx.unless_lost(run(&ctx, &plan, &capture, None)).await;
        guard.disarm();
        let out = finish(&ctx, &plan, raw?, &capture).await?;
        tracing::debug!(workspace = %id, status = %out.status, wall = ?out.wall_time, "command ended");
        Ok(out)
    }
}

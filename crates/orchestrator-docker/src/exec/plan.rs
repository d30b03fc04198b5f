//! Resolving a [`CommandSpec`] against its workspace into an [`ExecPlan`]:
//! the core's resolution (environment, timeout, output cap), the working
//! directory inside the container, the rlimits, and the wrapper invocation
//! that carries them into the container.

use std::sync::{Arc, Mutex};

use orchestrator_core::exec::{OutputCapture, ResolvedCommand, DEFAULT_PATH};
use orchestrator_core::{CommandSpec, Result, WorkspaceId};

use super::Ctx;
use crate::container::{lock, WORKSPACE_DIR};
use crate::limits::{self, ExecRlimits};
use crate::scripts;
use crate::workspace::Ws;
use crate::DockerOrchestrator;

/// One command, fully resolved.
#[derive(Debug)]
pub(crate) struct ExecPlan {
    /// Names the command's session for the killer.
    pub tag: String,
    pub cmd: ResolvedCommand,
    /// Absolute working directory inside the container.
    pub workdir: String,
    pub rlimits: ExecRlimits,
}

impl DockerOrchestrator {
    /// What running `cmd` in workspace `id` needs: the workspace, how to
    /// reach its container, the plan and an empty capture.
    pub(crate) async fn prepare(
        &self,
        id: &WorkspaceId,
        cmd: &CommandSpec,
    ) -> Result<(Arc<Ws>, Ctx, ExecPlan, Arc<Mutex<OutputCapture>>)> {
        let ws = self.ws(id)?;
        let ctx = self.ctx(&ws).await?;
        let plan = self.plan(&ws, &ctx, cmd).await?;
        let capture = OutputCapture::for_command(&plan.cmd);
        Ok((ws, ctx, plan, Arc::new(Mutex::new(capture))))
    }

    /// Resolves a command into an exec plan.
    async fn plan(&self, ws: &Ws, ctx: &Ctx, cmd: &CommandSpec) -> Result<ExecPlan> {
        let workdir = match cmd.workdir() {
            Some(w) if !w.is_root() => self.resolve(ctx, "dir", w).await?,
            _ => WORKSPACE_DIR.to_string(),
        };
        let limits = lock(&ws.limits).clone();
        Ok(ExecPlan {
            tag: format!("x{}", self.unique()),
            cmd: ResolvedCommand::new(cmd, &limits, WORKSPACE_DIR),
            workdir,
            rlimits: limits::exec_rlimits(&limits),
        })
    }
}

pub(super) fn wrapper_argv(plan: &ExecPlan) -> Vec<String> {
    let env = &plan.cmd.env;
    let lookup = env
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    let mut v = vec![
        "sh".to_string(),
        "-c".to_string(),
        scripts::WRAPPER.to_string(),
        "runbox-exec".to_string(),
        plan.tag.clone(),
        plan.rlimits.nofile.clone(),
        plan.rlimits.fsize_blocks.clone(),
        plan.rlimits.cpu_secs.clone(),
        lookup,
        env.len().to_string(),
    ];
    v.extend(env.iter().map(|(k, val)| format!("{k}={val}")));
    v.extend(plan.cmd.argv.iter().cloned());
    v
}

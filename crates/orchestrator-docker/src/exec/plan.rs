//! Resolving a [`CommandSpec`] against its workspace into an [`ExecPlan`]:
//! working directory, base environment, timeout and output cap, rlimits,
//! and the wrapper invocation that carries them into the container.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::{paths, CommandSpec, OutputSink, Result, WorkspaceId};

use super::{Capture, Ctx};
use crate::container::{lock, WORKSPACE_DIR};
use crate::limits::{self, ExecRlimits};
use crate::scripts;
use crate::workspace::Ws;
use crate::DockerOrchestrator;

/// PATH of the wrapper and the helpers (the command gets the caller's).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Output kept per stream when no output limit is set (as native).
pub(crate) const DEFAULT_OUTPUT_CAP: u64 = 64 << 20;

/// The environment a command starts from, under the caller's variables
/// (also the container's own, for anything started outside runbox's
/// wrapper).
pub(crate) fn base_env() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("PATH".to_string(), DEFAULT_PATH.to_string()),
        ("HOME".to_string(), WORKSPACE_DIR.to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
    ])
}

/// One command, fully resolved.
#[derive(Debug)]
pub(crate) struct ExecPlan {
    pub tag: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Absolute working directory inside the container.
    pub workdir: String,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    pub sink: Option<OutputSink>,
    pub rlimits: ExecRlimits,
}

impl DockerOrchestrator {
    /// What running `cmd` in workspace `id` needs: the workspace, how to
    /// reach its container, the plan and an empty capture.
    pub(crate) async fn prepare(
        &self,
        id: &WorkspaceId,
        cmd: &CommandSpec,
    ) -> Result<(Arc<Ws>, Ctx, ExecPlan, Arc<Mutex<Capture>>)> {
        let ws = self.ws(id)?;
        cmd.validate()?;
        let ctx = self.ctx(&ws).await?;
        let (plan, capture) = self.plan(&ws, &ctx, cmd).await?;
        Ok((ws, ctx, plan, Arc::new(Mutex::new(capture))))
    }

    /// Resolves a validated command into an exec plan.
    async fn plan(&self, ws: &Ws, ctx: &Ctx, cmd: &CommandSpec) -> Result<(ExecPlan, Capture)> {
        let workdir = match &cmd.workdir {
            None => WORKSPACE_DIR.to_string(),
            Some(w) => {
                let rel = paths::sandbox_relative(w)?;
                if rel.as_os_str().is_empty() {
                    WORKSPACE_DIR.to_string()
                } else {
                    self.resolve(ctx, "dir", w, &rel).await?
                }
            }
        };
        let limits = lock(&ws.limits).clone();
        let mut env = base_env();
        for (k, v) in &cmd.env {
            env.insert(k.clone(), v.clone());
        }
        let timeout = match (cmd.timeout, limits.wall_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // A requested limit stops the command; without one, what is kept is
        // still bounded (the rest is dropped, the command goes on).
        let capture = match (cmd.output_limit, limits.output_bytes) {
            (Some(a), Some(b)) => Capture::new(a.min(b), true),
            (None, None) => Capture::new(DEFAULT_OUTPUT_CAP, false),
            (a, b) => Capture::new(a.or(b).unwrap_or(DEFAULT_OUTPUT_CAP), true),
        };
        Ok((
            ExecPlan {
                tag: format!("x{}", self.unique()),
                argv: cmd.argv.clone(),
                env,
                workdir,
                stdin: cmd.stdin.clone(),
                timeout,
                sink: cmd.output.clone(),
                rlimits: limits::exec_rlimits(&limits),
            },
            capture,
        ))
    }
}

pub(super) fn wrapper_argv(plan: &ExecPlan) -> Vec<String> {
    let lookup = plan
        .env
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
        plan.env.len().to_string(),
    ];
    v.extend(plan.env.iter().map(|(k, val)| format!("{k}={val}")));
    v.extend(plan.argv.iter().cloned());
    v
}

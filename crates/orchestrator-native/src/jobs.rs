//! The commands of a workspace: foreground runs, background processes and
//! their status, waiting for them, stopping them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::{
    CommandSpec, Error, ExecOutput, ProcessId, ProcessSnapshot, Result, WorkspaceId, STOP_DEADLINE,
};
use tokio::sync::watch;

use crate::error::NativeOrchestratorError;
use crate::process::capture::Shared;
use crate::process::drive::{drive, not_started};
use crate::process::group::Group;
use crate::process::spawn::{start, SpawnPlan};
use crate::procfs;
use crate::sync::{blocking, lock};
use crate::workspace::Workspace;
use crate::NativeOrchestrator;

/// A background process.
#[derive(Debug)]
pub(crate) struct Background {
    /// Its process tree; `None` when it never started.
    pub group: Option<Group>,
    pub shared: Arc<Shared>,
    /// Its result, once it ended.
    pub result: watch::Receiver<Option<ExecOutput>>,
}

impl Background {
    /// Its process tree while it runs.
    pub(crate) fn running_group(&self) -> Option<Group> {
        self.group
            .clone()
            .filter(|_| self.result.borrow().is_none())
    }
}

impl NativeOrchestrator {
    /// The workspace `id` (which must still exist) and the plan to start
    /// `cmd` in it.
    fn plan(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<(Arc<Workspace>, SpawnPlan)> {
        let ws = self.get_existing(id)?;
        let limits = lock(&ws.limits).clone();
        let sandbox = ws.sandbox()?;
        let born_in_cgroup = ws.init_seated();
        let mut plan = SpawnPlan::new(
            &ws.dir,
            cmd,
            &limits,
            self.rlimits(&limits),
            ws.cgroup(),
            sandbox,
        )?;
        plan.born_in_cgroup = born_in_cgroup;
        Ok((ws, plan))
    }

    fn background(ws: &Workspace, pid: &ProcessId) -> Result<Arc<Background>> {
        lock(&ws.background)
            .get(pid)
            .cloned()
            .ok_or_else(|| Error::process_not_found(pid))
    }

    /// `run_command`.
    pub(crate) async fn run_foreground(
        &self,
        id: &WorkspaceId,
        cmd: &CommandSpec,
    ) -> Result<ExecOutput> {
        let (ws, plan) = self.plan(id, cmd)?;
        let _busy = crate::pool::Busy::new(self);
        let running = match start(plan).await? {
            Ok(r) => r,
            Err(status) => return Ok(not_started(status)),
        };
        // Host commands are tracked by group for `stop`; a sandbox's are
        // all reached through its init.
        let host = running.group.host();
        if let Some(pgid) = host {
            ws.note_spawn(pgid);
            lock(&ws.foreground).insert(pgid);
        }
        let out = drive(running).await;
        if let Some(pgid) = host {
            lock(&ws.foreground).remove(&pgid);
        }
        Ok(out)
    }

    /// `start_background`.
    pub(crate) async fn spawn_background(
        &self,
        id: &WorkspaceId,
        cmd: &CommandSpec,
    ) -> Result<ProcessId> {
        let (ws, plan) = self.plan(id, cmd)?;
        let pid = ProcessId::new(format!(
            "p{}",
            ws.next_process.fetch_add(1, Ordering::Relaxed)
        ))?;
        let (tx, rx) = watch::channel(None);
        let bg = match start(plan).await? {
            Ok(running) => {
                if let Some(pgid) = running.group.host() {
                    ws.note_spawn(pgid);
                }
                let bg = Background {
                    group: Some(running.group.clone()),
                    shared: running.shared.clone(),
                    result: rx,
                };
                tokio::spawn(async move {
                    let out = drive(running).await;
                    let _ = tx.send(Some(out));
                });
                bg
            }
            Err(status) => {
                let _ = tx.send(Some(not_started(status)));
                Background {
                    group: None,
                    shared: Arc::new(Shared::empty()),
                    result: rx,
                }
            }
        };
        lock(&ws.background).insert(pid.clone(), Arc::new(bg));
        Ok(pid)
    }

    /// `process_status`.
    pub(crate) fn background_status(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
    ) -> Result<ProcessSnapshot> {
        let bg = Self::background(&*self.get(id)?, pid)?;
        let done = bg.result.borrow().as_ref().map(ProcessSnapshot::from);
        Ok(done.unwrap_or_else(|| bg.shared.snapshot(None)))
    }

    /// `wait_process`.
    pub(crate) async fn wait_background(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
        timeout: Option<Duration>,
    ) -> Result<Option<ExecOutput>> {
        let bg = Self::background(&*self.get(id)?, pid)?;
        let mut rx = bg.result.clone();
        let wait = async move {
            rx.wait_for(|v| v.is_some())
                .await
                .ok()
                .and_then(|v| v.clone())
        };
        Ok(match timeout {
            Some(t) => tokio::time::timeout(t, wait).await.ok().flatten(),
            None => wait.await,
        })
    }

    /// `stop`: one background process, or every process of the workspace.
    /// Waits for the killed processes at most [`STOP_DEADLINE`] in all; one
    /// still running then is an error naming it.
    pub(crate) async fn halt(&self, id: &WorkspaceId, pid: Option<&ProcessId>) -> Result<()> {
        let ws = self.get(id)?;
        let targets: Vec<(ProcessId, Arc<Background>)> = match pid {
            Some(p) => vec![(p.clone(), Self::background(&ws, p)?)],
            None => lock(&ws.background)
                .iter()
                .map(|(p, b)| (p.clone(), b.clone()))
                .collect(),
        };
        {
            let ws = ws.clone();
            let groups: Vec<Group> = targets
                .iter()
                .filter_map(|(_, b)| b.running_group())
                .collect();
            let all = pid.is_none();
            blocking(move || {
                for g in groups {
                    g.kill_tree();
                }
                if all {
                    Self::kill_everything(&ws);
                }
                Ok(())
            })
            .await?;
        }
        let deadline = tokio::time::Instant::now() + STOP_DEADLINE;
        for (pid, b) in targets {
            let mut rx = b.result.clone();
            if tokio::time::timeout_at(deadline, rx.wait_for(|v| v.is_some()))
                .await
                .is_ok()
            {
                continue;
            }
            // The driver has not finished: a slow drain of its pipes, or a
            // process that SIGKILL has not ended (uninterruptible sleep).
            // Only the latter is an error.
            let Some(group) = b.running_group() else {
                continue;
            };
            // A sandbox's command has no host group to look at: its init
            // not reporting the end is the evidence.
            let (pgid, alive) = match group.host() {
                Some(pgid) => (
                    pgid.get(),
                    blocking(move || Ok(procfs::live_tree_of_group(pgid)))
                        .await?
                        .iter()
                        .map(|p| p.get())
                        .collect(),
                ),
                None => (0, Vec::new()),
            };
            if group.host().is_none() || !alive.is_empty() {
                return Err(NativeOrchestratorError::Unkillable {
                    process: pid.to_string(),
                    pgid,
                    alive,
                    waited: STOP_DEADLINE,
                }
                .into());
            }
        }
        Ok(())
    }
}

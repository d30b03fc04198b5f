//! Background processes: starting a command detached from its caller,
//! reading its output and status so far, waiting for it, and stopping one
//! or all of a workspace's.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::exec::OutputCapture;
use orchestrator_core::{
    CommandSpec, Error, ExecOutput, ExitStatus, ProcessId, ProcessSnapshot, Result, StartFailure,
    WorkspaceId, STOP_DEADLINE,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::container::lock;
use crate::error::DockerOrchestratorError as E;
use crate::exec;
use crate::workspace::Ws;
use crate::DockerOrchestrator;

/// A background process.
#[derive(Debug)]
pub(crate) struct Bg {
    capture: Arc<Mutex<OutputCapture>>,
    stop_tx: watch::Sender<bool>,
    done: watch::Receiver<Option<ExecOutput>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Bg {
    /// Stops driving the process (its container is about to go).
    pub fn abort(&self) {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
    }

    /// Waits (up to `timeout`, if any) until the process ended.
    async fn wait_done(&self, timeout: Option<Duration>) -> Option<ExecOutput> {
        let mut rx = self.done.clone();
        let wait = async {
            loop {
                if let Some(o) = rx.borrow_and_update().clone() {
                    return Some(o);
                }
                if rx.changed().await.is_err() {
                    return rx.borrow().clone();
                }
            }
        };
        match timeout {
            None => wait.await,
            Some(t) => tokio::time::timeout(t, wait).await.ok().flatten(),
        }
    }
}

fn proc(ws: &Ws, pid: &ProcessId) -> Result<Arc<Bg>> {
    lock(&ws.procs)
        .get(pid)
        .cloned()
        .ok_or_else(|| Error::process_not_found(pid))
}

impl DockerOrchestrator {
    /// `start_background`: starts `cmd` driven by a task of its own.
    pub(crate) async fn spawn_background(
        &self,
        id: &WorkspaceId,
        cmd: &CommandSpec,
    ) -> Result<ProcessId> {
        let (ws, ctx, plan, capture) = self.prepare(id, cmd).await?;
        let n = ws.next_proc.fetch_add(1, Ordering::Relaxed) + 1;
        let pid = ProcessId::new(format!("p{n}"))?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(None);
        let cap2 = capture.clone();
        let task = tokio::spawn(async move {
            let r = match ctx
                .unless_lost(exec::run(&ctx, &plan, &cap2, Some(stop_rx)))
                .await
            {
                Ok(raw) => exec::finish(&ctx, &plan, raw, &cap2).await,
                Err(e) => Err(e),
            };
            let out = r.unwrap_or_else(|e| {
                let status = ExitStatus::FailedToStart {
                    reason: StartFailure::Other,
                    message: e.to_string(),
                };
                lock(&cap2)
                    .clone()
                    .finish(status, Duration::ZERO, None, None)
            });
            let _ = done_tx.send(Some(out));
        });
        let bg = Arc::new(Bg {
            capture,
            stop_tx,
            done: done_rx,
            task: Mutex::new(Some(task)),
        });
        lock(&ws.procs).insert(pid.clone(), bg);
        Ok(pid)
    }

    /// `process_status`: the status (once ended) and the output so far.
    pub(crate) fn snapshot(&self, id: &WorkspaceId, pid: &ProcessId) -> Result<ProcessSnapshot> {
        let ws = self.ws(id)?;
        let bg = proc(&ws, pid)?;
        if let Some(out) = &*bg.done.borrow() {
            return Ok(ProcessSnapshot::from(out));
        }
        let so_far = lock(&bg.capture).snapshot(None);
        Ok(so_far)
    }

    /// `wait_process`: the result once the process ended, `None` when
    /// `timeout` passed first.
    pub(crate) async fn wait_for(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
        timeout: Option<Duration>,
    ) -> Result<Option<ExecOutput>> {
        let ws = self.ws(id)?;
        let bg = proc(&ws, pid)?;
        Ok(bg.wait_done(timeout).await)
    }

    /// `stop`: kills one background process, or everything runbox started
    /// in the workspace, and waits at most [`STOP_DEADLINE`] in all for the
    /// ends to be reported; a process still running then is an error naming
    /// it.
    pub(crate) async fn stop_processes(
        &self,
        id: &WorkspaceId,
        pid: Option<&ProcessId>,
    ) -> Result<()> {
        let ws = self.ws(id)?;
        let stopped: Vec<(ProcessId, Arc<Bg>)> = match pid {
            Some(pid) => vec![(pid.clone(), proc(&ws, pid)?)],
            None => lock(&ws.procs)
                .iter()
                .map(|(p, bg)| (p.clone(), bg.clone()))
                .collect(),
        };
        for (_, bg) in &stopped {
            let _ = bg.stop_tx.send(true);
        }
        if pid.is_none() {
            let ctx = self.ctx(&ws).await?;
            exec::kill_all(&ctx).await?;
        }
        let until = tokio::time::Instant::now() + STOP_DEADLINE;
        let mut running = Vec::new();
        for (p, bg) in &stopped {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if bg.wait_done(Some(left)).await.is_none() {
                running.push(p.to_string());
            }
        }
        if !running.is_empty() {
            return Err(E::Helper {
                container: ws.container.clone(),
                reason: format!(
                    "process {} did not end within {STOP_DEADLINE:?} of being stopped",
                    running.join(", ")
                ),
            }
            .into());
        }
        Ok(())
    }
}

//! Background processes: starting a command detached from its caller,
//! reading its output and status so far, waiting for it, and stopping one
//! or all of a workspace's.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::{
    CommandSpec, Error, ExecOutput, ExitStatus, ProcessId, ProcessSnapshot, Result, StartFailure,
    WorkspaceId,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::container::lock;
use crate::error::DockerOrchestratorError as E;
use crate::exec::{self, Capture};
use crate::workspace::Ws;
use crate::DockerOrchestrator;

/// How long stop waits for a stopped process to be reported ended.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// A background process.
#[derive(Debug)]
pub(crate) struct Bg {
    capture: Arc<Mutex<Capture>>,
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
            let r = match exec::run(&ctx, &plan, &cap2, Some(stop_rx)).await {
                Ok(raw) => exec::finish(&ctx, &plan, raw, &cap2).await,
                Err(e) => Err(e),
            };
            let out = r.unwrap_or_else(|e| {
                let status = ExitStatus::FailedToStart {
                    reason: StartFailure::Other,
                    message: e.to_string(),
                };
                lock(&cap2).output(status, Duration::ZERO)
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
        if let Some(out) = bg.done.borrow().clone() {
            return Ok(ProcessSnapshot {
                status: Some(out.status),
                stdout: out.stdout,
                stderr: out.stderr,
                stdout_truncated: out.stdout_truncated,
                stderr_truncated: out.stderr_truncated,
            });
        }
        let c = lock(&bg.capture);
        Ok(ProcessSnapshot {
            status: None,
            stdout: c.stdout.data().to_vec(),
            stderr: c.stderr.data().to_vec(),
            stdout_truncated: c.stdout.truncated(),
            stderr_truncated: c.stderr.truncated(),
        })
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
    /// in the workspace, and waits for the end to be reported.
    pub(crate) async fn stop_processes(
        &self,
        id: &WorkspaceId,
        pid: Option<&ProcessId>,
    ) -> Result<()> {
        let ws = self.ws(id)?;
        match pid {
            Some(pid) => {
                let bg = proc(&ws, pid)?;
                if bg.done.borrow().is_some() {
                    return Ok(());
                }
                let _ = bg.stop_tx.send(true);
                if bg.wait_done(Some(STOP_WAIT)).await.is_none() {
                    return Err(E::Helper {
                        container: ws.container.clone(),
                        reason: format!(
                            "process {pid} did not end within {STOP_WAIT:?} of being stopped"
                        ),
                    }
                    .into());
                }
            }
            None => {
                let all: Vec<Arc<Bg>> = lock(&ws.procs).values().cloned().collect();
                for bg in &all {
                    let _ = bg.stop_tx.send(true);
                }
                let ctx = self.ctx(&ws).await?;
                exec::kill_all(&ctx).await?;
                for bg in &all {
                    let _ = bg.wait_done(Some(STOP_WAIT)).await;
                }
            }
        }
        Ok(())
    }
}

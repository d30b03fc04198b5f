//! One command from start to end, as a real backend runs it: where it runs
//! and with what environment, its capped output with live emission, the wall
//! timeout, the kill of its whole group when it ends, and how its end is
//! reported. A [`Job`] is also what the fake keeps per background process.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::fs::{Outside, SANDBOX_ROOT};
use super::machine::{run_as, Ended, ForkError, Machine, SIGKILL};
use super::shell::{programs, Ctx};
use crate::error::{Error, Result};
use crate::exec::{OutputCapture, ResolvedCommand};
use crate::types::{CommandSpec, ExecOutput, ExitStatus, ProcessSnapshot, StartFailure, Stream};

/// A command's captured output, and whether the command already ended
/// (its leftover processes' writes are dropped then).
struct Captured {
    output: OutputCapture,
    closed: bool,
}

/// A started command: its output so far and, once it ended, its result.
pub(crate) struct Job {
    capture: Mutex<Captured>,
    done: watch::Sender<Option<ExecOutput>>,
    group: Mutex<Option<u32>>,
}

impl Job {
    fn new(output: OutputCapture) -> Arc<Self> {
        Arc::new(Self {
            capture: Mutex::new(Captured {
                output,
                closed: false,
            }),
            done: watch::channel(None).0,
            group: Mutex::new(None),
        })
    }

    /// A job that already ended with `output` (the scripted mode).
    pub(crate) fn finished(output: ExecOutput) -> Arc<Self> {
        let job = Self::new(OutputCapture::empty());
        job.done.send_replace(Some(output));
        job
    }

    fn capture(&self) -> MutexGuard<'_, Captured> {
        self.capture.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps what fits under the cap and hands it to the live sink. False
    /// when an enforced cap was passed: the writer's group must be stopped.
    pub(crate) fn write(&self, stream: Stream, data: &[u8]) -> bool {
        let mut c = self.capture();
        c.closed || !c.output.push(stream, data)
    }

    /// Output so far and, once it ended, its status.
    pub(crate) fn snapshot(&self) -> ProcessSnapshot {
        // The capture's lock first: `drive` holds it while it moves the
        // output into the result, so the result is seen once it is taken.
        let c = self.capture();
        if let Some(o) = self.done.borrow().as_ref() {
            return ProcessSnapshot::from(o);
        }
        c.output.snapshot(None)
    }

    /// Its result once it ended, waiting at most `timeout`.
    pub(crate) async fn wait(&self, timeout: Option<Duration>) -> Option<ExecOutput> {
        let mut rx = self.done.subscribe();
        let ended = async move {
            rx.wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|o| o.clone())
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, ended).await.ok().flatten(),
            None => ended.await,
        }
    }

    /// The process group it runs in, once it started.
    pub(crate) fn group(&self) -> Option<u32> {
        *self.group.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Everything a command needs to start, checked against the workspace.
pub(crate) struct Launch {
    cmd: ResolvedCommand,
    cwd: PathBuf,
}

/// Resolves `cmd` against the workspace's files and limits: its working
/// directory (PathEscapesSandbox, or NotFound when missing), environment,
/// timeout and output cap. Returns the launch and the job that will hold its
/// output.
pub(crate) fn plan(machine: &Machine, cmd: &CommandSpec) -> Result<(Launch, Arc<Job>)> {
    let st = machine.lock();
    let cmd = ResolvedCommand::new(cmd, &st.limits, SANDBOX_ROOT);
    let cwd = match &cmd.workdir {
        None => PathBuf::new(),
        Some(w) => {
            let cwd = st
                .fs
                .resolve(&PathBuf::new(), w.as_path())
                .map_err(|o| escape(w.as_str(), o))?;
            if !st.fs.is_dir(&cwd) {
                return Err(Error::NotFound {
                    what: "working directory",
                    id: w.to_string(),
                });
            }
            cwd
        }
    };
    let job = Job::new(OutputCapture::for_command(&cmd));
    Ok((Launch { cmd, cwd }, job))
}

/// The error for a sandbox path that leads outside.
pub(crate) fn escape(path: &str, why: Outside) -> Error {
    Error::PathEscapesSandbox {
        path: PathBuf::from(path),
        reason: match why {
            Outside::Escapes => "a symlink leads outside the sandbox".to_string(),
            Outside::Loop => "too many levels of symbolic links".to_string(),
        },
    }
}

/// Kills a group when dropped, so a dropped `run_command` future leaves no
/// process behind.
struct GroupGuard<'a>(&'a Machine, u32);

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        self.0.kill_group(self.1, SIGKILL);
    }
}

/// Runs a planned command to its end and reports it; `job` holds its output
/// meanwhile and its result afterwards.
pub(crate) async fn drive(machine: Arc<Machine>, launch: Launch, job: Arc<Job>) -> ExecOutput {
    let started = Instant::now();
    let cpu = Arc::new(Mutex::new(Duration::ZERO));
    let status = run(&machine, launch, &job, &cpu, started).await;
    let cpu_time = *cpu.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = job.capture();
    c.closed = true;
    let status = if c.output.exceeded() {
        ExitStatus::OutputLimitExceeded
    } else {
        status
    };
    let output = std::mem::replace(&mut c.output, OutputCapture::empty()).finish(
        status,
        started.elapsed(),
        Some(cpu_time),
        None,
    );
    job.done.send_replace(Some(output.clone()));
    output
}

async fn run(
    machine: &Arc<Machine>,
    launch: Launch,
    job: &Arc<Job>,
    cpu: &Arc<Mutex<Duration>>,
    started: Instant,
) -> ExitStatus {
    let program = launch.cmd.argv[0].clone();
    if !programs::exists(&program) {
        return ExitStatus::FailedToStart {
            reason: StartFailure::NotFound,
            message: format!("{program}: No such file or directory"),
        };
    }
    let pid = match machine.spawn(None, &program) {
        Ok(p) => p,
        Err(e) => {
            return ExitStatus::FailedToStart {
                reason: StartFailure::Other,
                message: match e {
                    ForkError::Limit => "fork: Resource temporarily unavailable".to_string(),
                    ForkError::Closed => "the workspace is being cleaned up".to_string(),
                },
            }
        }
    };
    let group = pid.group;
    *job.group.lock().unwrap_or_else(|p| p.into_inner()) = Some(group);
    let _guard = GroupGuard(machine, group);
    let oom_before = machine.oom_kills();
    let ResolvedCommand {
        argv,
        env,
        stdin,
        timeout,
        ..
    } = launch.cmd;
    let ctx = Ctx::leader(
        machine.clone(),
        &pid,
        launch.cwd,
        env,
        stdin.unwrap_or_default(),
        job,
        cpu,
    );
    let m = machine.clone();
    let task = tokio::spawn(async move { run_as(&m, &pid, ctx.run_argv(argv)).await });
    let ended = match timeout {
        Some(t) => match tokio::time::timeout(t.saturating_sub(started.elapsed()), task).await {
            Ok(r) => r,
            Err(_) => return ExitStatus::TimedOut,
        },
        None => task.await,
    };
    match ended {
        Ok(Ended::Exited(code)) => ExitStatus::Exited(code),
        Ok(Ended::Signaled(SIGKILL)) if machine.oom_kills() > oom_before => {
            ExitStatus::MemoryLimitExceeded
        }
        Ok(Ended::Signaled(sig)) => ExitStatus::Signaled(sig),
        Err(_) => ExitStatus::Signaled(SIGKILL),
    }
}

//! One command from start to end, as a real backend runs it: where it runs
//! and with what environment, its capped output with live emission, the wall
//! timeout, the kill of its whole group when it ends, and how its end is
//! reported. A [`Job`] is also what the fake keeps per background process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::fs::{Outside, SANDBOX_ROOT};
use super::machine::{run_as, Ended, ForkError, Machine, SIGKILL};
use super::shell::{programs, Ctx};
use crate::error::{Error, Result};
use crate::paths::sandbox_relative;
use crate::types::{
    CappedBuffer, CommandSpec, ExecOutput, ExitStatus, OutputSink, ProcessSnapshot, StartFailure,
    Stream,
};

/// The output cap when neither the command nor the workspace sets one; past
/// it output is cut but the command runs on.
const DEFAULT_OUTPUT_CAP: u64 = 64 << 20;

/// The PATH commands get.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A command's captured stdout and stderr.
pub(crate) struct Capture {
    stdout: CappedBuffer,
    stderr: CappedBuffer,
    enforce: bool,
    exceeded: bool,
    closed: bool,
    sink: Option<OutputSink>,
}

impl Capture {
    fn new(cap: u64, enforce: bool, sink: Option<OutputSink>) -> Self {
        Self {
            stdout: CappedBuffer::new(cap),
            stderr: CappedBuffer::new(cap),
            enforce,
            exceeded: false,
            closed: false,
            sink,
        }
    }

    /// Keeps what fits under the cap and hands it to the live sink. False
    /// when an enforced cap was passed: the writer's group must be stopped.
    pub(crate) fn write(&mut self, stream: Stream, data: &[u8]) -> bool {
        if self.closed {
            return true;
        }
        let buf = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let kept = buf.push(data);
        if let Some(sink) = &self.sink {
            if !kept.is_empty() {
                sink.emit(stream, kept);
            }
        }
        if buf.truncated() && self.enforce {
            self.exceeded = true;
            return false;
        }
        true
    }
}

/// A started command: its output so far and, once it ended, its result.
pub(crate) struct Job {
    capture: Mutex<Capture>,
    done: watch::Sender<Option<ExecOutput>>,
    group: Mutex<Option<u32>>,
}

impl Job {
    fn new(capture: Capture) -> Arc<Self> {
        Arc::new(Self {
            capture: Mutex::new(capture),
            done: watch::channel(None).0,
            group: Mutex::new(None),
        })
    }

    /// A job that already ended with `output` (the scripted mode).
    pub(crate) fn finished(output: ExecOutput) -> Arc<Self> {
        let job = Self::new(Capture::new(0, false, None));
        job.done.send_replace(Some(output));
        job
    }

    pub(crate) fn capture(&self) -> MutexGuard<'_, Capture> {
        self.capture.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Output so far and, once it ended, its status.
    pub(crate) fn snapshot(&self) -> ProcessSnapshot {
        if let Some(o) = self.done.borrow().as_ref() {
            return ProcessSnapshot {
                status: Some(o.status.clone()),
                stdout: o.stdout.clone(),
                stderr: o.stderr.clone(),
                stdout_truncated: o.stdout_truncated,
                stderr_truncated: o.stderr_truncated,
            };
        }
        let c = self.capture();
        ProcessSnapshot {
            status: None,
            stdout: c.stdout.data().to_vec(),
            stderr: c.stderr.data().to_vec(),
            stdout_truncated: c.stdout.truncated(),
            stderr_truncated: c.stderr.truncated(),
        }
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

    /// Kills its whole group.
    pub(crate) fn stop(&self, machine: &Machine) {
        let group = *self.group.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = group {
            machine.kill_group(g, SIGKILL);
        }
    }
}

/// Everything a command needs to start, checked against the workspace.
pub(crate) struct Launch {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    stdin: Vec<u8>,
    timeout: Option<Duration>,
}

/// Resolves `cmd` against the workspace's files and limits: its working
/// directory (PathEscapesSandbox, or NotFound when missing), environment,
/// timeout and output cap. Returns the launch and the job that will hold its
/// output.
pub(crate) fn plan(machine: &Machine, cmd: &CommandSpec) -> Result<(Launch, Arc<Job>)> {
    let st = machine.lock();
    let cwd = match &cmd.workdir {
        None => PathBuf::new(),
        Some(w) => {
            let rel = sandbox_relative(w)?;
            let cwd = st
                .fs
                .resolve(&PathBuf::new(), &rel)
                .map_err(|o| escape(w, o))?;
            if !st.fs.is_dir(&cwd) {
                return Err(Error::NotFound {
                    what: "working directory",
                    id: w.clone(),
                });
            }
            cwd
        }
    };
    let limits = &st.limits;
    let cap = min_opt(cmd.output_limit, limits.output_bytes);
    let capture = Capture::new(
        cap.unwrap_or(DEFAULT_OUTPUT_CAP),
        cap.is_some(),
        cmd.output.clone(),
    );
    let mut env = BTreeMap::from([
        ("PATH".to_string(), DEFAULT_PATH.to_string()),
        ("HOME".to_string(), SANDBOX_ROOT.to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
    ]);
    env.extend(cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let launch = Launch {
        argv: cmd.argv.clone(),
        env,
        cwd,
        stdin: cmd.stdin.clone().unwrap_or_default(),
        timeout: min_opt(cmd.timeout, limits.wall_timeout),
    };
    Ok((launch, Job::new(capture)))
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

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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
    let output = {
        let mut c = job.capture();
        c.closed = true;
        let status = if c.exceeded {
            ExitStatus::OutputLimitExceeded
        } else {
            status
        };
        ExecOutput {
            status,
            stdout: c.stdout.data().to_vec(),
            stderr: c.stderr.data().to_vec(),
            stdout_truncated: c.stdout.truncated(),
            stderr_truncated: c.stderr.truncated(),
            wall_time: started.elapsed(),
            cpu_time: Some(cpu_time),
            peak_memory: None,
        }
    };
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
    let program = launch.argv[0].clone();
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
    let ctx = Ctx::leader(
        machine.clone(),
        &pid,
        launch.cwd,
        launch.env,
        launch.stdin,
        job,
        cpu,
    );
    let m = machine.clone();
    let argv = launch.argv;
    let task = tokio::spawn(async move { run_as(&m, &pid, ctx.run_argv(argv)).await });
    let ended = match launch.timeout {
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

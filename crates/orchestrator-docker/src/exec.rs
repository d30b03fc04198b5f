//! Running commands through `docker exec`: the wrapper invocation, the
//! streaming loop (live output, output cap, wall timeout, stop requests),
//! the exact exit code, and killing a command's whole session.
//!
//! Docker cannot kill an exec. Every command runs under
//! [`scripts::WRAPPER`] as the leader of its own session (runc makes each
//! exec a session leader); to end it, a second exec running
//! [`scripts::KILL_SESSION`] kills every process of that session inside the
//! container. When even that exec cannot start (a fork bomb at the pids
//! limit), the pids limit is raised for the moment of the kill.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerUpdateBody, ExecConfig};
use bollard::Docker;
use futures_util::StreamExt;
use orchestrator_core::{CappedBuffer, ExecOutput, ExitStatus, OutputSink, StartFailure, Stream};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::client::deadline;
use crate::error::DockerOrchestratorError as E;
use crate::limits::ExecRlimits;
use crate::scripts;

/// PATH of the wrapper and the helpers (the command gets the caller's).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long output is still read after a kill (a process that left the
/// command's session may hold the stream open).
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// How long to wait for the daemon to report an exec's end.
const EXIT_WAIT: Duration = Duration::from_secs(15);

/// What the exec engine needs to reach one container.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub docker: Docker,
    pub host: String,
    pub container: String,
    pub request_timeout: Duration,
    /// The container's pids limit in force (with the reserve), if any.
    pub pids_limit: Option<i64>,
    /// OOM kills of the container's memory cgroup seen so far.
    pub oom_seen: Arc<Mutex<u64>>,
}

/// Output captured so far (shared with `process_status`).
#[derive(Debug, Default)]
pub(crate) struct Capture {
    pub stdout: CappedBuffer,
    pub stderr: CappedBuffer,
    /// The cap is a requested limit (going over stops the command).
    pub enforce: bool,
}

/// Output kept per stream when no output limit is set (as native).
pub(crate) const DEFAULT_OUTPUT_CAP: u64 = 64 << 20;

impl Capture {
    pub fn new(cap: u64, enforce: bool) -> Self {
        Self {
            stdout: CappedBuffer::new(cap),
            stderr: CappedBuffer::new(cap),
            enforce,
        }
    }
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

/// Why the streaming loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Exited,
    TimedOut,
    OutputCap,
    Stopped,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wrapper_argv(plan: &ExecPlan) -> Vec<String> {
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

/// Waits until the daemon reports the exec ended; its exit code.
async fn exit_code(ctx: &Ctx, exec_id: &str, wait: Duration) -> Result<Option<i64>, E> {
    let until = Instant::now() + wait;
    let mut pause = Duration::from_millis(5);
    loop {
        let info = deadline(
            &ctx.host,
            "inspect exec",
            ctx.request_timeout,
            ctx.docker.inspect_exec(exec_id),
        )
        .await?;
        if info.running != Some(true) {
            return Ok(info.exit_code);
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Creates an exec and starts it attached; returns its id and streams.
async fn create_and_start(ctx: &Ctx, config: ExecConfig) -> Result<(String, StartExecResults), E> {
    let id = deadline(
        &ctx.host,
        "create exec",
        ctx.request_timeout,
        ctx.docker.create_exec(&ctx.container, config),
    )
    .await?
    .id;
    let started = deadline(
        &ctx.host,
        "start exec",
        ctx.request_timeout,
        ctx.docker.start_exec(
            &id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: Some(64 * 1024),
            }),
        ),
    )
    .await?;
    Ok((id, started))
}

/// Runs a short helper script as root and returns (exit code, stdout,
/// stderr). The whole helper has twice the request deadline.
pub(crate) async fn helper(
    ctx: &Ctx,
    script: &str,
    args: &[&str],
) -> Result<(i64, Vec<u8>, Vec<u8>), E> {
    helper_until(ctx, script, args, None).await
}

/// Like [`helper`], but when stdout contains `marker` (the script's last
/// word) the helper counts as done with exit code 0 at once: the daemon
/// can hold a finished exec "running" for seconds while it processes
/// another exec's end, and the killer must not wait for that.
async fn helper_until(
    ctx: &Ctx,
    script: &str,
    args: &[&str],
    marker: Option<&[u8]>,
) -> Result<(i64, Vec<u8>, Vec<u8>), E> {
    let seen = |out: &[u8]| marker.is_some_and(|m| out.windows(m.len()).any(|w| w == m));
    let mut cmd = vec![
        "sh".to_string(),
        "-c".to_string(),
        script.to_string(),
        "runbox-helper".to_string(),
    ];
    cmd.extend(args.iter().map(|s| s.to_string()));
    let config = ExecConfig {
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        env: Some(vec![format!("PATH={DEFAULT_PATH}")]),
        cmd: Some(cmd),
        user: Some("0".to_string()),
        working_dir: Some("/".to_string()),
        ..Default::default()
    };
    let work = async {
        let (id, started) = create_and_start(ctx, config).await?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        if let StartExecResults::Attached { mut output, .. } = started {
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        out.extend_from_slice(&message);
                        if seen(&out) {
                            return Ok((0, out, err));
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => err.extend_from_slice(&message),
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => {
                        return Err(E::Api {
                            operation: "read helper output",
                            source: e,
                        });
                    }
                }
            }
        }
        let code = exit_code(ctx, &id, ctx.request_timeout)
            .await?
            .unwrap_or(-1);
        Ok((code, out, err))
    };
    let limit = ctx.request_timeout * 2;
    match tokio::time::timeout(limit, work).await {
        Err(_) => Err(E::Timeout {
            operation: "helper exec",
            timeout: limit,
        }),
        Ok(r) => r,
    }
}

async fn run_killer(ctx: &Ctx, script: &str, args: &[&str]) -> Result<(), String> {
    match helper_until(ctx, script, args, Some(b"runbox-killed")).await {
        Ok((_, out, _)) if out.windows(13).any(|w| w == b"runbox-killed") => Ok(()),
        Ok((code, out, err)) => Err(format!(
            "killer exited {code}: {}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Kills with `script` (session or all); when the killer cannot even start
/// (pids limit exhausted), raises the pids limit for the moment of the kill.
pub(crate) async fn kill(ctx: &Ctx, script: &str, args: &[&str]) -> Result<(), E> {
    let first = match run_killer(ctx, script, args).await {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    tracing::warn!(container = %ctx.container, error = %first, "killer exec failed");
    if let Some(limit) = ctx.pids_limit {
        let raise = ContainerUpdateBody {
            pids_limit: Some(limit + 64),
            ..Default::default()
        };
        deadline(
            &ctx.host,
            "update container",
            ctx.request_timeout,
            ctx.docker.update_container(&ctx.container, raise),
        )
        .await?;
        let r = run_killer(ctx, script, args).await;
        let restore = ContainerUpdateBody {
            pids_limit: Some(limit),
            ..Default::default()
        };
        deadline(
            &ctx.host,
            "update container",
            ctx.request_timeout,
            ctx.docker.update_container(&ctx.container, restore),
        )
        .await?;
        if r.is_ok() {
            return Ok(());
        }
    }
    Err(E::Helper {
        container: ctx.container.clone(),
        reason: format!("cannot kill processes: {first}"),
    })
}

/// Kills the session of exec `tag`.
pub(crate) async fn kill_session(ctx: &Ctx, tag: &str) -> Result<(), E> {
    kill(ctx, scripts::KILL_SESSION, &[tag]).await
}

/// Kills every process runbox started in the container.
pub(crate) async fn kill_all(ctx: &Ctx) -> Result<(), E> {
    kill(ctx, scripts::KILL_ALL, &[]).await
}

/// What the streaming loop saw.
#[derive(Debug)]
pub(crate) struct RawResult {
    pub code: Option<i64>,
    pub ending: Ending,
    pub wall: Duration,
}

/// Runs `plan` and streams its output into `capture` (and the live sink)
/// until it ends, times out, exceeds the cap or `stop` turns true.
pub(crate) async fn run(
    ctx: &Ctx,
    plan: &ExecPlan,
    capture: &Arc<Mutex<Capture>>,
    mut stop: Option<watch::Receiver<bool>>,
) -> Result<RawResult, E> {
    let config = ExecConfig {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        env: Some(vec![format!("PATH={DEFAULT_PATH}")]),
        cmd: Some(wrapper_argv(plan)),
        working_dir: Some(plan.workdir.clone()),
        ..Default::default()
    };
    let (exec_id, started) = create_and_start(ctx, config).await?;
    let start = Instant::now();
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err(E::Helper {
            container: ctx.container.clone(),
            reason: "exec started detached".into(),
        });
    };
    let stdin = plan.stdin.clone().unwrap_or_default();
    let writer = tokio::spawn(async move {
        if !stdin.is_empty() {
            let _ = input.write_all(&stdin).await;
        }
        let _ = input.shutdown().await;
        // Keep the write half open until the exec ends: dropping it early
        // is harmless, but holding it keeps the connection's state simple.
        std::future::pending::<()>().await;
    });
    let timeout_at = plan
        .timeout
        .map(|t| tokio::time::Instant::from_std(start + t));
    let mut ending = Ending::Exited;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut kill_error: Option<E> = None;
    // The kill runs as its own task while this loop keeps draining the
    // exec's output: a stream left unread backs up in the daemon, which then
    // stalls the killer exec too.
    let mut killer: Option<tokio::task::JoinHandle<Result<(), E>>> = None;
    let stop_requested =
        |s: &Option<watch::Receiver<bool>>| s.as_ref().is_some_and(|r| *r.borrow());
    if stop_requested(&stop) {
        ending = Ending::Stopped;
    }
    loop {
        if ending != Ending::Exited && killer.is_none() && drain_until.is_none() {
            let (c, tag) = (ctx.clone(), plan.tag.clone());
            killer = Some(tokio::spawn(async move { kill_session(&c, &tag).await }));
        }
        let stop_fut = async {
            match stop.as_mut() {
                Some(r) if ending == Ending::Exited => {
                    if r.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            item = output.next() => match item {
                Some(Ok(LogOutput::StdOut { message })) | Some(Ok(LogOutput::Console { message })) => {
                    if on_chunk(capture, plan.sink.as_ref(), Stream::Stdout, &message) && ending == Ending::Exited {
                        ending = Ending::OutputCap;
                    }
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    if on_chunk(capture, plan.sink.as_ref(), Stream::Stderr, &message) && ending == Ending::Exited {
                        ending = Ending::OutputCap;
                    }
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    tracing::warn!(container = %ctx.container, error = %e, "exec output stream failed");
                    break;
                }
                None => break,
            },
            _ = async { if let Some(t) = timeout_at { tokio::time::sleep_until(t).await } else { std::future::pending::<()>().await } }, if ending == Ending::Exited => {
                ending = Ending::TimedOut;
            }
            _ = stop_fut => {
                if stop_requested(&stop) && ending == Ending::Exited {
                    ending = Ending::Stopped;
                }
            }
            done = async { match killer.as_mut() { Some(k) => k.await, None => std::future::pending().await } } => {
                killer = None;
                match done {
                    Ok(Err(e)) => kill_error = Some(e),
                    Err(e) => kill_error = Some(E::Helper { container: ctx.container.clone(), reason: format!("killer task failed: {e}") }),
                    Ok(Ok(())) => {}
                }
                drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            _ = async { if let Some(t) = drain_until { tokio::time::sleep_until(t).await } else { std::future::pending::<()>().await } } => {
                break;
            }
        }
    }
    if let Some(k) = killer.take() {
        // The stream ended before the killer did: let it finish.
        match k.await {
            Ok(Err(e)) => kill_error = Some(e),
            Err(e) => {
                kill_error = Some(E::Helper {
                    container: ctx.container.clone(),
                    reason: format!("killer task failed: {e}"),
                })
            }
            Ok(Ok(())) => {}
        }
    }
    let wall = start.elapsed();
    drop(output);
    writer.abort();
    // A command runbox killed (timeout, output cap, stop) gets its status
    // from the ending, not its exit code: once the killer succeeded there is
    // nothing to wait for (the daemon may hold the exec "running" for
    // seconds while an escaped process keeps its streams open).
    let killed = ending != Ending::Exited && kill_error.is_none();
    let code = if killed {
        None
    } else {
        exit_code(ctx, &exec_id, EXIT_WAIT).await?
    };
    if code.is_none() && !killed {
        // Still running (output stream failed?): make sure it ends.
        kill_session(ctx, &plan.tag).await?;
    }
    if let Some(e) = kill_error {
        if code.is_none() {
            return Err(e);
        }
    }
    Ok(RawResult { code, ending, wall })
}

/// Stores a chunk; true when it went over the cap.
fn on_chunk(
    capture: &Arc<Mutex<Capture>>,
    sink: Option<&OutputSink>,
    stream: Stream,
    data: &[u8],
) -> bool {
    let (kept, over) = {
        let mut c = lock(capture);
        let enforce = c.enforce;
        let buf = match stream {
            Stream::Stdout => &mut c.stdout,
            Stream::Stderr => &mut c.stderr,
        };
        let kept = buf.push(data);
        let over = buf.truncated() && enforce;
        // Without a requested limit live output sees everything.
        let shown = if enforce {
            kept.to_vec()
        } else {
            data.to_vec()
        };
        (shown, over)
    };
    if let Some(s) = sink {
        s.emit(stream, &kept);
    }
    over
}

/// Reads the memory cgroup's OOM counter; true when it grew since last seen.
async fn oom_happened(ctx: &Ctx) -> bool {
    match helper(ctx, scripts::OOM_COUNT, &[]).await {
        Ok((_, out, _)) => {
            let Ok(n) = String::from_utf8_lossy(&out).trim().parse::<u64>() else {
                return false;
            };
            let mut seen = lock(&ctx.oom_seen);
            let grew = n > *seen;
            *seen = n;
            grew
        }
        Err(e) => {
            tracing::warn!(container = %ctx.container, error = %e, "cannot read the OOM counter");
            false
        }
    }
}

/// Turns the raw result into the contract's [`ExecOutput`].
pub(crate) async fn finish(
    ctx: &Ctx,
    plan: &ExecPlan,
    raw: RawResult,
    capture: &Arc<Mutex<Capture>>,
) -> Result<ExecOutput, E> {
    let status = match raw.ending {
        Ending::TimedOut => ExitStatus::TimedOut,
        Ending::OutputCap => ExitStatus::OutputLimitExceeded,
        Ending::Stopped => ExitStatus::Signaled(9),
        Ending::Exited => match raw.code {
            None => {
                return Err(E::Helper {
                    container: ctx.container.clone(),
                    reason: "the daemon never reported the command's exit".into(),
                })
            }
            Some(c @ (126 | 127)) => {
                let why = helper(ctx, scripts::READ_FAIL, &[&plan.tag])
                    .await
                    .map(|(_, out, _)| String::from_utf8_lossy(&out).trim().to_string())
                    .unwrap_or_default();
                let program = plan.argv.first().cloned().unwrap_or_default();
                match why.as_str() {
                    "notfound" => ExitStatus::FailedToStart {
                        reason: StartFailure::NotFound,
                        message: format!("{program}: not found in the sandbox"),
                    },
                    "denied" => ExitStatus::FailedToStart {
                        reason: StartFailure::PermissionDenied,
                        message: format!("{program}: permission denied"),
                    },
                    "other" => ExitStatus::FailedToStart {
                        reason: StartFailure::Other,
                        message: String::from_utf8_lossy(lock(capture).stderr.data())
                            .trim()
                            .to_string(),
                    },
                    _ => ExitStatus::Exited(c as i32),
                }
            }
            Some(137) => {
                if oom_happened(ctx).await {
                    ExitStatus::MemoryLimitExceeded
                } else {
                    ExitStatus::Signaled(9)
                }
            }
            // Docker reports a command ended by signal N as 128 + N.
            Some(c) if (129..=192).contains(&c) => ExitStatus::Signaled((c - 128) as i32),
            Some(c) => ExitStatus::Exited(c as i32),
        },
    };
    let c = lock(capture);
    Ok(ExecOutput {
        status,
        stdout: c.stdout.data().to_vec(),
        stderr: c.stderr.data().to_vec(),
        stdout_truncated: c.stdout.truncated(),
        stderr_truncated: c.stderr.truncated(),
        wall_time: raw.wall,
        cpu_time: None,
        peak_memory: None,
    })
}

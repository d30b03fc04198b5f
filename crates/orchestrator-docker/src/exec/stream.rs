//! The attached exec of one command: stdin in, live output out, and the
//! loop that ends it on exit, wall timeout, output cap or a stop request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use futures_util::StreamExt;
use orchestrator_core::exec::{OutputCapture, DEFAULT_PATH};
use orchestrator_core::Stream;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::helper::{create_and_start, exit_code};
use super::kill::kill_session;
use super::plan::{wrapper_argv, ExecPlan};
use super::Ctx;
use crate::container::lock;
use crate::error::DockerOrchestratorError as E;

/// How long output is still read after a kill (a process that left the
/// command's session may hold the stream open).
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// How long to wait for the daemon to report an exec's end.
const EXIT_WAIT: Duration = Duration::from_secs(15);

/// Why the streaming loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Exited,
    TimedOut,
    OutputCap,
    Stopped,
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
    capture: &Arc<Mutex<OutputCapture>>,
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
    let stdin = plan.cmd.stdin.clone().unwrap_or_default();
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
        .cmd
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
                    if lock(capture).push(Stream::Stdout, &message) && ending == Ending::Exited {
                        ending = Ending::OutputCap;
                    }
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    if lock(capture).push(Stream::Stderr, &message) && ending == Ending::Exited {
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

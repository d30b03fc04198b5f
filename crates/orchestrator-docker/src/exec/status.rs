//! The contract's [`ExecOutput`] from what the stream saw: exit codes,
//! signals, OOM kills, and start failures (program not found or not
//! executable, as the wrapper recorded them).

use std::sync::{Arc, Mutex};

use orchestrator_core::exec::OutputCapture;
use orchestrator_core::{ExecOutput, ExitStatus, StartFailure};

use super::helper::helper;
use super::plan::ExecPlan;
use super::stream::{Ending, RawResult};
use super::Ctx;
use crate::container::lock;
use crate::error::DockerOrchestratorError as E;
use crate::scripts;

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
    capture: &Arc<Mutex<OutputCapture>>,
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
                let program = plan.cmd.argv.first().cloned().unwrap_or_default();
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
                        message: String::from_utf8_lossy(&lock(capture).snapshot(None).stderr)
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
    // A clone: `process_status` reads the capture until the result is
    // published.
    Ok(lock(capture).clone().finish(status, raw.wall, None, None))
}

//! Short execs of runbox's own: a helper script run as root with its
//! output collected, and waiting for the daemon to report an exec's end.

use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::StreamExt;
use orchestrator_core::exec::DEFAULT_PATH;

use super::Ctx;
use crate::client::deadline;
use crate::error::DockerOrchestratorError as E;

/// Waits until the daemon reports the exec ended; its exit code.
pub(super) async fn exit_code(ctx: &Ctx, exec_id: &str, wait: Duration) -> Result<Option<i64>, E> {
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
pub(super) async fn create_and_start(
    ctx: &Ctx,
    config: ExecConfig,
) -> Result<(String, StartExecResults), E> {
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
pub(super) async fn helper_until(
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

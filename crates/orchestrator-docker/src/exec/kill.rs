//! Ending commands inside the container: the killer exec for one session
//! or for everything runbox started, with the pids limit raised for the
//! moment of the kill when even the killer cannot start.

use bollard::models::ContainerUpdateBody;

use super::helper::helper_until;
use super::Ctx;
use crate::client::deadline;
use crate::error::DockerOrchestratorError as E;
use crate::scripts;

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
async fn kill(ctx: &Ctx, script: &str, args: &[&str]) -> Result<(), E> {
    let first = match run_killer(ctx, script, args).await {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    tracing::warn!(container = %ctx.container, error = %first, "killer exec failed");
    if let Some(limit) = ctx.pids_limit {
        set_pids_limit(ctx, limit + 64).await?;
        let r = run_killer(ctx, script, args).await;
        set_pids_limit(ctx, limit).await?;
        if r.is_ok() {
            return Ok(());
        }
    }
    Err(E::Helper {
        container: ctx.container.clone(),
        reason: format!("cannot kill processes: {first}"),
    })
}

/// Sets the container's pids limit.
async fn set_pids_limit(ctx: &Ctx, limit: i64) -> Result<(), E> {
    let body = ContainerUpdateBody {
        pids_limit: Some(limit),
        ..Default::default()
    };
    deadline(
        &ctx.host,
        "update container",
        ctx.request_timeout,
        ctx.docker.update_container(&ctx.container, body),
    )
    .await
}

/// Kills the session of exec `tag`.
pub(crate) async fn kill_session(ctx: &Ctx, tag: &str) -> Result<(), E> {
    kill(ctx, scripts::KILL_SESSION, &[tag]).await
}

/// Kills every process runbox started in the container.
pub(crate) async fn kill_all(ctx: &Ctx) -> Result<(), E> {
    kill(ctx, scripts::KILL_ALL, &[]).await
}

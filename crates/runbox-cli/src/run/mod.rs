//! `runbox run`, the flow: build the request from the flags, execute it
//! through the execution service (recorded in the SQLite store), end it on
//! a signal or a closed stdout, and show the result.

mod output;
mod pull;
mod request;
mod setup;

use std::sync::Arc;
use std::time::Duration;

use crate::cli::RunArgs;
use crate::error::{from_service, CliError};

pub use output::{error_json, exit_code, print_json};
pub use setup::{availability, check_available, open_store};

use output::{report, sink};
use pull::PullBar;
use request::request;

/// Runs `runbox run`; returns the exit code. Errors are runbox's own.
pub async fn run(
    args: RunArgs,
    state_dir: Result<std::path::PathBuf, CliError>,
) -> Result<u8, CliError> {
    // Reading `--stdin -` may block on a terminal: a Ctrl-C there still
    // ends runbox the default way, as nothing is provisioned yet.
    let req = request(&args)?;
    let mut signals = crate::signals::Terminations::install();
    let requested_limits = req.limits.clone();
    let pulls = Arc::new(PullBar::default());
    let orch = setup::backend(&args.backend, &setup::backend_settings(&args), &pulls)
        .map_err(|e| blame_sandbox_flag(e, &args))?;
    if args.image.is_some() {
        setup::check_runs_images(&args.backend, orch.as_ref())?;
    }
    let store = open_store(&state_dir?)?;
    if let Err(reason) = check_available(orch.as_ref()).await {
        return Err(CliError::new(
            "unavailable",
            format!("backend {} is unavailable: {reason}", args.backend),
        )
        .on("--backend"));
    }
    // Asked only on the error path: a backend may answer its capabilities
    // with work (native builds a probe sandbox to know if it isolates).
    let backend = orch.clone();
    let service = setup::service(&args.backend, orch, store)?;
    let stdout_closed = Arc::new(tokio::sync::Notify::new());
    let req = if args.json {
        req
    } else {
        req.output(sink(stdout_closed.clone()))
    };

    let outcome = tokio::select! {
        r = service.execute(req) => Some(r),
        _ = stdout_closed.notified() => {
            // Like a shell pipeline: the reader went away, the command ends.
            let _ = tokio::time::timeout(Duration::from_secs(15), service.wait_for_cleanups()).await;
            return Ok(128 + 13);
        }
        sig = signals.received() => {
            pulls.finish();
            // Dropping the execute future tears its sandbox down on a
            // spawned task; wait for it (bounded).
            let _ = tokio::time::timeout(Duration::from_secs(15), service.wait_for_cleanups()).await;
            let e = CliError::new("interrupted", format!("interrupted by signal {sig}; the sandbox was removed"))
                .code((128 + sig) as u8);
            return Err(e);
        }
    };
    pulls.finish();
    let result = match outcome {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            let mut err = from_service(&e, &args.backend);
            let image_to_blame = match &args.image {
                // An image that cannot be had is the image flag's fault.
                Some(image) => {
                    err.flag.as_deref() == Some("--backend") && err.message.contains(image.as_str())
                }
                // A backend that runs images refusing a workspace without
                // one: the missing flag is to blame.
                None => is_invalid_create(&e) && backend.capabilities().images,
            };
            if image_to_blame {
                err.flag = Some("--image".into());
            } else if is_create(&e) {
                err = blame_sandbox_flag(err, &args);
            }
            return Err(err);
        }
        None => {
            return Err(CliError::new(
                "internal",
                "execution ended without a result",
            ))
        }
    };
    let code = report(&args, &requested_limits, &result);
    tracing::info!(execution = %result.execution_id, status = %result.output.status, code, "done");
    Ok(code)
}

/// A backend that refused to be created, or to create the workspace, is
/// blamed on `--backend`; when what it says names a mount, isolation or the
/// network and that flag was given (isolation always is), the flag is to
/// blame instead.
fn blame_sandbox_flag(mut err: CliError, args: &RunArgs) -> CliError {
    if err.flag.as_deref() != Some("--backend") {
        return err;
    }
    let msg = err.message.to_ascii_lowercase();
    let flag = if !args.mounts.is_empty() && msg.contains("mount") {
        "--mount"
    } else if msg.contains("isolation") {
        "--isolation"
    } else if args.network.is_some() && msg.contains("network") {
        "--network"
    } else {
        return err;
    };
    err.flag = Some(flag.into());
    err
}

/// Did the backend fail to create the workspace?
fn is_create(e: &execution_service::ServiceError) -> bool {
    matches!(
        e,
        execution_service::ServiceError::Orchestrator {
            operation: "create_workspace",
            ..
        }
    )
}

/// Did the backend refuse to create the workspace for what it was given?
fn is_invalid_create(e: &execution_service::ServiceError) -> bool {
    matches!(
        e,
        execution_service::ServiceError::Orchestrator {
            operation: "create_workspace",
            source: orchestrator_core::Error::InvalidInput(_),
            ..
        }
    )
}

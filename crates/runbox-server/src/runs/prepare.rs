//! A run request made ready: its command, limits within the caps, staged
//! files and the paths to collect, on the backend instance it asks for.

use execution_service::{BackendPreference, ExecutionRequest};
use orchestrator_core::ResourceLimits;

use crate::auth::Identity;
use crate::backends::Served;
use crate::collect::Collect;
use crate::input;
use crate::model::{Encoding, RunRequest};
use crate::problem::ApiError;
use crate::state::{App, KIND_LABEL, OWNER_LABEL};

/// A run made ready to submit.
pub(super) struct Prepared {
    pub(super) request: ExecutionRequest,
    pub(super) served: Served,
    pub(super) limits: ResourceLimits,
    pub(super) collect: Vec<Collect>,
    pub(super) scratch: Option<tempfile::TempDir>,
    pub(super) encoding: Encoding,
}

/// Checks and stages a run request.
pub(super) async fn prepare(
    app: &App,
    who: &Identity,
    body: &RunRequest,
) -> Result<Prepared, ApiError> {
    let argv = input::command(&body.argv, &body.shell)?;
    let caps = &app.config.caps;
    let limits = input::limits(
        body.limits.as_ref(),
        body.strict.unwrap_or(false),
        caps,
        true,
    )?;
    let files = body.files.as_deref().unwrap_or_default();
    let collect_paths = body.collect.as_deref().unwrap_or_default();
    if files.len() > caps.files || collect_paths.len() > caps.files {
        return Err(ApiError::invalid(format!(
            "at most {} entries in `files` and in `collect`",
            caps.files
        )));
    }
    let served = app
        .backends
        .for_request(
            &app.config.default_backend,
            &body.backend,
            body.isolation,
            body.network,
            &body.image,
        )
        .await?;
    // Only a run with files to stage pays for a scratch directory.
    let scratch = if files.is_empty() && collect_paths.is_empty() {
        None
    } else {
        Some(
            tempfile::Builder::new()
                .prefix("run-")
                .tempdir_in(&app.scratch)
                .map_err(|e| ApiError::internal(format!("cannot stage the run's files: {e}")))?,
        )
    };
    let staged = |name: String| {
        scratch
            .as_ref()
            .map(|d| d.path().join(name))
            .unwrap_or_default()
    };
    let mut req = ExecutionRequest::new(argv)
        .limits(limits.clone())
        .backend(BackendPreference::Named(served.orch.name().to_string()))
        .label(OWNER_LABEL, who.0.clone())
        .label(KIND_LABEL, "run");
    for (k, v) in body.env.iter().flatten() {
        req = req.env(k.clone(), v.clone());
    }
    if let Some(w) = &body.workdir {
        input::sandbox_path(w)?;
        req = req.workdir(w.clone());
    }
    if let Some(img) = &body.image {
        req = req.image(img.clone());
    }
    if let Some(s) = &body.stdin {
        req = req.stdin(input::content(s, "stdin")?);
    }
    for (i, f) in files.iter().enumerate() {
        input::sandbox_path(&f.path)?;
        let bytes = input::bytes(&f.text, &f.base64, &format!("files[{i}]"))?;
        let host = staged(format!("in-{i}"));
        tokio::fs::write(&host, bytes)
            .await
            .map_err(|e| ApiError::internal(format!("cannot stage files[{i}]: {e}")))?;
        req = req.file_in(host, f.path.clone());
    }
    let mut collect = Vec::new();
    for (i, p) in collect_paths.iter().enumerate() {
        input::sandbox_path(p)?;
        let host = staged(format!("out-{i}"));
        req = req.file_out(p.clone(), host.clone());
        collect.push(Collect {
            path: p.clone(),
            host,
        });
    }
    req.validate().map_err(ApiError::from)?;
    Ok(Prepared {
        request: req,
        served,
        limits,
        collect,
        scratch,
        encoding: body.output_encoding.unwrap_or_default(),
    })
}

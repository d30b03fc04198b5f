//! What a run needs before it starts: the backend instance for `--backend`
//! (any registered backend, configured the same way: isolation and network
//! settings from the flags), whether it is
//! available (within a deadline), the SQLite store, and the service over
//! both.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use execution_service::{ExecutionService, SqliteStore};
use orchestrator_core::{registry, Availability, BackendOptions, Orchestrator, Progress};

use super::pull::PullBar;
use crate::cli::RunArgs;
use crate::error::{from_service, CliError};

/// How long a backend may take to say whether it is available.
pub const AVAILABILITY_DEADLINE: Duration = Duration::from_secs(3);

/// The backend settings of `runbox run`'s flags. `isolation` always goes
/// (`auto` when not given, every backend's default anyway), so the mode
/// the caller sees in `--help` is the one in force on any backend;
/// `network` only when given, so each backend's own default applies
/// otherwise (none under full isolation; with `--isolation none` there is
/// only the host's). A backend that does not know a setting refuses it when
/// created: the flag does not silently do nothing.
pub fn backend_settings(args: &RunArgs) -> Vec<(&'static str, String)> {
    let mut v = vec![("isolation", args.isolation.as_str().to_string())];
    if let Some(network) = args.network {
        v.push(("network", network.as_str().to_string()));
    }
    v
}

/// The backend instance for `--backend NAME`, with these settings.
pub fn backend(
    name: &str,
    settings: &[(&'static str, String)],
    pulls: &Arc<PullBar>,
) -> Result<Arc<dyn Orchestrator>, CliError> {
    if registry::find(name).is_none() {
        return Err(CliError::flag(
            "--backend",
            format!(
                "unknown backend {name:?} (registered: {})",
                registry::names().join(", ")
            ),
        ));
    }
    let p = pulls.clone();
    let mut options = BackendOptions::new().progress(Progress::new(move |ev| p.on_event(ev)));
    for (k, v) in settings {
        options = options.setting(*k, v.clone());
    }
    registry::create_with(name, &options).map_err(|e| {
        CliError::new(e.kind(), format!("cannot create backend {name}: {e}")).on("--backend")
    })
}

/// `--image` needs a backend that runs images; the error names the
/// registered backends that do.
pub fn check_runs_images(name: &str, orch: &dyn Orchestrator) -> Result<(), CliError> {
    if orch.capabilities().images {
        return Ok(());
    }
    let runs_images: Vec<String> = registry::backends()
        .into_iter()
        .filter(|r| r.name != name)
        .filter_map(|r| (r.factory)(&BackendOptions::new()).ok())
        .filter(|b| b.capabilities().images)
        .map(|b| format!("--backend {}", b.name()))
        .collect();
    let hint = if runs_images.is_empty() {
        "no registered backend runs images".to_string()
    } else {
        format!("add {}", runs_images.join(" or "))
    };
    Err(CliError::flag(
        "--image",
        format!("the {name} backend does not use images ({hint})"),
    ))
}

/// Whether a backend can serve requests, asked within a deadline (no answer
/// in time counts as unavailable).
pub async fn availability(orch: &dyn Orchestrator) -> Availability {
    match tokio::time::timeout(AVAILABILITY_DEADLINE, orch.is_available()).await {
        Ok(a) => a,
        Err(_) => Availability::unavailable(format!(
            "no answer within {} s",
            AVAILABILITY_DEADLINE.as_secs()
        )),
    }
}

/// Checks that a backend can serve requests; the reason when it cannot.
pub async fn check_available(orch: &dyn Orchestrator) -> Result<(), String> {
    match availability(orch).await {
        Availability::Unavailable { reason } => Err(reason),
        _ => Ok(()),
    }
}

/// Opens (creating) the SQLite store under the state directory.
pub fn open_store(dir: &Path) -> Result<SqliteStore, CliError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            CliError::new("state_dir", format!("cannot create {}: {e}", dir.display()))
                .on("--state-dir")
        })?;
    let db = dir.join(crate::DB_FILE);
    SqliteStore::open(&db).map_err(|e| {
        CliError::new("state_dir", format!("cannot open {}: {e}", db.display())).on("--state-dir")
    })
}

/// The service over `orch` (the instance of backend `name`, its default)
/// and `store`.
pub fn service(
    name: &str,
    orch: Arc<dyn Orchestrator>,
    store: SqliteStore,
) -> Result<ExecutionService, CliError> {
    ExecutionService::builder()
        .store(store)
        .backend_named(name, orch)
        .default_backend(name)
        .build()
        .map_err(|e| from_service(&e, name))
}

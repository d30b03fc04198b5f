//! What a run needs before it starts: the backend instance for `--backend`,
//! whether it is available (within a deadline), the SQLite store, and the
//! service over both.
//!
//! The backend name "docker" is branched on here only: its instance gets the
//! pull progress bar, and the service takes it in the docker slot.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use execution_service::{ExecutionService, SqliteStore};
use orchestrator_core::{registry, Orchestrator};
use orchestrator_docker::{DockerConfig, DockerOrchestrator, PullProgress};

use super::pull::PullBar;
use crate::error::{from_service, CliError};

/// How long a backend may take to say whether it is available.
pub const AVAILABILITY_DEADLINE: Duration = Duration::from_secs(3);

/// The backend instance for `--backend NAME`.
pub fn backend(name: &str, pulls: &Arc<PullBar>) -> Result<Arc<dyn Orchestrator>, CliError> {
    if registry::find(name).is_none() {
        return Err(CliError::flag(
            "--backend",
            format!(
                "unknown backend {name:?} (registered: {})",
                registry::names().join(", ")
            ),
        ));
    }
    let made = if name == "docker" {
        let p = pulls.clone();
        let config =
            DockerConfig::from_env().pull_progress(PullProgress::new(move |ev| p.on_event(ev)));
        DockerOrchestrator::new(config).map(|d| Arc::new(d) as Arc<dyn Orchestrator>)
    } else {
        registry::create(name)
    };
    made.map_err(|e| {
        CliError::new(e.kind(), format!("cannot create backend {name}: {e}")).on("--backend")
    })
}

/// Whether a backend can serve requests, asked within a deadline (no answer
/// in time counts as unavailable).
pub async fn availability(orch: &dyn Orchestrator) -> orchestrator_core::Availability {
    match tokio::time::timeout(AVAILABILITY_DEADLINE, orch.is_available()).await {
        Ok(a) => a,
        Err(_) => orchestrator_core::Availability::no(format!(
            "no answer within {} s",
            AVAILABILITY_DEADLINE.as_secs()
        )),
    }
}

/// Checks that a backend can serve requests; the reason when it cannot.
pub async fn check_available(orch: &dyn Orchestrator) -> Result<(), String> {
    let a = availability(orch).await;
    if a.available {
        Ok(())
    } else {
        Err(a.reason.unwrap_or_else(|| "no reason given".into()))
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

/// The service over `orch` (the instance of backend `name`) and `store`.
pub fn service(
    name: &str,
    orch: Arc<dyn Orchestrator>,
    store: SqliteStore,
) -> Result<ExecutionService, CliError> {
    let builder = ExecutionService::builder().store(store);
    let builder = if name == "docker" {
        builder.docker_orchestrator(orch)
    } else {
        builder.orchestrator(orch)
    };
    builder.build().map_err(|e| from_service(&e, name))
}

//! [`App`]: what every handler shares: the configuration, the tokens, the
//! backends and records, backpressure, metrics, and the tables of live runs
//! and sandboxes (each owned by the identity of the token that made it).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use execution_service::{ExecutionId, ExecutionRecord, ExecutionStore};
use orchestrator_core::WorkspaceId;
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::admission::Admission;
use crate::auth::{Identity, Tokens};
use crate::backends::{Backends, Served};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::result::{IsolationResult, LimitResult, RunPhase, RunResult, RunView};

/// Label naming the identity (token hash) that owns a record and its sandbox.
pub const OWNER_LABEL: &str = "runbox.server.owner";
/// Label saying whether a record is a one-shot `run` or a `sandbox`.
pub const KIND_LABEL: &str = "runbox.server.kind";

/// Finished runs whose full result (with output) stays in memory; older
/// ones are answered from their record.
const KEEP_FINISHED: usize = 4096;
/// The most bytes of output and collected files the kept results hold
/// together; past it the oldest are answered from their record too.
const KEEP_BYTES: usize = 256 << 20;

/// Locks a mutex, a poisoned one included (every critical section leaves
/// its table consistent).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a run is, as its watchers see it.
#[derive(Debug, Clone)]
pub struct RunStatus {
    /// Its phase.
    pub phase: RunPhase,
    /// Its result, once completed.
    pub result: Option<Arc<RunResult>>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// The error a waiting caller gets when it failed.
    pub failure: Option<ApiError>,
}

/// A run of this server's lifetime.
#[derive(Debug)]
pub struct RunCell {
    /// Its execution record.
    pub id: ExecutionId,
    /// Who made it.
    pub owner: Identity,
    /// Its status; a run ends by sending a terminal phase.
    pub status: watch::Sender<RunStatus>,
    /// The backend instance it runs on.
    pub served: Served,
    /// The task driving it, to abort it.
    pub task: Mutex<Option<tokio::task::AbortHandle>>,
    /// The same task, for the one caller that waits for it to be gone.
    pub joined: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The teardown an aborted run spawned, for a caller to wait for.
    pub teardown: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl RunCell {
    /// The `GET /v1/runs/{id}` answer.
    pub fn view(&self) -> RunView {
        let s = self.status.borrow();
        RunView {
            execution_id: self.id.to_string(),
            state: s.phase,
            result: s.result.as_deref().cloned(),
            error: s.error.clone(),
        }
    }

    /// Ends the run with a terminal phase (the first end wins).
    pub fn finish(
        &self,
        phase: RunPhase,
        result: Option<Arc<RunResult>>,
        error: Option<String>,
    ) -> bool {
        self.status.send_if_modified(|s| {
            if s.phase.is_terminal() {
                return false;
            }
            *s = RunStatus {
                phase,
                result,
                error,
                failure: None,
            };
            true
        })
    }
}

/// The runs of this server's lifetime.
#[derive(Debug, Default)]
pub struct Runs {
    map: HashMap<String, Arc<RunCell>>,
    finished: VecDeque<(String, usize)>,
    bytes: usize,
}

impl Runs {
    /// Adds a run.
    pub fn insert(&mut self, cell: Arc<RunCell>) {
        self.map.insert(cell.id.to_string(), cell);
    }
    /// A run by id.
    pub fn get(&self, id: &str) -> Option<Arc<RunCell>> {
        self.map.get(id).cloned()
    }
    /// Notes that a run ended; the oldest ended ones are forgotten past
    /// [`KEEP_FINISHED`].
    pub fn ended(&mut self, id: &ExecutionId) {
        let size = self
            .map
            .get(id.as_str())
            .and_then(|c| c.status.borrow().result.as_ref().map(|r| r.held_bytes()))
            .unwrap_or(0);
        self.finished.push_back((id.to_string(), size));
        self.bytes += size;
        while self.finished.len() > KEEP_FINISHED || self.bytes > KEEP_BYTES {
            let Some((old, size)) = self.finished.pop_front() else {
                break;
            };
            self.bytes -= size;
            self.map.remove(&old);
        }
    }
    /// Every run not ended yet.
    pub fn live(&self) -> Vec<Arc<RunCell>> {
        self.map
            .values()
            .filter(|c| !c.status.borrow().phase.is_terminal())
            .cloned()
            .collect()
    }
}

/// A live sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// Its id (its execution record's).
    pub id: ExecutionId,
    /// Who made it.
    pub owner: Identity,
    /// The backend instance holding it.
    pub served: Served,
    /// The backend's name.
    pub backend: String,
    /// The workspace.
    pub ws: WorkspaceId,
    /// When the reaper removes it.
    pub expires: Mutex<SystemTime>,
    /// How its limits are enforced.
    pub limits: BTreeMap<String, LimitResult>,
    /// How it is isolated.
    pub isolation: IsolationResult,
}

/// A sandbox as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SandboxView {
    /// Its id.
    pub id: String,
    /// The backend holding it.
    pub backend: String,
    /// When the reaper removes it (RFC 3339, UTC).
    pub expires_at: String,
    /// How each requested limit is enforced.
    pub limits: BTreeMap<String, LimitResult>,
    /// How it is isolated.
    pub isolation: IsolationResult,
}

impl Sandbox {
    /// The API's view of it.
    pub fn view(&self) -> SandboxView {
        SandboxView {
            id: self.id.to_string(),
            backend: self.backend.clone(),
            expires_at: rfc3339(*lock(&self.expires)),
            limits: self.limits.clone(),
            isolation: self.isolation.clone(),
        }
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct Inner {
    /// The configuration.
    pub config: ServerConfig,
    /// The tokens.
    pub tokens: Tokens,
    /// The records (SQLite in the state directory).
    pub store: Arc<dyn ExecutionStore>,
    /// The backend instances.
    pub backends: Backends,
    /// Backpressure.
    pub admission: Admission,
    /// Counters.
    pub metrics: Metrics,
    /// Where uploads, run files and downloads are staged.
    pub scratch: PathBuf,
    /// Runs of this lifetime.
    pub runs: Mutex<Runs>,
    /// Live sandboxes by id.
    pub sandboxes: Mutex<HashMap<String, Arc<Sandbox>>>,
    /// Sandboxes being made, per token (counted against its cap; locked
    /// after `sandboxes`).
    pub making: Mutex<HashMap<Identity, usize>>,
    /// Background work (runs, teardowns) that shutdown waits for.
    pub tasks: tokio_util::task::TaskTracker,
    /// Set once shutdown began: new work is refused.
    pub closing: AtomicBool,
}

/// The shared state, cheap to clone.
#[derive(Debug, Clone)]
pub struct App(pub Arc<Inner>);

impl Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl App {
    /// `unavailable` once shutdown began.
    pub fn check_open(&self) -> Result<(), ApiError> {
        if self.closing.load(Ordering::SeqCst) {
            Err(ApiError::unavailable("the server is shutting down"))
        } else {
            Ok(())
        }
    }

    /// The caller's live sandbox `id`, or `not_found` (another token's
    /// sandbox is not found either).
    pub fn sandbox(&self, owner: &Identity, id: &str) -> Result<Arc<Sandbox>, ApiError> {
        lock(&self.sandboxes)
            .get(id)
            .filter(|s| &s.owner == owner)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no sandbox {id}")))
    }

    /// The caller's record `id` of kind `kind`, if there is one.
    pub async fn owned_record(
        &self,
        owner: &Identity,
        id: &str,
        kind: &str,
    ) -> Result<Option<ExecutionRecord>, ApiError> {
        let Ok(eid) = ExecutionId::new(id) else {
            return Ok(None);
        };
        match self.store.get(&eid).await {
            Ok(Some(r)) if is_owned(&r, owner, kind) => Ok(Some(r)),
            Ok(_) => Ok(None),
            Err(e) => Err(ApiError::internal(format!("execution store: {e}"))),
        }
    }
}

/// Is the record of `kind` and owned by `owner`?
pub fn is_owned(r: &ExecutionRecord, owner: &Identity, kind: &str) -> bool {
    r.request.labels.get(OWNER_LABEL) == Some(&owner.0)
        && r.request.labels.get(KIND_LABEL).map(String::as_str) == Some(kind)
}

/// A time as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_796_083_200_123), "2026-12-01T00:00:00.123Z");
    }
}

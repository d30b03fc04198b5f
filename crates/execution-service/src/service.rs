//! [`ExecutionService`]: composes an orchestrator (native by default) and an
//! optional docker orchestrator with an [`ExecutionStore`].
//!
//! Every call works on one execution and holds no lock of its own: records
//! change by compare-and-swap in the store, so concurrent calls on different
//! executions never wait for each other, and concurrent calls on the same
//! execution cannot both win a transition.

use std::future::Future;
use std::sync::Arc;

use orchestrator_core::{
    registry, ExecOutput, LimitReport, Orchestrator, ResourceLimits, WorkspaceId, WorkspaceSpec,
};
use tokio::sync::watch;
use tracing::Instrument;

use crate::error::ServiceError;
use crate::owner::{Liveness, OwnerInfo};
use crate::record::{
    now_ms, BackendPreference, ExecutionId, ExecutionRecord, ExecutionRequest, ExecutionState,
    LimitSummary, ResultSummary,
};
use crate::store::{ExecutionStore, ListFilter, MemoryStore, StoreError};

/// Options of [`ExecutionService::start`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// Provision on the docker orchestrator instead of the default one
    /// (seed: `use_docker=False`). A request whose backend preference is
    /// [`BackendPreference::Docker`] uses docker either way.
    pub use_docker: bool,
}

impl StartOptions {
    /// `use_docker: true`.
    pub fn docker() -> Self {
        Self { use_docker: true }
    }
}

/// Options of [`ExecutionService::complete`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompleteOptions {
    /// What the caller believes holds the sandbox. `None`: whatever the
    /// record says. `Some(b)` that contradicts the record is
    /// [`ServiceError::BackendMismatch`] and nothing is torn down.
    pub use_docker: Option<bool>,
}

/// What [`ExecutionService::execute`] returns.
#[derive(Debug, Clone)]
pub struct ExecutionResult {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The backend that ran it.
    pub backend: String,
    /// Whether it ran on the docker orchestrator.
    pub used_docker: bool,
    /// The (now removed) workspace or container.
    pub workspace_id: WorkspaceId,
    /// The command's output.
    pub output: ExecOutput,
    /// How each limit was enforced (empty when no limits were asked).
    pub limit_report: LimitReport,
    /// The final record (state completed).
    pub record: ExecutionRecord,
    /// Files of `files_out` that could not be copied out, with why. Every
    /// copy-out is attempted, whatever the command's status and whatever
    /// an earlier copy did; a failure does not discard the result above
    /// (the record's `error` names it too).
    pub copy_out_errors: Vec<(crate::FileTransfer, Arc<ServiceError>)>,
}

/// What [`ExecutionService::recover`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryReport {
    /// Executions whose owner was gone, now marked failed.
    pub recovered: Vec<RecoveredExecution>,
    /// Ended executions whose earlier teardown had failed, retried now.
    pub released: Vec<RecoveredExecution>,
    /// Active executions whose owner still runs (left alone).
    pub skipped_live: Vec<ExecutionId>,
    /// What each backend's own orphan scan removed: (backend, items).
    pub reaped: Vec<(String, Vec<String>)>,
    /// Problems met on the way (recovery goes on after each).
    pub errors: Vec<String>,
}

impl RecoveryReport {
    /// Nothing was found to do and nothing failed.
    pub fn is_clean(&self) -> bool {
        self.recovered.is_empty()
            && self.released.is_empty()
            && self.errors.is_empty()
            && self.reaped.iter().all(|(_, v)| v.is_empty())
    }
}

/// One execution handled by [`ExecutionService::recover`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredExecution {
    /// The execution.
    pub id: ExecutionId,
    /// State it was left in.
    pub previous_state: ExecutionState,
    /// The backend that held its sandbox.
    pub backend: Option<String>,
    /// The sandbox torn down.
    pub sandbox_id: Option<String>,
    /// The dead owner's pid.
    pub owner_pid: Option<u32>,
    /// Whether the sandbox teardown succeeded.
    pub cleaned: bool,
}

#[derive(Clone)]
enum BackendChoice {
    Instance(Arc<dyn Orchestrator>),
    Named(String),
}

/// Builds an [`ExecutionService`] with injected or named backends and a store.
///
/// ```
/// # use std::sync::Arc;
/// # use execution_service::{ExecutionService, MemoryStore};
/// # use orchestrator_core::testing::FakeOrchestrator;
/// let service = ExecutionService::builder()
///     .store(MemoryStore::new())
///     .orchestrator(Arc::new(FakeOrchestrator::named("native")))
///     .build()
///     .unwrap();
/// assert!(service.docker().is_none());
/// ```
#[derive(Default)]
pub struct ExecutionServiceBuilder {
    store: Option<Arc<dyn ExecutionStore>>,
    orchestrator: Option<BackendChoice>,
    docker: Option<BackendChoice>,
}

impl std::fmt::Debug for ExecutionServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionServiceBuilder")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl ExecutionServiceBuilder {
    /// The record store (default: a [`MemoryStore`]).
    pub fn store(mut self, store: impl ExecutionStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A store shared with other owners.
    pub fn shared_store(mut self, store: Arc<dyn ExecutionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The default orchestrator (seed: `orchestrator=`). Default: native.
    pub fn orchestrator(mut self, orchestrator: Arc<dyn Orchestrator>) -> Self {
        self.orchestrator = Some(BackendChoice::Instance(orchestrator));
        self
    }

    /// The docker orchestrator (seed: `docker_orchestrator=`). Default: none.
    pub fn docker_orchestrator(mut self, docker: Arc<dyn Orchestrator>) -> Self {
        self.docker = Some(BackendChoice::Instance(docker));
        self
    }

    /// The default orchestrator, by registered name (created with the
    /// backend's default configuration when the service is built).
    pub fn orchestrator_named(mut self, name: impl Into<String>) -> Self {
        self.orchestrator = Some(BackendChoice::Named(name.into()));
        self
    }

    /// The docker orchestrator, by registered name.
    pub fn docker_orchestrator_named(mut self, name: impl Into<String>) -> Self {
        self.docker = Some(BackendChoice::Named(name.into()));
        self
    }

    /// Creates named backends and the service. An unregistered name is
    /// [`ServiceError::UnknownBackend`]; a backend that fails to initialise
    /// is [`ServiceError::Orchestrator`].
    pub fn build(self) -> Result<ExecutionService, ServiceError> {
        let resolve = |choice: BackendChoice| -> Result<Arc<dyn Orchestrator>, ServiceError> {
            match choice {
                BackendChoice::Instance(o) => Ok(o),
                BackendChoice::Named(name) => create_backend(&name),
            }
        };
        let orchestrator = match self.orchestrator {
            Some(c) => resolve(c)?,
            None => default_orchestrator()?,
        };
        let docker = self.docker.map(resolve).transpose()?;
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn ExecutionStore>);
        let (cleanups, _) = watch::channel(0usize);
        Ok(ExecutionService {
            inner: Arc::new(Inner {
                store,
                orchestrator,
                docker,
                cleanups,
            }),
        })
    }
}

/// Creates a registered backend by name with its default configuration.
pub fn create_backend(name: &str) -> Result<Arc<dyn Orchestrator>, ServiceError> {
    match registry::find(name) {
        None => Err(ServiceError::UnknownBackend {
            name: name.to_string(),
            available: registry::names().into_iter().map(String::from).collect(),
        }),
        Some(reg) => (reg.factory)().map_err(|e| ServiceError::backend("create", name, e)),
    }
}

/// The default orchestrator: the native backend with its default
/// configuration.
fn default_orchestrator() -> Result<Arc<dyn Orchestrator>, ServiceError> {
    let native =
        orchestrator_native::NativeOrchestrator::new(orchestrator_native::NativeConfig::default())
            .map_err(|e| ServiceError::backend("create", "native", e))?;
    Ok(Arc::new(native))
}

struct Inner {
    store: Arc<dyn ExecutionStore>,
    orchestrator: Arc<dyn Orchestrator>,
    docker: Option<Arc<dyn Orchestrator>>,
    /// Number of drop-guard cleanups still running.
    cleanups: watch::Sender<usize>,
}

/// Runs executions in sandboxes: native first, docker optional.
///
/// `Send + Sync + Clone`; a clone shares everything (one `Arc`), so hand
/// clones to as many tasks as you like.
#[derive(Clone)]
pub struct ExecutionService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ExecutionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionService")
            .field("orchestrator", &self.inner.orchestrator.name())
            .field("docker", &self.inner.docker.as_ref().map(|d| d.name()))
            .field("store", &self.inner.store)
            .finish()
    }
}

/// Which of the service's two backend slots holds a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Default,
    Docker,
}

/// Everything `start` set up.
struct Started {
    record: ExecutionRecord,
    orchestrator: Arc<dyn Orchestrator>,
    workspace: WorkspaceId,
    limit_report: LimitReport,
}

/// Tears an execution down if the future working on it is dropped: the
/// cleanup runs as a spawned task (on the current runtime, or on a helper
/// thread when there is none).
struct InFlight {
    service: ExecutionService,
    id: ExecutionId,
    sandbox: Option<(Arc<dyn Orchestrator>, WorkspaceId)>,
    armed: bool,
}

impl InFlight {
    fn new(service: &ExecutionService, id: &ExecutionId) -> Self {
        Self {
            service: service.clone(),
            id: id.clone(),
            sandbox: None,
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let service = self.service.clone();
        let id = self.id.clone();
        let sandbox = self.sandbox.take();
        tracing::warn!(execution = %id, "execution future dropped mid-way; tearing its sandbox down");
        self.service
            .spawn_cleanup(async move { service.abandon(id, sandbox).await });
    }
}

const MAX_CAS_RETRIES: usize = 64;

impl ExecutionService {
    /// The seed's default: a native orchestrator, no docker, records in
    /// `store`.
    pub fn new(store: impl ExecutionStore + 'static) -> Result<Self, ServiceError> {
        Self::builder().store(store).build()
    }

    /// A builder (defaults: native orchestrator, no docker, memory store).
    pub fn builder() -> ExecutionServiceBuilder {
        ExecutionServiceBuilder::default()
    }

    /// The default orchestrator (native unless replaced).
    pub fn orchestrator(&self) -> &Arc<dyn Orchestrator> {
        &self.inner.orchestrator
    }

    /// The docker orchestrator, when one was configured.
    pub fn docker(&self) -> Option<&Arc<dyn Orchestrator>> {
        self.inner.docker.as_ref()
    }

    /// The record store.
    pub fn store(&self) -> &Arc<dyn ExecutionStore> {
        &self.inner.store
    }

    // ----- records ---------------------------------------------------------

    /// Records a pending execution and returns its id. The request is
    /// validated; its live output sink is not stored (pass it to
    /// [`ExecutionService::execute`]).
    pub async fn submit(&self, mut request: ExecutionRequest) -> Result<ExecutionId, ServiceError> {
        request.validate().map_err(ServiceError::InvalidRequest)?;
        request.output = None;
        let id = ExecutionId::generate();
        let record = ExecutionRecord::new(id.clone(), request);
        self.inner.store.insert(&record).await?;
        tracing::info!(execution = %id, "submitted");
        Ok(id)
    }

    /// An execution's record.
    pub async fn get(&self, id: &ExecutionId) -> Result<ExecutionRecord, ServiceError> {
        self.inner
            .store
            .get(id)
            .await?
            .ok_or_else(|| ServiceError::UnknownExecution(id.clone()))
    }

    /// Every record, oldest first.
    pub async fn list(&self) -> Result<Vec<ExecutionRecord>, ServiceError> {
        Ok(self.inner.store.list(&ListFilter::all()).await?)
    }

    /// Records matching a filter.
    pub async fn list_filtered(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<ExecutionRecord>, ServiceError> {
        Ok(self.inner.store.list(filter).await?)
    }

    /// Re-reads the record, applies `f` and writes it back, retrying on a
    /// concurrent change. `f` decides on the fresh record each time.
    async fn update_with<F>(
        &self,
        id: &ExecutionId,
        mut f: F,
    ) -> Result<ExecutionRecord, ServiceError>
    where
        F: FnMut(&mut ExecutionRecord) -> Result<(), ServiceError>,
    {
        for _ in 0..MAX_CAS_RETRIES {
            let mut rec = self.get(id).await?;
            f(&mut rec)?;
            rec.updated_at_ms = now_ms();
            match self.inner.store.update(&rec).await {
                Ok(r) => return Ok(r),
                Err(StoreError::Conflict { .. }) => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Store(StoreError::Database(
            format!("execution {id}: too many concurrent updates").into(),
        )))
    }

    // ----- backends --------------------------------------------------------

    fn slot(&self, slot: Slot) -> Result<Arc<dyn Orchestrator>, ServiceError> {
        match slot {
            Slot::Default => Ok(self.inner.orchestrator.clone()),
            Slot::Docker => self
                .inner
                .docker
                .clone()
                .ok_or(ServiceError::MissingDockerOrchestrator),
        }
    }

    /// Which slot a request goes to.
    fn resolve(
        &self,
        pref: &BackendPreference,
        use_docker: bool,
    ) -> Result<(Slot, Arc<dyn Orchestrator>), ServiceError> {
        let slot = match pref {
            _ if use_docker => Slot::Docker,
            BackendPreference::Docker => Slot::Docker,
            BackendPreference::Default => Slot::Default,
            BackendPreference::Named(name) => {
                if self.inner.orchestrator.name() == name {
                    Slot::Default
                } else if self.inner.docker.as_ref().is_some_and(|d| d.name() == name) {
                    Slot::Docker
                } else if name == "docker" && self.inner.docker.is_none() {
                    return Err(ServiceError::MissingDockerOrchestrator);
                } else {
                    let mut available = vec![self.inner.orchestrator.name().to_string()];
                    available.extend(self.inner.docker.iter().map(|d| d.name().to_string()));
                    return Err(ServiceError::UnknownBackend {
                        name: name.clone(),
                        available,
                    });
                }
            }
        };
        let o = self.slot(slot)?;
        if let (true, BackendPreference::Named(name)) = (use_docker, pref) {
            if o.name() != name {
                return Err(ServiceError::InvalidRequest(
                    orchestrator_core::Error::invalid(format!(
                        "the request asks for backend {name:?} but use_docker selects {:?}",
                        o.name()
                    )),
                ));
            }
        }
        Ok((slot, o))
    }

    /// The backend holding a record's sandbox, from this service's slots.
    fn backend_of(&self, rec: &ExecutionRecord) -> Result<Arc<dyn Orchestrator>, ServiceError> {
        let slot = if rec.used_docker {
            Slot::Docker
        } else {
            Slot::Default
        };
        let o = self.slot(slot)?;
        match &rec.backend {
            Some(name) if name == o.name() => Ok(o),
            Some(name) => Err(ServiceError::UnknownBackend {
                name: name.clone(),
                available: vec![o.name().to_string()],
            }),
            None => Err(ServiceError::InvalidState {
                id: rec.id.clone(),
                state: rec.state,
                operation: "find the backend of",
            }),
        }
    }

    /// Like [`Self::backend_of`], falling back to creating the recorded
    /// backend from the registry (recovery of records written by a service
    /// configured differently).
    fn backend_for_recovery(
        &self,
        rec: &ExecutionRecord,
    ) -> Result<Arc<dyn Orchestrator>, ServiceError> {
        match self.backend_of(rec) {
            Ok(o) => Ok(o),
            Err(e) => match &rec.backend {
                Some(name) => {
                    for o in
                        std::iter::once(&self.inner.orchestrator).chain(self.inner.docker.iter())
                    {
                        if o.name() == name {
                            return Ok(o.clone());
                        }
                    }
                    create_backend(name)
                }
                None => Err(e),
            },
        }
    }

    // ----- start -----------------------------------------------------------

    /// Provisions the sandbox of a pending execution: creates the workspace
    /// (or container, with `use_docker`), copies its files in, applies its
    /// limits (in strict mode an unenforceable limit is an error and the
    /// sandbox is torn down), starts its command in the background when it
    /// has one, and records the sandbox and backend. Returns the workspace
    /// or container id.
    pub async fn start(
        &self,
        id: &ExecutionId,
        opts: StartOptions,
    ) -> Result<WorkspaceId, ServiceError> {
        let span = tracing::info_span!("start", execution = %id, use_docker = opts.use_docker);
        async {
            let mut guard = InFlight::new(self, id);
            let res = self.start_inner(id, &opts, true, &mut guard).await;
            // Success: the sandbox lives until `complete`. Failure: start
            // already tore down what it made.
            guard.disarm();
            res.map(|s| s.workspace)
        }
        .instrument(span)
        .await
    }

    async fn start_inner(
        &self,
        id: &ExecutionId,
        opts: &StartOptions,
        start_command: bool,
        guard: &mut InFlight,
    ) -> Result<Started, ServiceError> {
        let rec = self.get(id).await?;
        if rec.state != ExecutionState::Pending {
            return Err(ServiceError::InvalidState {
                id: id.clone(),
                state: rec.state,
                operation: "start",
            });
        }
        let (slot, orch) = self.resolve(&rec.request.backend, opts.use_docker)?;
        let backend = orch.name().to_string();

        // pending -> starting, claiming the execution for this process.
        let mut claim = rec.clone();
        claim
            .transition(ExecutionState::Starting)
            .map_err(|_| ServiceError::InvalidState {
                id: id.clone(),
                state: rec.state,
                operation: "start",
            })?;
        claim.backend = Some(backend.clone());
        claim.used_docker = slot == Slot::Docker;
        claim.owner = Some(OwnerInfo::current());
        let mut rec = match self.inner.store.update(&claim).await {
            Ok(r) => r,
            Err(StoreError::Conflict { .. }) => {
                let now = self.get(id).await?;
                return Err(ServiceError::InvalidState {
                    id: id.clone(),
                    state: now.state,
                    operation: "start",
                });
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(backend, "starting");

        let mut spec = WorkspaceSpec::new().execution_id(id.as_str());
        if let Some(image) = &rec.request.image {
            spec = spec.image(image.clone());
        }
        // The execution id travels as `execution_id` (the docker backend
        // labels cold containers with it and names pooled ones after it),
        // not as a label of its own: a labelled spec cannot take a warm
        // container.
        for (k, v) in &rec.request.labels {
            spec = spec.label(k.clone(), v.clone());
        }

        let ws = match orch.create_workspace(&spec).await {
            Ok(ws) => ws,
            Err(e) => {
                let err = ServiceError::backend("create_workspace", &backend, e);
                return Err(self.abort_start(id, &orch, None, err).await);
            }
        };
        // From here until the record names the sandbox, only the guard knows
        // it: set it before the next await.
        guard.sandbox = Some((orch.clone(), ws.clone()));
        tracing::info!(workspace = %ws, "sandbox created");

        rec.sandbox_id = Some(ws.to_string());
        rec = match self.inner.store.update(&rec).await {
            Ok(r) => r,
            Err(StoreError::Conflict { .. }) => {
                // Cancelled while we were creating it.
                return Err(self
                    .abort_start(id, &orch, Some(&ws), ServiceError::Cancelled(id.clone()))
                    .await);
            }
            Err(e) => {
                return Err(self.abort_start(id, &orch, Some(&ws), e.into()).await);
            }
        };

        for f in &rec.request.files_in {
            if let Err(e) = orch.copy_to(&ws, &f.host, &f.sandbox).await {
                let err = ServiceError::backend("copy_to", &backend, e);
                return Err(self.abort_start(id, &orch, Some(&ws), err).await);
            }
        }

        let limits: &ResourceLimits = &rec.request.limits;
        let mut limit_report = LimitReport::default();
        if !limits.is_empty() {
            let applied = orch
                .apply_resource_limits(&ws, limits)
                .await
                .and_then(|report| {
                    // A backend that reports an unenforced limit in strict
                    // mode instead of failing is held to it here.
                    if limits.strict {
                        report.check_strict()?;
                    }
                    Ok(report)
                });
            match applied {
                Ok(r) => limit_report = r,
                Err(e) => {
                    let err = ServiceError::backend("apply_resource_limits", &backend, e);
                    return Err(self.abort_start(id, &orch, Some(&ws), err).await);
                }
            }
            for e in limit_report.unenforced() {
                tracing::warn!(limit = %e.kind, note = ?e.note, "limit not enforced");
            }
        }
        rec.limits_applied = LimitSummary::from_report(&limit_report);

        if start_command {
            if let Some(cmd) = rec.request.command_spec() {
                match orch.start_background(&ws, &cmd).await {
                    Ok(pid) => rec.process_id = Some(pid.to_string()),
                    Err(e) => {
                        let err = ServiceError::backend("start_background", &backend, e);
                        return Err(self.abort_start(id, &orch, Some(&ws), err).await);
                    }
                }
            }
        }

        if rec.transition(ExecutionState::Running).is_err() {
            return Err(self
                .abort_start(id, &orch, Some(&ws), ServiceError::Cancelled(id.clone()))
                .await);
        }
        let rec = match self.inner.store.update(&rec).await {
            Ok(r) => r,
            Err(StoreError::Conflict { .. }) => {
                return Err(self
                    .abort_start(id, &orch, Some(&ws), ServiceError::Cancelled(id.clone()))
                    .await);
            }
            Err(e) => return Err(self.abort_start(id, &orch, Some(&ws), e.into()).await),
        };
        tracing::info!(workspace = %ws, "running");
        Ok(Started {
            record: rec,
            orchestrator: orch,
            workspace: ws,
            limit_report,
        })
    }

    /// Undoes a failed start: tears the sandbox down and marks the record
    /// failed (unless it was cancelled meanwhile: then the error becomes
    /// [`ServiceError::Cancelled`]). Returns the error to report.
    async fn abort_start(
        &self,
        id: &ExecutionId,
        orch: &Arc<dyn Orchestrator>,
        ws: Option<&WorkspaceId>,
        err: ServiceError,
    ) -> ServiceError {
        tracing::warn!(error = %err, "start failed; tearing down");
        let mut released = true;
        if let Some(ws) = ws {
            if let Err(e) = orch.cleanup(ws).await {
                tracing::error!(workspace = %ws, error = %e, "teardown after a failed start failed");
                released = false;
            }
        }
        let reason = err.to_string();
        let ws_str = ws.map(|w| w.to_string());
        let mut cancelled = false;
        let res = self
            .update_with(id, |r| {
                if r.sandbox_id.is_none() {
                    r.sandbox_id = ws_str.clone();
                }
                if r.state.is_terminal() {
                    cancelled = r.state == ExecutionState::Cancelled;
                    if r.sandbox_id.is_some() && released {
                        r.sandbox_released = true;
                    }
                    return Ok(());
                }
                r.transition(ExecutionState::Failed)
                    .map_err(|_| ServiceError::InvalidState {
                        id: r.id.clone(),
                        state: r.state,
                        operation: "fail",
                    })?;
                r.error = Some(reason.clone());
                r.sandbox_released = r.sandbox_id.is_some() && released;
                Ok(())
            })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "could not record the failed start");
        }
        match err {
            ServiceError::Cancelled(_) => err,
            _ if cancelled => ServiceError::Cancelled(id.clone()),
            _ => err,
        }
    }

    // ----- complete / cancel ----------------------------------------------

    /// Tears down a running execution's sandbox on the backend its record
    /// names and marks it completed (with the background command's result
    /// when it has ended). Idempotent: completing an ended execution returns
    /// its record. A `use_docker` contradicting the record is
    /// [`ServiceError::BackendMismatch`]; a teardown failure is an error and
    /// leaves the record running, so the call can be retried.
    pub async fn complete(
        &self,
        id: &ExecutionId,
        opts: CompleteOptions,
    ) -> Result<ExecutionRecord, ServiceError> {
        let span = tracing::info_span!("complete", execution = %id);
        async {
            let rec = self.get(id).await?;
            if let (Some(requested), Some(recorded)) = (opts.use_docker, &rec.backend) {
                if requested != rec.used_docker {
                    return Err(ServiceError::BackendMismatch {
                        id: id.clone(),
                        recorded: recorded.clone(),
                        recorded_docker: rec.used_docker,
                        requested_docker: requested,
                    });
                }
            }
            match rec.state {
                s if s.is_terminal() => Ok(rec),
                ExecutionState::Pending | ExecutionState::Starting => {
                    Err(ServiceError::InvalidState {
                        id: id.clone(),
                        state: rec.state,
                        operation: "complete",
                    })
                }
                _ => {
                    let orch = self.backend_of(&rec)?;
                    let result = self.background_result(&rec, &orch).await;
                    self.teardown_and_finish(&rec, &orch, ExecutionState::Completed, result, None)
                        .await
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The result of the record's background process, if it has ended.
    async fn background_result(
        &self,
        rec: &ExecutionRecord,
        orch: &Arc<dyn Orchestrator>,
    ) -> Option<ResultSummary> {
        let ws = rec.sandbox()?;
        let pid = rec
            .process_id
            .as_deref()
            .and_then(|p| orchestrator_core::ProcessId::new(p).ok())?;
        match orch.process_status(&ws, &pid).await {
            Ok(snap) => snap.status.map(|status| {
                let wall = rec
                    .started_at_ms
                    .map(|t| now_ms().saturating_sub(t))
                    .unwrap_or(0);
                ResultSummary {
                    status: status.name().to_string(),
                    exit_code: status.code(),
                    signal: status.signal(),
                    wall_ms: wall,
                    cpu_ms: None,
                    peak_memory: None,
                    stdout_bytes: snap.stdout.len() as u64,
                    stderr_bytes: snap.stderr.len() as u64,
                    stdout_truncated: snap.stdout_truncated,
                    stderr_truncated: snap.stderr_truncated,
                }
            }),
            Err(e) => {
                tracing::debug!(error = %e, "no background status");
                None
            }
        }
    }

    /// Tears a running execution's sandbox down, then moves the record to
    /// `target`. When teardown fails the record is left as it was and the
    /// error returned. When the record ended meanwhile (a concurrent
    /// complete or cancel), returns it as it is for `Completed` targets,
    /// and `Cancelled` otherwise.
    async fn teardown_and_finish(
        &self,
        rec: &ExecutionRecord,
        orch: &Arc<dyn Orchestrator>,
        target: ExecutionState,
        result: Option<ResultSummary>,
        error: Option<String>,
    ) -> Result<ExecutionRecord, ServiceError> {
        if let Some(ws) = rec.sandbox() {
            orch.cleanup(&ws)
                .await
                .map_err(|e| ServiceError::backend("cleanup", orch.name(), e))?;
            tracing::info!(workspace = %ws, "sandbox removed");
        }
        let id = rec.id.clone();
        self.update_with(&id, |r| {
            if r.state == target {
                return Ok(()); // a concurrent identical call won; idempotent
            }
            if r.state.is_terminal() {
                return Err(if r.state == ExecutionState::Cancelled {
                    ServiceError::Cancelled(r.id.clone())
                } else {
                    ServiceError::InvalidState {
                        id: r.id.clone(),
                        state: r.state,
                        operation: "finish",
                    }
                });
            }
            r.transition(target)
                .map_err(|_| ServiceError::InvalidState {
                    id: r.id.clone(),
                    state: r.state,
                    operation: "finish",
                })?;
            r.sandbox_released = r.sandbox_id.is_some();
            if result.is_some() {
                r.result = result.clone();
            }
            if error.is_some() {
                r.error = error.clone();
            }
            Ok(())
        })
        .await
    }

    /// Cancels an execution: a pending one is just marked; a starting or
    /// running one has its sandbox torn down first (a `start` or `execute`
    /// working on it then fails with [`ServiceError::Cancelled`]).
    /// Cancelling a cancelled execution returns it; a completed or failed
    /// one is [`ServiceError::InvalidState`].
    pub async fn cancel(&self, id: &ExecutionId) -> Result<ExecutionRecord, ServiceError> {
        let span = tracing::info_span!("cancel", execution = %id);
        async {
            for _ in 0..MAX_CAS_RETRIES {
                let rec = self.get(id).await?;
                match rec.state {
                    ExecutionState::Cancelled => return Ok(rec),
                    ExecutionState::Completed | ExecutionState::Failed => {
                        return Err(ServiceError::InvalidState {
                            id: id.clone(),
                            state: rec.state,
                            operation: "cancel",
                        })
                    }
                    ExecutionState::Running => {
                        let orch = self.backend_of(&rec)?;
                        return self
                            .teardown_and_finish(
                                &rec,
                                &orch,
                                ExecutionState::Cancelled,
                                None,
                                Some("cancelled".into()),
                            )
                            .await;
                    }
                    ExecutionState::Pending | ExecutionState::Starting => {
                        let mut released = false;
                        if let Some(ws) = rec.sandbox() {
                            let orch = self.backend_of(&rec)?;
                            orch.cleanup(&ws)
                                .await
                                .map_err(|e| ServiceError::backend("cleanup", orch.name(), e))?;
                            released = true;
                        }
                        let mut next = rec.clone();
                        if next.transition(ExecutionState::Cancelled).is_err() {
                            continue;
                        }
                        next.error = Some("cancelled".into());
                        next.sandbox_released = released;
                        match self.inner.store.update(&next).await {
                            Ok(r) => return Ok(r),
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            Err(ServiceError::Store(StoreError::Database(
                format!("execution {id}: too many concurrent updates").into(),
            )))
        }
        .instrument(span)
        .await
    }

    // ----- execute ---------------------------------------------------------

    /// Submits and runs a request to the end: start (without the background
    /// command), run the command in the foreground (live output goes to the
    /// request's sink), copy the files out, complete. The sandbox is torn
    /// down whatever happens: when the command fails, when a step errors,
    /// and when the caller drops this future mid-way (a spawned task does it;
    /// [`ExecutionService::wait_for_cleanups`] waits for such tasks).
    ///
    /// A command that runs and exits non-zero is a success of `execute`
    /// (the record is completed; see `output.status`).
    pub async fn execute(
        &self,
        request: ExecutionRequest,
    ) -> Result<ExecutionResult, ServiceError> {
        let span = tracing::info_span!(
            "execute",
            execution = tracing::field::Empty,
            backend = tracing::field::Empty
        );
        let span2 = span.clone();
        async move {
            if request.command.is_empty() {
                return Err(ServiceError::InvalidRequest(
                    orchestrator_core::Error::invalid("execute needs a command"),
                ));
            }
            // Fail early, without leaving a record, on a backend that is not
            // there.
            self.resolve(&request.backend, false)?;
            let sink = request.output.clone();
            let id = self.submit(request).await?;
            span2.record("execution", tracing::field::display(&id));
            let mut guard = InFlight::new(self, &id);

            let started = match self
                .start_inner(&id, &StartOptions::default(), false, &mut guard)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    guard.disarm();
                    return Err(e);
                }
            };
            let Started {
                record,
                orchestrator: orch,
                workspace: ws,
                limit_report,
            } = started;
            let backend = orch.name().to_string();
            span2.record("backend", tracing::field::display(&backend));

            let Some(mut cmd) = record.request.command_spec() else {
                guard.disarm();
                return Err(ServiceError::InvalidRequest(
                    orchestrator_core::Error::invalid("execute needs a command"),
                ));
            };
            cmd.output = sink;
            let output = match orch.run_command(&ws, &cmd).await {
                Ok(o) => o,
                Err(e) => {
                    let err = ServiceError::backend("run_command", &backend, e);
                    let res = self.fail_running(&record, &orch, err).await;
                    guard.disarm();
                    return Err(res);
                }
            };
            tracing::info!(status = %output.status, "command ended");
            let summary = ResultSummary::from_output(&output);

            let mut copy_out_errors = Vec::new();
            for f in &record.request.files_out {
                if let Err(e) = orch.copy_from(&ws, &f.sandbox, &f.host).await {
                    tracing::warn!(sandbox = %f.sandbox, host = %f.host.display(), error = %e, "copy out failed");
                    copy_out_errors.push((f.clone(), Arc::new(ServiceError::backend("copy_from", &backend, e))));
                }
            }
            let copy_note = (!copy_out_errors.is_empty()).then(|| {
                copy_out_errors
                    .iter()
                    .map(|(f, e)| format!("copy out of {}: {e}", f.sandbox))
                    .collect::<Vec<_>>()
                    .join("; ")
            });

            let finished = self
                .teardown_and_finish(
                    &record,
                    &orch,
                    ExecutionState::Completed,
                    Some(summary.clone()),
                    copy_note,
                )
                .await;
            let record = match finished {
                Ok(r) => r,
                Err(e @ ServiceError::Orchestrator { .. }) => {
                    // Teardown failed: record the failure with the result;
                    // `recover` retries the teardown of unreleased sandboxes.
                    let reason = e.to_string();
                    let _ = self
                        .update_with(&id, |r| {
                            if r.transition(ExecutionState::Failed).is_ok() {
                                r.error = Some(reason.clone());
                                r.result = Some(summary.clone());
                                r.sandbox_released = false;
                            }
                            Ok(())
                        })
                        .await;
                    guard.disarm();
                    return Err(e);
                }
                Err(e) => {
                    guard.disarm();
                    return Err(e);
                }
            };
            guard.disarm();
            Ok(ExecutionResult {
                execution_id: id,
                backend,
                used_docker: record.used_docker,
                workspace_id: ws,
                output,
                limit_report,
                record,
                copy_out_errors,
            })
        }
        .instrument(span)
        .await
    }

    /// A step after start failed: tear down, mark failed, return the error
    /// (or [`ServiceError::Cancelled`] if it was cancelled meanwhile).
    async fn fail_running(
        &self,
        rec: &ExecutionRecord,
        orch: &Arc<dyn Orchestrator>,
        err: ServiceError,
    ) -> ServiceError {
        tracing::warn!(error = %err, "execution failed; tearing down");
        let reason = err.to_string();
        match self
            .teardown_and_finish(
                rec,
                orch,
                ExecutionState::Failed,
                None,
                Some(reason.clone()),
            )
            .await
        {
            Ok(_) => err,
            Err(e @ ServiceError::Cancelled(_)) => e,
            Err(e @ ServiceError::Orchestrator { .. }) => {
                tracing::error!(error = %e, "teardown failed too");
                let _ = self
                    .update_with(&rec.id, |r| {
                        if r.transition(ExecutionState::Failed).is_ok() {
                            r.error = Some(format!("{reason}; teardown failed: {e}"));
                            r.sandbox_released = false;
                        }
                        Ok(())
                    })
                    .await;
                err
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record the failure");
                err
            }
        }
    }

    // ----- dropped futures -------------------------------------------------

    fn spawn_cleanup(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let counter = self.inner.cleanups.clone();
        counter.send_modify(|n| *n += 1);
        let task = async move {
            fut.await;
            counter.send_modify(|n| *n = n.saturating_sub(1));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(task);
            }
            Err(_) => {
                let spawned = std::thread::Builder::new()
                    .name("runbox-cleanup".into())
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(rt) => rt.block_on(task),
                            Err(e) => tracing::error!(error = %e, "no runtime for cleanup"),
                        }
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "could not spawn a cleanup thread");
                }
            }
        }
    }

    /// Waits until every teardown spawned for a dropped `execute` / `start`
    /// future has finished.
    pub async fn wait_for_cleanups(&self) {
        let mut rx = self.inner.cleanups.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Teardown for a dropped future: clean the sandbox the guard knew (and
    /// the one the record names), then mark the record cancelled.
    async fn abandon(
        &self,
        id: ExecutionId,
        sandbox: Option<(Arc<dyn Orchestrator>, WorkspaceId)>,
    ) {
        let mut released = true;
        let mut cleaned: Option<WorkspaceId> = None;
        if let Some((orch, ws)) = &sandbox {
            if let Err(e) = orch.cleanup(ws).await {
                tracing::error!(execution = %id, workspace = %ws, error = %e, "cleanup of a dropped execution failed");
                released = false;
            }
            cleaned = Some(ws.clone());
        }
        let rec = match self.get(&id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(execution = %id, error = %e, "dropped execution: cannot read record");
                return;
            }
        };
        if let Some(ws) = rec.sandbox() {
            if cleaned.as_ref() != Some(&ws) && !rec.sandbox_released {
                match self.backend_of(&rec) {
                    Ok(orch) => {
                        if let Err(e) = orch.cleanup(&ws).await {
                            tracing::error!(workspace = %ws, error = %e, "cleanup failed");
                            released = false;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "dropped execution: no backend");
                        released = false;
                    }
                }
            }
        }
        let ws_str = cleaned.map(|w| w.to_string());
        let res = self
            .update_with(&id, |r| {
                if r.sandbox_id.is_none() {
                    r.sandbox_id = ws_str.clone();
                }
                if !r.state.is_terminal() {
                    r.transition(ExecutionState::Cancelled).map_err(|_| {
                        ServiceError::InvalidState {
                            id: r.id.clone(),
                            state: r.state,
                            operation: "cancel",
                        }
                    })?;
                    r.error = Some("the caller dropped the execution before it finished".into());
                }
                if r.sandbox_id.is_some() && released {
                    r.sandbox_released = true;
                }
                Ok(())
            })
            .await;
        if let Err(e) = res {
            tracing::error!(execution = %id, error = %e, "dropped execution: cannot update record");
        }
    }

    // ----- recovery --------------------------------------------------------

    /// Cleans up after processes that died holding executions: every record
    /// left starting or running whose owner process is gone (pid and start
    /// time checked, so a reused pid does not count as alive) has its
    /// sandbox torn down on the backend it names and is marked failed; ended
    /// records whose teardown had failed are retried; then every configured
    /// backend's own orphan scan runs. Executions owned by live processes
    /// (including this one) are left alone.
    pub async fn recover(&self) -> Result<RecoveryReport, ServiceError> {
        let span = tracing::info_span!("recover");
        async {
            let mut report = RecoveryReport::default();
            let active = self
                .inner
                .store
                .list(&ListFilter::states(&[
                    ExecutionState::Starting,
                    ExecutionState::Running,
                ]))
                .await?;
            for rec in active {
                let dead = match &rec.owner {
                    None => true,
                    Some(o) => o.liveness() == Liveness::Dead,
                };
                if !dead {
                    report.skipped_live.push(rec.id.clone());
                    continue;
                }
                let owner_pid = rec.owner.as_ref().map(|o| o.pid);
                tracing::warn!(execution = %rec.id, ?owner_pid, "owner gone; recovering");
                let mut cleaned = true;
                if let Some(ws) = rec.sandbox() {
                    match self.backend_for_recovery(&rec) {
                        Ok(orch) => {
                            if let Err(e) = orch.cleanup(&ws).await {
                                cleaned = false;
                                report
                                    .errors
                                    .push(format!("{}: cleanup of {ws} failed: {e}", rec.id));
                            }
                        }
                        Err(e) => {
                            cleaned = false;
                            report.errors.push(format!("{}: {e}", rec.id));
                        }
                    }
                }
                let reason = format!(
                    "owner process {} is gone; recovered{}",
                    owner_pid
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "?".into()),
                    if cleaned {
                        ""
                    } else {
                        " (sandbox teardown failed)"
                    }
                );
                let prev = rec.state;
                let res = self
                    .update_with(&rec.id, |r| {
                        if r.state.is_active() {
                            r.transition(ExecutionState::Failed).map_err(|_| {
                                ServiceError::InvalidState {
                                    id: r.id.clone(),
                                    state: r.state,
                                    operation: "recover",
                                }
                            })?;
                            r.error = Some(reason.clone());
                        }
                        if r.sandbox_id.is_some() {
                            r.sandbox_released = cleaned;
                        }
                        Ok(())
                    })
                    .await;
                if let Err(e) = res {
                    report.errors.push(format!("{}: {e}", rec.id));
                }
                report.recovered.push(RecoveredExecution {
                    id: rec.id.clone(),
                    previous_state: prev,
                    backend: rec.backend.clone(),
                    sandbox_id: rec.sandbox_id.clone(),
                    owner_pid,
                    cleaned,
                });
            }

            // Ended records whose teardown failed earlier.
            let ended = self
                .inner
                .store
                .list(&ListFilter::states(&[
                    ExecutionState::Failed,
                    ExecutionState::Cancelled,
                ]))
                .await?;
            for rec in ended {
                let Some(ws) = rec.sandbox() else { continue };
                if rec.sandbox_released {
                    continue;
                }
                let cleaned = match self.backend_for_recovery(&rec) {
                    Ok(orch) => match orch.cleanup(&ws).await {
                        Ok(()) => true,
                        Err(e) => {
                            report
                                .errors
                                .push(format!("{}: cleanup of {ws} failed: {e}", rec.id));
                            false
                        }
                    },
                    Err(e) => {
                        report.errors.push(format!("{}: {e}", rec.id));
                        false
                    }
                };
                if cleaned {
                    if let Err(e) = self
                        .update_with(&rec.id, |r| {
                            r.sandbox_released = true;
                            Ok(())
                        })
                        .await
                    {
                        report.errors.push(format!("{}: {e}", rec.id));
                    }
                }
                report.released.push(RecoveredExecution {
                    id: rec.id.clone(),
                    previous_state: rec.state,
                    backend: rec.backend.clone(),
                    sandbox_id: rec.sandbox_id.clone(),
                    owner_pid: rec.owner.as_ref().map(|o| o.pid),
                    cleaned,
                });
            }

            for orch in std::iter::once(&self.inner.orchestrator).chain(self.inner.docker.iter()) {
                match orch.reap_orphans().await {
                    Ok(items) => {
                        for i in &items {
                            tracing::info!(backend = orch.name(), item = %i, "reaped orphan");
                        }
                        report.reaped.push((orch.name().to_string(), items));
                    }
                    Err(e) => report
                        .errors
                        .push(format!("reap_orphans on {}: {e}", orch.name())),
                }
            }
            Ok(report)
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests;

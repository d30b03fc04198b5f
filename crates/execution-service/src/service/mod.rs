//! [`ExecutionService`]: the type, its named backends and store, and the
//! record glue every operation shares.
//!
//! Every call works on one execution and holds no lock of its own: records
//! change by compare-and-swap in the store, so concurrent calls on different
//! executions never wait for each other, and concurrent calls on the same
//! execution cannot both win a transition.

use std::sync::Arc;

use orchestrator_core::Orchestrator;
use tokio::sync::watch;

use crate::error::ServiceError;
use crate::record::{now_ms, ExecutionId, ExecutionRecord, ExecutionRequest, ExecutionState};
use crate::store::{ExecutionStore, ListFilter, StoreError};

mod builder;
mod execute;
mod finish;
mod guard;
mod recovery;
mod routing;
mod start;

pub use builder::{create_backend, ExecutionServiceBuilder};
pub use execute::ExecutionResult;
pub use finish::CompleteOptions;
pub use recovery::{RecoveredExecution, RecoveryReport};
pub use routing::{DEFAULT_BACKEND, DOCKER_BACKEND};
pub use start::StartOptions;

use routing::Backends;

struct Inner {
    store: Arc<dyn ExecutionStore>,
    backends: Backends,
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
            .field("default", &self.default_backend_name())
            .field(
                "backends",
                &self.backends().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("store", &self.inner.store)
            .finish()
    }
}

const MAX_CAS_RETRIES: usize = 64;

/// Moves a record to `next`, or says that its state does not allow
/// `operation`.
fn transition(
    r: &mut ExecutionRecord,
    next: ExecutionState,
    operation: &'static str,
) -> Result<(), ServiceError> {
    r.transition(next).map_err(|_| ServiceError::InvalidState {
        id: r.id.clone(),
        state: r.state,
        operation,
    })
}

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

    /// The default backend (native unless replaced).
    pub fn orchestrator(&self) -> &Arc<dyn Orchestrator> {
        &self.inner.backends.default_backend().orchestrator
    }

    /// The docker orchestrator (the backend named [`DOCKER_BACKEND`]), when
    /// one was configured.
    pub fn docker(&self) -> Option<&Arc<dyn Orchestrator>> {
        self.backend(DOCKER_BACKEND)
    }

    /// The backend configured under `name`.
    pub fn backend(&self, name: &str) -> Option<&Arc<dyn Orchestrator>> {
        self.inner.backends.get(name)
    }

    /// The name of the default backend.
    pub fn default_backend_name(&self) -> &str {
        &self.inner.backends.default_backend().name
    }

    /// Every configured backend with its name: the default first, then the
    /// others by name.
    pub fn backends(&self) -> impl Iterator<Item = (&str, &Arc<dyn Orchestrator>)> {
        self.inner.backends.iter()
    }

    /// The record store.
    pub fn store(&self) -> &Arc<dyn ExecutionStore> {
        &self.inner.store
    }

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
}

#[cfg(test)]
mod tests;

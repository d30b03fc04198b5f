//! [`ExecutionServiceBuilder`]: which backends and which store a service gets.

use std::sync::Arc;

use orchestrator_core::{registry, Orchestrator};
use tokio::sync::watch;

use crate::error::ServiceError;
use crate::store::{ExecutionStore, MemoryStore};

use super::{ExecutionService, Inner};

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

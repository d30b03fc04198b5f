//! [`ExecutionServiceBuilder`]: which backends, under which names, and which
//! store a service gets.

use std::collections::BTreeMap;
use std::sync::Arc;

use orchestrator_core::{registry, BackendOptions, Orchestrator};
use orchestrator_native::{NativeConfig, NativeOrchestrator};

use super::routing::DEFAULT_BACKEND as NATIVE_BACKEND;
use tokio::sync::watch;

use super::routing::{Backend, Backends, DOCKER_BACKEND};
use super::{ExecutionService, Inner};
use crate::error::ServiceError;
use crate::store::{ExecutionStore, MemoryStore};

/// Where a backend comes from: injected, or created from the registry with
/// options when the service is built.
enum BackendSource {
    Instance(Arc<dyn Orchestrator>),
    Registered(String, BackendOptions),
}

impl BackendSource {
    fn resolve(self) -> Result<Arc<dyn Orchestrator>, ServiceError> {
        match self {
            BackendSource::Instance(o) => Ok(o),
            BackendSource::Registered(name, options) => create_backend(&name, &options),
        }
    }
}

/// How the default backend is chosen.
enum DefaultChoice {
    /// This backend, under its own name.
    Backend(BackendSource),
    /// The backend added under this name.
    Named(String),
}

/// Builds an [`ExecutionService`]: a map of named backends with one default,
/// and a store.
///
/// Backends are added under a name (given, or the backend's own
/// [`Orchestrator::name`]); a later backend under a name replaces an earlier
/// one, and the default set by [`Self::orchestrator`] replaces any backend
/// added under its name. Without a default, the backend named `native` is the
/// default (created with its default configuration if none was added).
///
/// ```
/// # use std::sync::Arc;
/// # use execution_service::{ExecutionService, MemoryStore};
/// # use orchestrator_core::testing::FakeOrchestrator;
/// let service = ExecutionService::builder()
///     .store(MemoryStore::new())
///     .orchestrator(Arc::new(FakeOrchestrator::named("native")))
///     .backend(Arc::new(FakeOrchestrator::named("gvisor")))
///     .build()
///     .unwrap();
/// assert!(service.docker().is_none());
/// let names: Vec<_> = service.backends().map(|(name, _)| name).collect();
/// assert_eq!(names, ["native", "gvisor"]);
/// ```
#[derive(Default)]
pub struct ExecutionServiceBuilder {
    store: Option<Arc<dyn ExecutionStore>>,
    /// In call order: the name given (else the backend's own) and the source.
    backends: Vec<(Option<String>, BackendSource)>,
    default: Option<DefaultChoice>,
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

    /// Sets (or replaces) the default backend, under its own name (seed:
    /// `orchestrator=`). Default: native.
    pub fn orchestrator(mut self, orchestrator: Arc<dyn Orchestrator>) -> Self {
        self.default = Some(DefaultChoice::Backend(BackendSource::Instance(
            orchestrator,
        )));
        self
    }

    /// Sets (or replaces) the default backend by registered name, created
    /// with the backend's default configuration when the service is built.
    pub fn orchestrator_named(mut self, name: impl Into<String>) -> Self {
        self.default = Some(DefaultChoice::Backend(BackendSource::Registered(
            name.into(),
            BackendOptions::default(),
        )));
        self
    }

    /// Makes the backend added under `name` the default (checked by
    /// [`Self::build`]).
    pub fn default_backend(mut self, name: impl Into<String>) -> Self {
        self.default = Some(DefaultChoice::Named(name.into()));
        self
    }

    /// Adds a backend under its own [`Orchestrator::name`].
    pub fn backend(mut self, orchestrator: Arc<dyn Orchestrator>) -> Self {
        self.backends
            .push((None, BackendSource::Instance(orchestrator)));
        self
    }

    /// Adds a backend under `name` (what requests ask for and records store).
    pub fn backend_named(
        mut self,
        name: impl Into<String>,
        orchestrator: Arc<dyn Orchestrator>,
    ) -> Self {
        self.backends
            .push((Some(name.into()), BackendSource::Instance(orchestrator)));
        self
    }

    /// Adds the registered backend `name`, created with `options` when the
    /// service is built, under that name. Any registered backend is
    /// configured this way; [`Self::default_backend`] with the same name
    /// makes it the default.
    ///
    /// ```
    /// # use execution_service::ExecutionService;
    /// use orchestrator_core::BackendOptions;
    /// let service = ExecutionService::builder()
    ///     .registered("native", BackendOptions::new())
    ///     .default_backend("native")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(service.default_backend_name(), "native");
    /// ```
    pub fn registered(mut self, name: impl Into<String>, options: BackendOptions) -> Self {
        let name = name.into();
        self.backends
            .push((Some(name.clone()), BackendSource::Registered(name, options)));
        self
    }

    /// Adds the docker orchestrator (seed: `docker_orchestrator=`): the
    /// backend named [`DOCKER_BACKEND`]. Default: none.
    pub fn docker_orchestrator(self, docker: Arc<dyn Orchestrator>) -> Self {
        self.backend_named(DOCKER_BACKEND, docker)
    }

    /// Adds the docker orchestrator by registered name.
    pub fn docker_orchestrator_named(mut self, name: impl Into<String>) -> Self {
        self.backends.push((
            Some(DOCKER_BACKEND.to_string()),
            BackendSource::Registered(name.into(), BackendOptions::default()),
        ));
        self
    }

    /// Creates registered backends and the service. An unregistered name,
    /// or a default naming no added backend, is
    /// [`ServiceError::UnknownBackend`]; a backend that fails to initialise
    /// is [`ServiceError::Orchestrator`].
    pub fn build(self) -> Result<ExecutionService, ServiceError> {
        let mut by_name = BTreeMap::new();
        for (name, source) in self.backends {
            let orchestrator = source.resolve()?;
            let name = name.unwrap_or_else(|| orchestrator.name().to_string());
            by_name.insert(name, orchestrator);
        }
        let default = match self.default {
            Some(DefaultChoice::Backend(source)) => {
                let orchestrator = source.resolve()?;
                Backend {
                    name: orchestrator.name().to_string(),
                    orchestrator,
                }
            }
            Some(DefaultChoice::Named(name)) => match by_name.get(&name) {
                Some(o) => Backend {
                    orchestrator: o.clone(),
                    name,
                },
                None => {
                    return Err(ServiceError::UnknownBackend {
                        name,
                        available: by_name.into_keys().collect(),
                    })
                }
            },
            None => Backend {
                orchestrator: match by_name.get(NATIVE_BACKEND) {
                    Some(o) => o.clone(),
                    None => default_orchestrator()?,
                },
                name: NATIVE_BACKEND.to_string(),
            },
        };
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn ExecutionStore>);
        let (cleanups, _) = watch::channel(0usize);
        Ok(ExecutionService {
            inner: Arc::new(Inner {
                store,
                backends: Backends::new(by_name, default),
                cleanups,
            }),
        })
    }
}

/// Creates a registered backend by name with `options`
/// ([`BackendOptions::default`] for its default configuration). An
/// unregistered name is [`ServiceError::UnknownBackend`] listing the
/// registered ones; options the backend refuses, or a failure to
/// initialise, is [`ServiceError::Orchestrator`] (operation `create`).
pub fn create_backend(
    name: &str,
    options: &BackendOptions,
) -> Result<Arc<dyn Orchestrator>, ServiceError> {
    if registry::find(name).is_none() {
        return Err(ServiceError::UnknownBackend {
            name: name.to_string(),
            available: registry::names().into_iter().map(String::from).collect(),
        });
    }
    registry::create_with(name, options).map_err(|e| ServiceError::backend("create", name, e))
}

/// The default orchestrator: the native backend with its default
/// configuration.
fn default_orchestrator() -> Result<Arc<dyn Orchestrator>, ServiceError> {
    let native = NativeOrchestrator::new(NativeConfig::default())
        .map_err(|e| ServiceError::backend("create", NATIVE_BACKEND, e))?;
    Ok(Arc::new(native))
}

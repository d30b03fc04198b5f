//! Routing: which of the service's named backends serves a request or a
//! record.
//!
//! The service keeps its backends in a map by name with one default. The
//! seed's `use_docker` / `docker()` view of it is [`DOCKER_BACKEND`]: the only
//! place that name is spelled out.

use std::collections::BTreeMap;
use std::sync::Arc;

use orchestrator_core::{BackendOptions, Orchestrator, WorkspaceId};

use super::{create_backend, ExecutionService};
use crate::error::ServiceError;
use crate::record::{BackendPreference, ExecutionRecord};

/// The name of the seed's docker orchestrator in a service's backend map:
/// `use_docker`, [`BackendPreference::Docker`],
/// [`ExecutionService::docker`] and
/// [`ExecutionServiceBuilder::docker_orchestrator`](super::ExecutionServiceBuilder::docker_orchestrator)
/// all mean the backend of this name.
pub const DOCKER_BACKEND: &str = "docker";

/// The name of the backend a service uses when its builder names no other
/// default: the native backend, created on demand.
pub const DEFAULT_BACKEND: &str = orchestrator_native::BACKEND_NAME;

/// A backend as one execution sees it: the name it has in the service (what
/// records store) and the instance.
#[derive(Clone)]
pub(super) struct Backend {
    pub(super) name: String,
    pub(super) orchestrator: Arc<dyn Orchestrator>,
}

impl Backend {
    /// Removes a sandbox; a failure names this backend.
    pub(super) async fn cleanup(&self, ws: &WorkspaceId) -> Result<(), ServiceError> {
        self.orchestrator
            .cleanup(ws)
            .await
            .map_err(|e| ServiceError::backend("cleanup", &self.name, e))
    }
}

/// The service's backends by name, and which one is the default.
pub(super) struct Backends {
    by_name: BTreeMap<String, Arc<dyn Orchestrator>>,
    default: Backend,
}

impl Backends {
    /// The backends in `by_name` plus `default`, which replaces any backend
    /// of the same name.
    pub(super) fn new(
        mut by_name: BTreeMap<String, Arc<dyn Orchestrator>>,
        default: Backend,
    ) -> Self {
        by_name.insert(default.name.clone(), default.orchestrator.clone());
        Self { by_name, default }
    }

    pub(super) fn default_backend(&self) -> &Backend {
        &self.default
    }

    pub(super) fn get(&self, name: &str) -> Option<&Arc<dyn Orchestrator>> {
        self.by_name.get(name)
    }

    /// The default first, then the others by name.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &Arc<dyn Orchestrator>)> {
        let default = &self.default;
        std::iter::once((default.name.as_str(), &default.orchestrator)).chain(
            self.by_name
                .iter()
                .filter(move |(name, _)| **name != default.name)
                .map(|(name, o)| (name.as_str(), o)),
        )
    }

    /// The backend of this name, or [`ServiceError::UnknownBackend`] listing
    /// the configured ones.
    pub(super) fn lookup(&self, name: &str) -> Result<Backend, ServiceError> {
        match self.by_name.get(name) {
            Some(o) => Ok(Backend {
                name: name.to_string(),
                orchestrator: o.clone(),
            }),
            None => Err(ServiceError::UnknownBackend {
                name: name.to_string(),
                available: self.iter().map(|(n, _)| n.to_string()).collect(),
            }),
        }
    }
}

impl ExecutionService {
    /// The backend a request goes to: [`DOCKER_BACKEND`] with `use_docker`
    /// or a docker preference, the named one for a named preference, else
    /// the default. `use_docker` together with a request naming another
    /// backend is an invalid request.
    pub(super) fn route(
        &self,
        pref: &BackendPreference,
        use_docker: bool,
    ) -> Result<Backend, ServiceError> {
        let backends = &self.inner.backends;
        let backend = match pref {
            _ if use_docker => backends.lookup(DOCKER_BACKEND)?,
            BackendPreference::Docker => backends.lookup(DOCKER_BACKEND)?,
            BackendPreference::Default => backends.default_backend().clone(),
            BackendPreference::Named(name) => backends.lookup(name)?,
        };
        if let (true, BackendPreference::Named(name)) = (use_docker, pref) {
            if *name != backend.name {
                return Err(ServiceError::InvalidRequest(
                    orchestrator_core::Error::invalid(format!(
                        "the request asks for backend {name:?} but use_docker selects {:?}",
                        backend.name
                    )),
                ));
            }
        }
        Ok(backend)
    }

    /// The configured backend holding a record's sandbox.
    pub(super) fn backend_of(&self, rec: &ExecutionRecord) -> Result<Backend, ServiceError> {
        match &rec.backend {
            Some(name) => self.inner.backends.lookup(name),
            None => Err(ServiceError::InvalidState {
                id: rec.id.clone(),
                state: rec.state,
                operation: "find the backend of",
            }),
        }
    }

    /// Like [`Self::backend_of`], falling back to creating the recorded
    /// backend from the registry: recovery must reach records written by a
    /// service configured differently.
    pub(super) fn backend_for_recovery(
        &self,
        rec: &ExecutionRecord,
    ) -> Result<Backend, ServiceError> {
        match (self.backend_of(rec), &rec.backend) {
            (Ok(b), _) => Ok(b),
            (Err(_), Some(name)) => Ok(Backend {
                name: name.clone(),
                orchestrator: create_backend(name, &BackendOptions::default())?,
            }),
            (Err(e), None) => Err(e),
        }
    }
}

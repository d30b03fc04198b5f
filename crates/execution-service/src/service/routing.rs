//! Routing: which backend serves a request or a record.

use std::sync::Arc;

use orchestrator_core::Orchestrator;

use crate::error::ServiceError;
use crate::record::{BackendPreference, ExecutionRecord};

use super::{create_backend, ExecutionService};

/// Which of the service's two backend slots holds a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Default,
    Docker,
}

impl ExecutionService {
    pub(super) fn slot(&self, slot: Slot) -> Result<Arc<dyn Orchestrator>, ServiceError> {
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
    pub(super) fn resolve(
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
    pub(super) fn backend_of(
        &self,
        rec: &ExecutionRecord,
    ) -> Result<Arc<dyn Orchestrator>, ServiceError> {
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
    pub(super) fn backend_for_recovery(
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
}

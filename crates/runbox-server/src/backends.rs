//! [`Backends`]: one execution service per backend configuration a request
//! asks for (name, isolation, network), made on first use and shared after,
//! all over the one record store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use execution_service::{ExecutionService, ExecutionStore};
use orchestrator_core::{registry, BackendOptions, Capabilities, Orchestrator};
use serde_json::{json, Value};

use crate::model::{Isolation, Network};
use crate::problem::ApiError;

/// Which instance of a backend: isolation and network are settings of the
/// instance, not of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendKey {
    /// The registered name.
    pub name: String,
    /// Its isolation setting.
    pub isolation: Isolation,
    /// Its network setting (`None`: the backend's default).
    pub network: Option<Network>,
}

impl BackendKey {
    /// The default instance of backend `name`.
    pub fn plain(name: &str) -> Self {
        Self {
            name: name.to_string(),
            isolation: Isolation::Auto,
            network: None,
        }
    }
}

/// A backend instance and the service over it.
#[derive(Clone, Debug)]
pub struct Served {
    /// The service (its default backend is this instance).
    pub service: ExecutionService,
    /// The instance.
    pub orch: Arc<dyn Orchestrator>,
}

/// The instances made so far.
#[derive(Debug)]
pub struct Backends {
    store: Arc<dyn ExecutionStore>,
    made: Mutex<HashMap<BackendKey, Served>>,
}

fn isolation_setting(i: Isolation) -> &'static str {
    match i {
        Isolation::Auto => "auto",
        Isolation::Full => "full",
        Isolation::None => "none",
    }
}

impl Backends {
    /// No instances yet; every service will share `store`.
    pub fn new(store: Arc<dyn ExecutionStore>) -> Self {
        Self {
            store,
            made: Mutex::new(HashMap::new()),
        }
    }

    /// The instance for `key`, made now if it is the first ask. Creating a
    /// backend may block (a daemon connection), so it runs off the runtime.
    pub async fn get(&self, key: &BackendKey) -> Result<Served, ApiError> {
        if let Some(s) = self.lock().get(key) {
            return Ok(s.clone());
        }
        if registry::find(&key.name).is_none() {
            return Err(ApiError::invalid(format!(
                "unknown backend {:?} (registered: {})",
                key.name,
                registry::names().join(", ")
            )));
        }
        let mut options =
            BackendOptions::new().setting("isolation", isolation_setting(key.isolation));
        if let Some(n) = key.network {
            options = options.setting(
                "network",
                match n {
                    Network::None => "none",
                    Network::Host => "host",
                },
            );
        }
        let name = key.name.clone();
        let made = tokio::task::spawn_blocking(move || registry::create_with(&name, &options))
            .await
            .map_err(|e| ApiError::internal(format!("backend creation panicked: {e}")))?;
        let orch = made.map_err(|e| {
            let mut api = ApiError::from(&e);
            api.detail = format!("cannot create backend {}: {e}", key.name);
            api
        })?;
        let service = ExecutionService::builder()
            .shared_store(self.store.clone())
            .backend_named(key.name.clone(), orch.clone())
            .default_backend(key.name.clone())
            .build()
            .map_err(ApiError::from)?;
        let served = Served { service, orch };
        // Two first asks at once: keep the one that got in first.
        let mut made = self.lock();
        Ok(made.entry(key.clone()).or_insert(served).clone())
    }

    /// The instance a request asks for (`default` when it names no
    /// backend), checked: no host network asked as `none`, images only for
    /// backends that run them.
    pub async fn for_request(
        &self,
        default: &str,
        backend: &Option<String>,
        isolation: Option<crate::model::Isolation>,
        network: Option<crate::model::Network>,
        image: &Option<String>,
    ) -> Result<Served, ApiError> {
        let name = backend.clone().unwrap_or_else(|| default.to_string());
        let key = BackendKey {
            name: name.clone(),
            isolation: isolation.unwrap_or_default(),
            network,
        };
        if key.isolation == crate::model::Isolation::None
            && network == Some(crate::model::Network::None)
        {
            return Err(ApiError::invalid(
                "network \"none\" needs isolation: a sandbox without isolation has the host's network",
            ));
        }
        let served = self.get(&key).await?;
        if let Some(img) = image {
            if img.trim().is_empty() {
                return Err(ApiError::invalid("`image` is empty"));
            }
            if !served.orch.capabilities().images {
                return Err(ApiError::invalid(format!(
                    "the {name} backend does not use images; leave `image` out or pick a backend that runs them"
                )));
            }
        }
        Ok(served)
    }

    /// Every instance made so far.
    pub fn all(&self) -> Vec<Served> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BackendKey, Served>> {
        self.made.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A backend's capabilities as JSON (`runbox backends --json`, `/v1/info`).
pub fn capabilities_json(c: &Capabilities) -> Value {
    json!({
        "copy": c.copy,
        "background": c.background,
        "direct_access": c.direct_access,
        "network_isolation": c.network_isolation,
        "isolation": c.isolation,
        "mounts": c.mounts,
        "images": c.images,
        "oom_detection": c.oom_detection,
        "limits": c.limits.iter().map(|k| k.name()).collect::<Vec<_>>(),
    })
}

//! The backend registry: each backend crate submits a [`BackendRegistration`]
//! through `inventory`, and callers create backends by name.
//!
//! A crate nobody references is not linked, so its registration vanishes:
//! whoever wants a backend available by name must reference its crate (for
//! example `use orchestrator_native as _;`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::orchestrator::Orchestrator;

/// One step of a long preparation a backend reports while it works (an
/// image pull, a root filesystem being built), for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    /// What is being prepared ("image runbox-testbox:latest").
    pub task: String,
    /// The part the event is about (a layer), when it is about one.
    pub item: Option<String>,
    /// The backend's status text ("Downloading", "Pull complete").
    pub status: String,
    /// Bytes (or units) done, when known.
    pub current: Option<u64>,
    /// Bytes (or units) in total, when known.
    pub total: Option<u64>,
}

/// A callback receiving [`ProgressEvent`]s; it runs on the backend's task,
/// so it must be short.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(&ProgressEvent) + Send + Sync>);

impl Progress {
    /// Wraps a callback.
    pub fn new(f: impl Fn(&ProgressEvent) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Hands one event to the callback.
    pub fn emit(&self, event: &ProgressEvent) {
        (self.0)(event)
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// Options for creating a backend by name: the same for every backend, so
/// callers (the CLI, the server) configure any registered backend without
/// knowing which one it is. A backend uses what applies to it, ignores
/// `image` when it runs no images, and answers [`Error::InvalidInput`] for
/// a `pool_size` or a setting it does not understand.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// The default image of container backends.
    pub image: Option<String>,
    /// How many sandboxes to keep ready (a warm pool); `None`: the
    /// backend's default (usually no pool).
    pub pool_size: Option<usize>,
    /// Backend-specific settings, by name.
    pub settings: BTreeMap<String, String>,
    /// Where the backend reports long preparations (image pulls).
    pub progress: Option<Progress>,
}

impl BackendOptions {
    /// No options: the backend's defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the default image.
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }
    /// Sets the warm pool size.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = Some(n);
        self
    }
    /// Sets the progress callback.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }
    /// Sets a backend-specific setting.
    pub fn setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }

    /// For backends: [`Error::InvalidInput`] naming the first setting that
    /// is not in `known`, or a pool size when the backend has no pool.
    pub fn check(&self, backend: &str, known: &[&str], has_pool: bool) -> Result<()> {
        if let Some(k) = self.settings.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Error::invalid(format!(
                "backend {backend} has no setting {k:?} (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        if self.pool_size.is_some() && !has_pool {
            return Err(Error::invalid(format!(
                "backend {backend} has no warm pool"
            )));
        }
        Ok(())
    }
}

/// Creates a backend from options.
pub type BackendFactory = fn(&BackendOptions) -> Result<Arc<dyn Orchestrator>>;

/// One registered backend.
pub struct BackendRegistration {
    /// Unique name ("native", "docker").
    pub name: &'static str,
    /// One line for `runbox backends`.
    pub description: &'static str,
    /// Creates the backend from options.
    pub factory: BackendFactory,
}

impl BackendRegistration {
    /// A registration, usable in `inventory::submit!`.
    pub const fn new(
        name: &'static str,
        description: &'static str,
        factory: BackendFactory,
    ) -> Self {
        Self {
            name,
            description,
            factory,
        }
    }
}

impl std::fmt::Debug for BackendRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendRegistration")
            .field("name", &self.name)
            .field("description", &self.description)
            .finish()
    }
}

inventory::collect!(BackendRegistration);

/// Registers a backend. Use once per backend crate, at module level:
///
/// ```ignore
/// orchestrator_core::register_backend!("mybackend", "what it is", my_factory);
/// ```
#[macro_export]
macro_rules! register_backend {
    ($name:expr, $description:expr, $factory:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::BackendRegistration::new($name, $description, $factory)
        }
    };
}

/// Every registered backend, sorted by name.
///
/// # Panics
/// When two backends registered the same name: that is a build mistake (two
/// crates claiming one name), not a runtime condition.
pub fn backends() -> Vec<&'static BackendRegistration> {
    let mut all: Vec<&'static BackendRegistration> =
        inventory::iter::<BackendRegistration>.into_iter().collect();
    all.sort_by(|a, b| a.name.cmp(b.name));
    for pair in all.windows(2) {
        if pair[0].name == pair[1].name {
            panic!(
                "runbox: two backends registered the name {:?} ({:?} and {:?}); backend names must be unique",
                pair[0].name, pair[0].description, pair[1].description
            );
        }
    }
    all
}

/// The names of every registered backend, sorted.
pub fn names() -> Vec<&'static str> {
    backends().into_iter().map(|b| b.name).collect()
}

/// Looks up a registration by name.
pub fn find(name: &str) -> Option<&'static BackendRegistration> {
    backends().into_iter().find(|b| b.name == name)
}

/// Creates a backend by name with its defaults. An unknown name is
/// [`Error::NotFound`] whose id lists the known ones.
pub fn create(name: &str) -> Result<Arc<dyn Orchestrator>> {
    create_with(name, &BackendOptions::default())
}

/// Creates a backend by name with options.
pub fn create_with(name: &str, options: &BackendOptions) -> Result<Arc<dyn Orchestrator>> {
    match find(name) {
        Some(reg) => (reg.factory)(options),
        None => Err(Error::NotFound {
            what: "backend",
            id: format!("{name} (registered: {})", names().join(", ")),
        }),
    }
}

//! The backend registry: each backend crate submits a [`BackendRegistration`]
//! through `inventory`, and callers create backends by name.
//!
//! A crate nobody references is not linked, so its registration vanishes:
//! whoever wants a backend available by name must reference its crate (for
//! example `use orchestrator_native as _;`).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::orchestrator::Orchestrator;

/// One registered backend.
pub struct BackendRegistration {
    /// Unique name ("native", "docker").
    pub name: &'static str,
    /// One line for `runbox backends`.
    pub description: &'static str,
    /// Creates the backend with its default configuration.
    pub factory: fn() -> Result<Arc<dyn Orchestrator>>,
}

impl BackendRegistration {
    /// A registration, usable in `inventory::submit!`.
    pub const fn new(
        name: &'static str,
        description: &'static str,
        factory: fn() -> Result<Arc<dyn Orchestrator>>,
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

/// Creates a backend by name. An unknown name is [`Error::NotFound`] whose id
/// lists the known ones.
pub fn create(name: &str) -> Result<Arc<dyn Orchestrator>> {
    match find(name) {
        Some(reg) => (reg.factory)(),
        None => Err(Error::NotFound {
            what: "backend",
            id: format!("{name} (registered: {})", names().join(", ")),
        }),
    }
}

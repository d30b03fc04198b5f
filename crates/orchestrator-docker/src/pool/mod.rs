//! The opt-in warm pool ([`crate::DockerConfig::warm_pool`]): started
//! workspace containers of the default image, kept ready so that
//! `create_workspace` does not pay for a container create and start. This
//! file holds the pool's state and which specs it serves; `refill` fills
//! it, `take` hands its containers out.

mod refill;
mod take;

use std::collections::HashSet;
use std::sync::Mutex;

use orchestrator_core::{WorkspaceId, WorkspaceSpec};
use tokio::sync::watch;

use crate::container::{self, lock};

pub(crate) use refill::{top_up, RefillCtx};

/// A started container waiting in the pool.
#[derive(Debug)]
pub(crate) struct Pooled {
    /// The workspace id it was created (and labelled) for.
    pub id: WorkspaceId,
    /// The container id.
    pub container: String,
}

/// The pool's state, behind [`Shared::pool`].
pub(crate) type PoolState = orchestrator_core::pool::PoolState<Pooled>;

pub use orchestrator_core::PoolStats;

/// State shared between a backend and its refill tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub pool: Mutex<PoolState>,
    /// Images this backend has seen present (no inspect before creating).
    pub images: Mutex<HashSet<String>>,
    /// Bumped whenever a refill ends (for `warm_up` to wait on).
    pub refilled: watch::Sender<u64>,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            pool: Mutex::new(PoolState::default()),
            images: Mutex::new(HashSet::new()),
            refilled: watch::Sender::new(0),
        }
    }

    pub fn stats(&self, size: usize) -> PoolStats {
        lock(&self.pool).stats(size)
    }

    /// Closes the pool; returns the containers waiting in it.
    pub fn close(&self) -> Vec<String> {
        let mut st = lock(&self.pool);
        st.closed = true;
        st.ready.drain(..).map(|p| p.container).collect()
    }
}

/// Whether an execution id can be carried in a container name (Docker
/// names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
pub(crate) fn name_safe(execution_id: &str) -> bool {
    !execution_id.is_empty()
        && execution_id.len() <= 128
        && execution_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether a spec may take a pooled container: the default image, no
/// labels or mounts of its own (neither can be added to an existing
/// container), and an execution id (if any) that fits in a container name.
pub(crate) fn poolable(spec: &WorkspaceSpec, default_image: &str) -> bool {
    spec.image.as_deref().is_none_or(|i| i == default_image)
        && spec.labels.is_empty()
        && spec.mounts.is_empty()
        && spec.execution_id.as_deref().is_none_or(name_safe)
}

/// The name a pooled container is renamed to when its workspace serves an
/// execution: `runbox-<workspace id>_<execution id>`.
pub(crate) fn name_with_execution(id: &WorkspaceId, execution_id: &str) -> String {
    format!("{}_{execution_id}", container::name_of(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::ResourceLimits;
    use std::sync::Arc;

    #[test]
    fn execution_ids_in_names() {
        assert!(name_safe("ex-19ab-12f-1a2b3"));
        assert!(name_safe("a.b_c-D9"));
        assert!(!name_safe(""));
        assert!(!name_safe("a b"));
        assert!(!name_safe("a/b"));
        assert!(!name_safe("é"));
        assert!(!name_safe(&"x".repeat(129)));
        let id = WorkspaceId::new("dk-1-2-3").unwrap();
        assert_eq!(name_with_execution(&id, "ex-1"), "runbox-dk-1-2-3_ex-1");
    }

    #[test]
    fn which_specs_are_poolable() {
        let img = "runbox-testbox:latest";
        assert!(poolable(&WorkspaceSpec::new(), img));
        assert!(poolable(&WorkspaceSpec::new().image(img), img));
        assert!(poolable(&WorkspaceSpec::new().execution_id("ex-1"), img));
        let limits = ResourceLimits::builder().pids(5).build().unwrap();
        assert!(poolable(&WorkspaceSpec::new().limits(limits), img));
        assert!(!poolable(&WorkspaceSpec::new().image("other:1"), img));
        assert!(!poolable(&WorkspaceSpec::new().label("a", "b"), img));
        let data = orchestrator_core::SandboxPath::new("data").unwrap();
        let mount = orchestrator_core::Mount::new("/srv", data, true).unwrap();
        assert!(!poolable(&WorkspaceSpec::new().mount(mount), img));
        assert!(!poolable(&WorkspaceSpec::new().execution_id("a b"), img));
    }

    #[test]
    fn closed_pool_gets_no_refills_and_hands_back() {
        let shared = Arc::new(Shared::new());
        {
            let mut st = lock(&shared.pool);
            st.ready.push_back(Pooled {
                id: WorkspaceId::new("dk-x").unwrap(),
                container: "c1".into(),
            });
        }
        assert_eq!(shared.close(), vec!["c1".to_string()]);
        // No runtime here: top_up must not spawn (it would panic).
        top_up(&shared, 4, || {
            unreachable!("a closed pool starts no refill")
        });
        assert_eq!(shared.stats(4).in_flight, 0);
    }
}

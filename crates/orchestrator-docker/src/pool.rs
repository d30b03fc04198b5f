//! The opt-in warm pool ([`crate::DockerConfig::warm_pool`]): started
//! workspace containers of the default image, kept ready so that
//! `create_workspace` does not pay for a container create and start.
//!
//! Refills run as tokio tasks that hold only a [`Weak`] reference to the
//! backend's [`Shared`] state, never a strong one across a daemon request:
//! a refill that ends after the backend was dropped (or closed its pool)
//! removes the container it made, and one cancelled mid-way (its runtime
//! shut down) removes it from its `Drop`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bollard::Docker;
use orchestrator_core::{ResourceLimits, WorkspaceId, WorkspaceSpec};
use tokio::sync::watch;

use crate::config::DockerConfig;
use crate::container::{self, lock, Recipe};
use crate::error::DockerOrchestratorError as E;
use crate::owner::Owner;

/// How long a cancelled refill keeps looking for a container whose create
/// request was in flight (the daemon finishes it anyway).
const AWAIT_IN_FLIGHT_CREATE: Duration = Duration::from_millis(1500);

/// A started container waiting in the pool.
#[derive(Debug)]
pub(crate) struct Pooled {
    /// The workspace id it was created (and labelled) for.
    pub id: WorkspaceId,
    /// The container id.
    pub container: String,
}

/// The pool's state, behind [`Shared::pool`].
#[derive(Debug, Default)]
pub(crate) struct PoolState {
    /// Set when the backend is dropped: refills then remove what they make.
    pub closed: bool,
    /// Started containers, oldest first.
    pub ready: VecDeque<Pooled>,
    /// Refills running.
    pub in_flight: usize,
    pub hits: u64,
    pub misses: u64,
    pub discarded: u64,
    pub refill_failures: u64,
    pub last_error: Option<String>,
}

/// Counters of a backend's warm pool ([`crate::DockerOrchestrator::pool_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The configured size ([`DockerConfig::warm_pool`]).
    pub size: usize,
    /// Started containers waiting in the pool now.
    pub ready: usize,
    /// Refills running now.
    pub in_flight: usize,
    /// Workspaces handed out from the pool.
    pub hits: u64,
    /// Poolable `create_workspace` calls that found the pool empty (and
    /// created their container cold).
    pub misses: u64,
    /// Pooled containers found unusable when taken (not running, or the
    /// limits or the rename could not be applied): removed, and the
    /// workspace was created cold instead.
    pub discarded: u64,
    /// Refills that failed (the pool stays short until the next top-up).
    pub refill_failures: u64,
}

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
        let st = lock(&self.pool);
        PoolStats {
            size,
            ready: st.ready.len(),
            in_flight: st.in_flight,
            hits: st.hits,
            misses: st.misses,
            discarded: st.discarded,
            refill_failures: st.refill_failures,
        }
    }

    /// Closes the pool; returns the containers waiting in it.
    pub fn close(&self) -> Vec<String> {
        let mut st = lock(&self.pool);
        st.closed = true;
        st.ready.drain(..).map(|p| p.container).collect()
    }
}

/// What a refill needs, owned (nothing borrowed from the backend).
#[derive(Debug)]
pub(crate) struct RefillCtx {
    pub docker: Docker,
    pub config: Arc<DockerConfig>,
    pub owner: Owner,
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
/// labels of its own (labels cannot be added to an existing container), and
/// an execution id (if any) that fits in a container name.
pub(crate) fn poolable(spec: &WorkspaceSpec, default_image: &str) -> bool {
    spec.image.as_deref().is_none_or(|i| i == default_image)
        && spec.labels.is_empty()
        && spec.execution_id.as_deref().is_none_or(name_safe)
}

/// The name a pooled container is renamed to when its workspace serves an
/// execution: `runbox-<workspace id>_<execution id>`.
pub(crate) fn name_with_execution(id: &WorkspaceId, execution_id: &str) -> String {
    format!("{}_{execution_id}", container::name_of(id))
}

/// Starts refills until ready + in flight reach `size` (a closed pool gets
/// none). Must run inside a tokio runtime.
pub(crate) fn top_up(shared: &Arc<Shared>, size: usize, ctx: impl FnOnce() -> RefillCtx) {
    let n = {
        let mut st = lock(&shared.pool);
        if st.closed {
            0
        } else {
            let want = size.saturating_sub(st.ready.len() + st.in_flight);
            st.in_flight += want;
            want
        }
    };
    if n == 0 {
        return;
    }
    let ctx = Arc::new(ctx());
    for _ in 0..n {
        tokio::spawn(refill(Arc::downgrade(shared), ctx.clone()));
    }
}

/// Undoes a refill that did not run to its end (its task was cancelled):
/// counts it out of `in_flight` and removes what it made.
struct RefillGuard {
    shared: Weak<Shared>,
    config: Arc<DockerConfig>,
    /// Still counted in `in_flight`.
    counted: bool,
    /// The container's name while its create request is in flight.
    creating: Option<String>,
    /// The container, once created and until the pool (or a removal) has it.
    created: Option<String>,
}

impl RefillGuard {
    /// Ends the refill's share of `in_flight`, adding the container to the
    /// pool when given one and the pool is open. Returns the container
    /// back when it was not added.
    fn settle(&mut self, made: Result<Pooled, String>) -> Option<Pooled> {
        self.counted = false;
        let Some(shared) = self.shared.upgrade() else {
            return made.ok();
        };
        let back = {
            let mut st = lock(&shared.pool);
            st.in_flight = st.in_flight.saturating_sub(1);
            match made {
                Ok(p) if !st.closed => {
                    st.ready.push_back(p);
                    self.created = None;
                    None
                }
                Ok(p) => Some(p),
                Err(reason) => {
                    st.refill_failures += 1;
                    st.last_error = Some(reason);
                    None
                }
            }
        };
        shared.refilled.send_modify(|n| *n = n.wrapping_add(1));
        back
    }
}

impl Drop for RefillGuard {
    fn drop(&mut self) {
        if self.counted {
            if let Some(shared) = self.shared.upgrade() {
                {
                    let mut st = lock(&shared.pool);
                    st.in_flight = st.in_flight.saturating_sub(1);
                }
                shared.refilled.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        let (targets, wait) = match (self.created.take(), self.creating.take()) {
            (Some(c), _) => (vec![c], Duration::ZERO),
            (None, Some(name)) => (vec![name], AWAIT_IN_FLIGHT_CREATE),
            (None, None) => return,
        };
        tracing::debug!(
            ?targets,
            "removing the container of a cancelled warm-pool refill"
        );
        container::remove_blocking(&self.config, targets.clone(), wait);
        let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
        container::live_remove(&refs);
    }
}

/// Creates and starts one container for the pool.
async fn refill(shared: Weak<Shared>, ctx: Arc<RefillCtx>) {
    let mut guard = RefillGuard {
        shared: shared.clone(),
        config: ctx.config.clone(),
        counted: true,
        creating: None,
        created: None,
    };
    let made = make(&ctx, &mut guard).await;
    if let Err(e) = &made {
        tracing::warn!(error = %e, "warm-pool refill failed");
        if e.status_code() == Some(404) {
            // The image is gone: the next cold create pulls it again.
            if let Some(s) = shared.upgrade() {
                lock(&s.images).remove(&ctx.config.default_image);
            }
        }
    }
    if let Some(p) = guard.settle(made.map_err(|e| e.to_string())) {
        // The backend is gone (or closed its pool): nobody will take it.
        if let Err(e) = container::remove(&ctx.docker, &ctx.config, &p.container).await {
            tracing::warn!(error = %e, container = %p.container, "cannot remove a pooled container of a dropped backend");
        }
        container::live_remove(&[&p.container]);
        guard.created = None;
    }
}

async fn make(ctx: &RefillCtx, guard: &mut RefillGuard) -> Result<Pooled, E> {
    let id = WorkspaceId::new(format!("dk-{}", container::unique(ctx.owner.pid)))
        .map_err(|e| E::Config(e.to_string()))?;
    let name = container::name_of(&id);
    container::live_add(&name);
    guard.creating = Some(name.clone());
    let recipe = Recipe {
        id: &id,
        image: &ctx.config.default_image,
        labels: &BTreeMap::new(),
        execution_id: None,
        limits: &ResourceLimits::default(),
    };
    let created = container::create(&ctx.docker, &ctx.config, &ctx.owner, &recipe).await;
    guard.creating = None;
    let cid = container::settle_live(&name, created)?;
    guard.created = Some(cid.clone());
    if let Err(e) = container::start(&ctx.docker, &ctx.config, &cid).await {
        let _ = container::remove(&ctx.docker, &ctx.config, &cid).await;
        container::live_remove(&[&cid]);
        guard.created = None;
        return Err(e);
    }
    tracing::debug!(workspace = %id, container = %cid, "warm-pool container ready");
    Ok(Pooled { id, container: cid })
}

#[cfg(test)]
mod tests {
    use super::*;

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

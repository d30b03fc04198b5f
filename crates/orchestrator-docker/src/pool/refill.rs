//! Refilling the warm pool: tokio tasks that create and start one
//! container each.
//!
//! A refill holds only a [`Weak`] reference to the backend's [`Shared`]
//! state, never a strong one across a daemon request: a refill that ends
//! after the backend was dropped (or closed its pool) removes the container
//! it made, and one cancelled mid-way (its runtime shut down) removes it
//! from its `Drop`.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bollard::Docker;
use orchestrator_core::owner::Owner;
use orchestrator_core::{ResourceLimits, WorkspaceId};

use super::{Pooled, Shared};
use crate::config::DockerConfig;
use crate::container::{self, lock, Recipe};
use crate::error::DockerOrchestratorError as E;

/// How long a cancelled refill keeps looking for a container whose create
/// request was in flight (the daemon finishes it anyway).
const AWAIT_IN_FLIGHT_CREATE: Duration = Duration::from_millis(1500);

/// What a refill needs, owned (nothing borrowed from the backend).
#[derive(Debug)]
pub(crate) struct RefillCtx {
    pub docker: Docker,
    pub config: Arc<DockerConfig>,
    pub owner: Owner,
    /// The pool's image ([`DockerConfig::default_image`]).
    pub image: String,
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
                lock(&s.images).remove(&ctx.image);
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
        image: &ctx.image,
        labels: &BTreeMap::new(),
        execution_id: None,
        limits: &ResourceLimits::default(),
        mounts: &[],
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

//! The warm pool of sandboxes ([`NativeConfig::warm_pool`], off by default):
//! workspaces whose sandbox init is already running, handed to
//! `create_workspace` (each to exactly one workspace and never back: its
//! cleanup ends it), refilled in the background, drained with the backend.
//!
//! When refills run: a sandbox's start is several milliseconds of work
//! for the kernel and the service, and one made while a command runs slows
//! that command (measured: the run step of a pooled lifecycle 1.6 → 2.3 ms,
//! cleanup 1.2 → 1.8 ms on two cores). So a take does not refill at once
//! unless the pool is below half full; refills start when a cleanup finds
//! no command running, and at the latest [`REFILL_DELAY`] after a take.
//! A pooled workspace's directory carries a workspace name with its owner
//! from the start, so `reap_orphans` removes what a crashed process pooled.
//!
//! [`NativeConfig::warm_pool`]: crate::NativeConfig::warm_pool

use std::path::PathBuf;
use std::sync::Arc;

use orchestrator_core::{PoolStats, Result, WorkspaceId};

use crate::cgroup::WorkspaceCgroup;
use crate::error::NativeOrchestratorError;
use crate::sandbox::Sandbox;
use crate::sync::lock;
use crate::NativeOrchestrator;

/// The largest pool [`crate::NativeConfig::warm_pool`] may ask for.
pub const MAX_WARM_POOL: usize = 64;

/// How long a take leaves a pool that is at least half full before it is
/// refilled anyway (busy or not).
const REFILL_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// A `run_command` in flight, counted in [`crate::backend::Inner::busy`].
pub(crate) struct Busy<'a>(&'a NativeOrchestrator);

impl<'a> Busy<'a> {
    pub(crate) fn new(o: &'a NativeOrchestrator) -> Self {
        o.inner
            .busy
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(o)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0
            .inner
            .busy
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A prepared workspace waiting in the pool.
#[derive(Debug)]
pub(crate) struct Pooled {
    pub id: WorkspaceId,
    pub dir: PathBuf,
    /// The host uid and gid its sandbox user maps to.
    pub ids: (u32, u32),
    pub sandbox: Arc<Sandbox>,
    /// Its cgroup, made ahead with the init seated in it (where this host
    /// has writable cgroups): limits given at `create_workspace` are
    /// written to it, and its commands are born in it.
    pub cgroup: Option<Arc<WorkspaceCgroup>>,
}

/// The pool's state, behind [`crate::backend::Inner::pool`].
pub(crate) type PoolState = orchestrator_core::pool::PoolState<Pooled>;

impl NativeOrchestrator {
    /// The configured pool size (0 when the workspaces are not isolated:
    /// only a sandbox can be prepared ahead).
    fn pool_size(&self) -> usize {
        if self.inner.config.warm_pool > 0 && self.isolating() {
            self.inner.config.warm_pool
        } else {
            0
        }
    }

    /// Makes one pooled workspace: a reserved directory given to a sandbox
    /// id, its cgroup made, its sandbox started with the init seated in
    /// the cgroup.
    async fn prepare(&self) -> Result<Pooled> {
        let (id, dir) = self.reserve()?;
        // A refill cancelled half-way (its runtime shut down) leaves no
        // directory or cgroup behind; its half-started sandbox ends as its
        // socket closes.
        let mut reserved = Reserved {
            dir: Some(dir.clone()),
            cgroup: None,
        };
        let ids = self.host_ids(&id);
        std::os::unix::fs::chown(&dir, Some(ids.0), Some(ids.1))
            .map_err(|e| NativeOrchestratorError::io("chown workspace", &dir, e))?;
        let cgroup = match &self.inner.cgroups {
            Ok(support) => Some(Arc::new(support.create(id.as_str())?)),
            Err(_) => None,
        };
        reserved.cgroup.clone_from(&cgroup);
        let sandbox = Sandbox::start(&self.sandbox_setup(&dir, ids, &[])).await?;
        let seated = match &cgroup {
            Some(cg) => match cg.attach_fds() {
                Ok(fds) => sandbox.join(fds).await,
                Err(e) => Err(e),
            },
            None => Ok(()),
        };
        if let Err(e) = seated {
            sandbox.shutdown().await;
            return Err(e.into());
        }
        reserved.dir = None;
        reserved.cgroup = None;
        Ok(Pooled {
            id,
            dir,
            ids,
            sandbox,
            cgroup,
        })
    }

    /// Ends a pooled workspace that will not be handed out.
    async fn discard(&self, p: Pooled) {
        p.sandbox.shutdown().await;
        if let Some(cg) = &p.cgroup {
            let _ = cg.remove();
        }
        let _ = crate::teardown::remove_tree(&p.dir);
    }

    /// A pooled workspace for a poolable `create_workspace`, if one is
    /// ready (counted as a hit, else as a miss); starts the refill.
    pub(crate) async fn take_pooled(&self) -> Option<Pooled> {
        let size = self.pool_size();
        if size == 0 {
            return None;
        }
        loop {
            let (taken, urgent) = {
                let mut st = lock(&self.inner.pool);
                let p = st.ready.pop_front();
                match &p {
                    Some(p) if p.sandbox.alive() => st.hits += 1,
                    Some(_) => st.discarded += 1,
                    None => st.misses += 1,
                }
                (p, st.ready.len() * 2 < size)
            };
            if urgent {
                self.refill();
            } else {
                self.refill_later();
            }
            match taken {
                Some(p) if p.sandbox.alive() => return Some(p),
                Some(dead) => self.discard(dead).await,
                None => return None,
            }
        }
    }

    /// Starts refills in the background up to the pool's size (needs a
    /// tokio runtime; without one the pool stays short until `warm_up`).
    pub(crate) fn refill(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let size = self.pool_size();
        let n = {
            let mut st = lock(&self.inner.pool);
            let n = st.shortfall(size);
            st.in_flight += n;
            n
        };
        for _ in 0..n {
            let this = self.clone();
            rt.spawn(async move { this.refill_one().await });
        }
    }

    /// Refills now when no command is running (after a cleanup).
    pub(crate) fn refill_if_idle(&self) {
        if self.inner.config.warm_pool > 0
            && self.inner.busy.load(std::sync::atomic::Ordering::Acquire) == 0
        {
            self.refill();
        }
    }

    /// Refills after [`REFILL_DELAY`] whatever runs then (a no-op when a
    /// cleanup has refilled meanwhile).
    fn refill_later(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Weak: a backend dropped meanwhile is not kept alive for this.
        let inner = Arc::downgrade(&self.inner);
        rt.spawn(async move {
            tokio::time::sleep(REFILL_DELAY).await;
            if let Some(inner) = inner.upgrade() {
                NativeOrchestrator { inner }.refill();
            }
        });
    }

    async fn refill_one(&self) {
        let in_flight = InFlight(self);
        let made = self.prepare().await;
        drop(in_flight);
        if let Err(e) = self.keep(made).await {
            tracing::warn!(error = %e, "native warm pool: refill failed");
        }
    }

    /// Puts a prepared workspace in the pool (or ends it, when the pool was
    /// closed meanwhile); a failure to prepare one is counted and returned.
    async fn keep(&self, made: Result<Pooled>) -> Result<()> {
        let closed = {
            let mut st = lock(&self.inner.pool);
            match made {
                Ok(p) if !st.closed => {
                    st.ready.push_back(p);
                    None
                }
                Ok(p) => Some(p),
                Err(e) => {
                    st.refill_failures += 1;
                    st.last_error = Some(e.to_string());
                    return Err(e);
                }
            }
        };
        if let Some(p) = closed {
            self.discard(p).await;
        }
        Ok(())
    }

    /// Fills the pool to its size now, waiting for it; the first refill
    /// error, if any.
    pub async fn warm_up(&self) -> Result<()> {
        let size = self.pool_size();
        loop {
            let full = {
                let pool = lock(&self.inner.pool);
                pool.closed || pool.shortfall(size) == 0
            };
            if full {
                return Ok(());
            }
            let made = self.prepare().await;
            self.keep(made).await?;
        }
    }

    /// The pool's counters.
    pub fn pool_stats(&self) -> PoolStats {
        lock(&self.inner.pool).stats(self.pool_size())
    }

    /// Why the last refill failed, if one did.
    pub fn pool_last_error(&self) -> Option<String> {
        lock(&self.inner.pool).last_error.clone()
    }
}

/// The directory and cgroup of a pooled workspace being made, removed
/// when dropped before it is ready.
struct Reserved {
    dir: Option<PathBuf>,
    cgroup: Option<Arc<WorkspaceCgroup>>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        // The cgroup first: removing it kills what sits in it.
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.remove();
        }
        if let Some(dir) = self.dir.take() {
            let _ = crate::teardown::remove_tree(&dir);
        }
    }
}

/// One refill in flight: counted off when it ends, also when cancelled.
struct InFlight<'a>(&'a NativeOrchestrator);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.0.inner.pool).in_flight -= 1;
    }
}

/// Closes the pool of a backend being dropped: what waits in it is ended
/// (its sandbox told to end, its directory removed), and refills still
/// running discard what they make.
pub(crate) fn drain(inner: &crate::backend::Inner) {
    let waiting: Vec<Pooled> = {
        let mut st = lock(&inner.pool);
        st.closed = true;
        st.ready.drain(..).collect()
    };
    for p in waiting {
        p.sandbox.close();
        // Removing the cgroup kills the init seated in it and waits until
        // it is gone.
        if let Some(cg) = &p.cgroup {
            let _ = cg.remove();
        }
        let _ = crate::teardown::remove_tree(&p.dir);
    }
}

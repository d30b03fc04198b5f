//! Handing out warm-pool containers: taking one for a `create_workspace`
//! (checked, given the spec's limits and execution id), topping the pool
//! up, filling it before first use, and its counters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::RenameContainerOptionsBuilder;
use bollard::Docker;
use orchestrator_core::{ResourceLimits, Result, WorkspaceId, WorkspaceSpec};

use super::{name_with_execution, top_up, PoolStats, Pooled, RefillCtx};
use crate::config::DockerConfig;
use crate::container::{self, lock};
use crate::error::DockerOrchestratorError as E;
use crate::limits;
use crate::DockerOrchestrator;

impl DockerOrchestrator {
    /// The warm pool's image; `None` when the pool is off (`new` refuses
    /// a pool without an image).
    pub(crate) fn pool_image(&self) -> Option<&str> {
        self.config
            .default_image
            .as_deref()
            .filter(|_| self.config.warm_pool > 0)
    }

    /// Starts refills of `image` so the warm pool returns to its size.
    fn top_up(&self, docker: &Docker, image: &str) {
        top_up(&self.shared, self.config.warm_pool, || RefillCtx {
            docker: docker.clone(),
            config: self.refill_config.clone(),
            owner: self.owner.clone(),
            image: image.to_string(),
        });
    }

    /// Takes a container from the warm pool for `spec` (poolable), applies
    /// the spec's limits and execution id to it, and triggers a refill.
    /// `None`: the pool was empty or the container it held was unusable
    /// (then removed); the caller creates one cold.
    pub(crate) async fn take_pooled(
        &self,
        docker: &Docker,
        image: &str,
        spec: &WorkspaceSpec,
        lim: &ResourceLimits,
    ) -> Option<(WorkspaceId, String)> {
        let taken = {
            let mut st = lock(&self.shared.pool);
            let p = st.ready.pop_front();
            if p.is_none() {
                st.misses += 1;
            }
            p
        };
        self.top_up(docker, image);
        let p = taken?;
        let guard = Taken {
            container: Some(p.container.clone()),
            config: self.refill_config.clone(),
        };
        match self.prepare_pooled(docker, &p, spec, lim).await {
            Ok(()) => {
                lock(&self.shared.pool).hits += 1;
                guard.keep();
                Some((p.id, p.container))
            }
            Err(e) => {
                tracing::warn!(error = %e, container = %p.container, "pooled container unusable; creating one cold");
                lock(&self.shared.pool).discarded += 1;
                if let Err(e) = self.remove(&p.container).await {
                    tracing::warn!(error = %e, container = %p.container, "cannot remove an unusable pooled container");
                }
                container::live_remove(&[&p.container]);
                guard.keep();
                None
            }
        }
    }

    /// Checks a pooled container still runs and gives it the spec's
    /// cgroup limits and (in its name) execution id, all at once.
    async fn prepare_pooled(
        &self,
        docker: &Docker,
        p: &Pooled,
        spec: &WorkspaceSpec,
        lim: &ResourceLimits,
    ) -> std::result::Result<(), E> {
        let running = async {
            let info = self
                .call(
                    "inspect container",
                    docker.inspect_container(&p.container, None),
                )
                .await?;
            if info.state.and_then(|s| s.running) == Some(true) {
                Ok(())
            } else {
                Err(E::Helper {
                    container: p.container.clone(),
                    reason: "the pooled container is not running".into(),
                })
            }
        };
        let cg = limits::cgroup_fields(lim);
        let update = async {
            if cg == limits::CgroupFields::default() {
                return Ok(());
            }
            self.call(
                "update container",
                docker.update_container(&p.container, cg.update_body()),
            )
            .await
        };
        let rename = async {
            let Some(e) = &spec.execution_id else {
                return Ok(());
            };
            let opts = RenameContainerOptionsBuilder::default()
                .name(&name_with_execution(&p.id, e))
                .build();
            self.call(
                "rename container",
                docker.rename_container(&p.container, opts),
            )
            .await
        };
        tokio::try_join!(running, update, rename)?;
        Ok(())
    }

    /// Fills the warm pool ([`DockerConfig::warm_pool`]) and waits until it
    /// is full, for callers that want it ready before their first
    /// workspace. Makes sure the default image exists first. Fails with the
    /// refill's error when a refill started meanwhile fails, or when the
    /// pool is not full within `request_timeout` × (2 + size). Does nothing
    /// when the pool is off.
    pub async fn warm_up(&self) -> Result<()> {
        let size = self.config.warm_pool;
        let Some(image) = self.pool_image() else {
            return Ok(());
        };
        self.ensure_image_cached(image).await?;
        let docker = self.docker().await?;
        let mut refilled = self.shared.refilled.subscribe();
        let failures = lock(&self.shared.pool).refill_failures;
        let limit = self.config.request_timeout * (2 + size as u32);
        let until = Instant::now() + limit;
        loop {
            self.top_up(&docker, image);
            {
                let st = lock(&self.shared.pool);
                if st.ready.len() >= size {
                    return Ok(());
                }
                if st.refill_failures > failures {
                    return Err(E::WarmPool {
                        reason: st.last_error.clone().unwrap_or_default(),
                    }
                    .into());
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(E::Timeout {
                    operation: "fill the warm pool",
                    timeout: limit,
                }
                .into());
            }
            let _ = tokio::time::timeout(left, refilled.changed()).await;
        }
    }

    /// The warm pool's size and counters (all zero when it is off).
    pub fn pool_stats(&self) -> PoolStats {
        self.shared.stats(self.config.warm_pool)
    }
}

/// A container taken from the pool by a `create_workspace` that has not
/// decided yet: removed if that future is dropped before it does.
struct Taken {
    container: Option<String>,
    config: Arc<DockerConfig>,
}

impl Taken {
    fn keep(mut self) {
        self.container = None;
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let Some(c) = self.container.take() {
            container::remove_blocking(&self.config, vec![c.clone()], Duration::ZERO);
            container::live_remove(&[&c]);
        }
    }
}

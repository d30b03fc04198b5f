//! A workspace's container over its life: creating it (from the warm pool
//! or cold), changing its limits, and removing it at cleanup.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use orchestrator_core::{
    Error, LimitReport, ProcessId, ResourceLimits, Result, WorkspaceId, WorkspaceSpec,
};

use crate::background::Bg;
use crate::client::deadline;
use crate::config::LABEL_WORKSPACE;
use crate::container::{self, lock, Recipe};
use crate::limits;
use crate::pool;
use crate::route::Route;
use crate::DockerOrchestrator;

/// A live workspace of this process.
#[derive(Debug)]
pub(crate) struct Ws {
    pub container: String,
    /// The limits in force, applied to each command's plan.
    pub limits: Mutex<ResourceLimits>,
    pub procs: Mutex<HashMap<ProcessId, Arc<Bg>>>,
    pub next_proc: AtomicU64,
    /// OOM kills of the container's memory cgroup seen so far.
    pub oom_seen: Arc<Mutex<u64>>,
    /// The node daemon running the container, for a swarm workspace;
    /// `None`: the backend's own daemon.
    pub route: Option<Route>,
}

impl Ws {
    /// A workspace of `container` with limits `limits` in force.
    pub fn new(container: String, limits: ResourceLimits, route: Option<Route>) -> Self {
        Self {
            container,
            limits: Mutex::new(limits),
            procs: Mutex::new(HashMap::new()),
            next_proc: AtomicU64::new(0),
            oom_seen: Arc::new(Mutex::new(0)),
            route,
        }
    }
}

impl DockerOrchestrator {
    /// `create_workspace`: a pooled container where the spec allows it,
    /// else one created and started for it.
    pub(crate) async fn create(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        let lim = spec.limits.clone().unwrap_or_default();
        if lim.strict() || self.config.strict_limits {
            limits::report(&lim).check_strict()?;
        }
        let Some(image) = spec.image.as_ref().or(self.config.default_image.as_ref()) else {
            return Err(Error::invalid(
                "no image: set WorkspaceSpec::image or DockerConfig::default_image \
                 (or RUNBOX_DOCKER_IMAGE)",
            ));
        };
        // The daemon would create a missing bind source as an empty
        // directory: a typo must be an error, not an empty mount.
        if let Some(m) = spec.mounts.iter().find(|m| !m.host().exists()) {
            return Err(Error::invalid(format!(
                "mount source {} does not exist",
                m.host().display()
            )));
        }
        let mut made = None;
        if let Some(pool_image) = self.pool_image() {
            if pool::poolable(spec, pool_image) {
                let docker = self.docker().await?;
                made = self.take_pooled(&docker, pool_image, spec, &lim).await;
            }
        }
        let pooled = made.is_some();
        let (id, container) = match made {
            Some(m) => m,
            None => self.create_cold(spec, &lim, image).await?,
        };
        let ws = Arc::new(Ws::new(container.clone(), lim, None));
        tracing::info!(workspace = %id, container = %container, image = %image, pooled, "workspace created");
        lock(&self.workspaces).insert(id.clone(), ws);
        Ok(id)
    }

    /// Creates and starts a container for a new workspace (no pool). An
    /// image that vanished since this backend last saw it is looked up
    /// (and pulled) again, once.
    async fn create_cold(
        &self,
        spec: &WorkspaceSpec,
        lim: &ResourceLimits,
        image: &str,
    ) -> Result<(WorkspaceId, String)> {
        self.ensure_image_cached(image).await?;
        let docker = self.docker().await?;
        let id = WorkspaceId::new(format!("dk-{}", self.unique()))?;
        let recipe = Recipe {
            id: &id,
            image,
            labels: &spec.labels,
            execution_id: spec.execution_id.as_deref(),
            limits: lim,
            mounts: &spec.mounts,
        };
        let name = container::name_of(&id);
        // Marked live before it exists, so a concurrent reap_orphans of
        // another instance never takes it for an orphan.
        container::live_add(&name);
        let created = match container::create(&docker, &self.config, &self.owner, &recipe).await {
            Err(e) if e.status_code() == Some(404) => {
                lock(&self.shared.images).remove(image);
                match self.ensure_image(image).await {
                    Ok(()) => container::create(&docker, &self.config, &self.owner, &recipe)
                        .await
                        .map_err(Error::from),
                    Err(e) => Err(e),
                }
            }
            r => r.map_err(Error::from),
        };
        let cid = container::settle_live(&name, created)?;
        if let Err(e) = container::start(&docker, &self.config, &cid).await {
            let _ = self.remove(&cid).await;
            container::live_remove(&[&cid]);
            return Err(e.into());
        }
        Ok((id, cid))
    }

    /// `apply_resource_limits`: the cgroup-backed limits go to the
    /// container at once, the rest to each later command's plan.
    pub(crate) async fn apply_limits(
        &self,
        id: &WorkspaceId,
        requested: &ResourceLimits,
    ) -> Result<LimitReport> {
        let ws = self.ws(id)?;
        let report = limits::report(requested);
        if requested.strict() || self.config.strict_limits {
            report.check_strict()?;
        }
        let cg = limits::cgroup_fields(requested);
        if cg != limits::CgroupFields::default() {
            let ctx = self.ctx(&ws).await?;
            deadline(
                &ctx.host,
                "update container",
                self.config.request_timeout,
                ctx.docker.update_container(&ws.container, cg.update_body()),
            )
            .await?;
        }
        {
            let mut cur = lock(&ws.limits);
            *cur = cur.overlay(requested);
        }
        tracing::debug!(workspace = %id, ?requested, "limits applied");
        Ok(report)
    }

    /// `cleanup`: removes the workspace's container (and with it its
    /// volume); for a workspace this backend does not hold, the containers
    /// carrying its label whose owner is this process or is gone (another
    /// live owner's stay), then its volumes no container uses.
    pub(crate) async fn remove_workspace(&self, id: &WorkspaceId) -> Result<()> {
        let ws = lock(&self.workspaces).remove(id);
        if let Some(ws) = &ws {
            for bg in lock(&ws.procs).values() {
                bg.abort();
            }
            self.remove(&ws.container).await?;
            container::live_remove(&[&ws.container]);
        } else {
            for c in self.list(LABEL_WORKSPACE, id.as_str()).await? {
                let Some(cid) = &c.id else { continue };
                // A container naming no owner is not taken either.
                if container::owner_of(&c).is_some_and(|o| container::gone_or_me(&o)) {
                    self.remove(cid).await?;
                } else {
                    tracing::info!(workspace = %id, container = %cid, "cleanup leaves a container of another live owner");
                }
            }
            self.remove_dangling_volumes(id).await?;
        }
        tracing::info!(workspace = %id, "workspace cleaned up");
        Ok(())
    }
}

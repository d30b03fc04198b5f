//! [`DockerOrchestrator`]: the [`Orchestrator`] implementation.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::{ContainerSummary, ContainerUpdateBody};
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder,
    RenameContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use orchestrator_core::{
    async_trait, paths, Availability, Capabilities, CommandSpec, Error, ExecOutput, ExitStatus,
    LimitReport, Orchestrator, ProcessId, ProcessSnapshot, ResourceLimits, Result, StartFailure,
    WorkspaceId, WorkspaceSpec,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{connect, deadline};
use crate::config::{
    DockerConfig, PullProgress, LABEL_OWNER_BOOT, LABEL_OWNER_HOST, LABEL_OWNER_PID,
    LABEL_OWNER_START, LABEL_WORKSPACE, MAX_WARM_POOL, OWNER_LABEL, OWNER_VALUE,
};
use crate::container::{self, lock, Recipe, WORKSPACE_DIR};
use crate::error::DockerOrchestratorError as E;
use crate::exec::{self, Capture, Ctx, ExecPlan, DEFAULT_PATH};
use crate::image;
use crate::limits;
use crate::owner::Owner;
use crate::pool::{self, PoolStats, Pooled, RefillCtx, Shared};
use crate::scripts;

/// How long stop waits for a stopped process to be reported ended.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// A background process.
#[derive(Debug)]
struct Bg {
    capture: Arc<Mutex<Capture>>,
    stop_tx: watch::Sender<bool>,
    done: watch::Receiver<Option<ExecOutput>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// A live workspace of this process.
#[derive(Debug)]
struct Ws {
    container: String,
    limits: Mutex<ResourceLimits>,
    procs: Mutex<HashMap<ProcessId, Arc<Bg>>>,
    next_proc: AtomicU64,
    oom_seen: Arc<Mutex<u64>>,
}

/// The Docker backend: each workspace is a container, each command an exec.
///
/// Create it with [`DockerOrchestrator::new`]; it connects lazily (the first
/// request negotiates the API version), so creating it never blocks and
/// never fails for a daemon that is down — [`Orchestrator::is_available`]
/// tells.
#[derive(Debug)]
pub struct DockerOrchestrator {
    config: DockerConfig,
    host: String,
    client: tokio::sync::OnceCell<Docker>,
    owner: Owner,
    workspaces: Mutex<HashMap<WorkspaceId, Arc<Ws>>>,
    /// The warm pool and the image cache; refills hold only a `Weak`.
    shared: Arc<Shared>,
    /// The configuration as refills get it.
    refill_config: Arc<DockerConfig>,
}

/// Kills a command's session when a `run_command` future is dropped before
/// the command ended.
struct KillOnDrop {
    ctx: Option<Ctx>,
    tag: String,
}

impl KillOnDrop {
    fn disarm(&mut self) {
        self.ctx = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                let tag = std::mem::take(&mut self.tag);
                h.spawn(async move {
                    if let Err(e) = exec::kill_session(&ctx, &tag).await {
                        tracing::warn!(error = %e, "cannot kill the command of a dropped run_command");
                    }
                });
            }
        }
    }
}

fn escape(path: &str, reason: impl Into<String>) -> Error {
    Error::PathEscapesSandbox {
        path: PathBuf::from(path),
        reason: reason.into(),
    }
}

impl DockerOrchestrator {
    /// A backend with this configuration. Fails only for a configuration
    /// that cannot work (an unknown `DOCKER_HOST` scheme, an empty image).
    pub fn new(config: DockerConfig) -> Result<Self> {
        if config.default_image.trim().is_empty() {
            return Err(Error::invalid("docker default image is empty"));
        }
        if config.request_timeout.is_zero() || config.availability_timeout.is_zero() {
            return Err(Error::invalid(
                "docker request deadlines must be greater than zero",
            ));
        }
        if config.warm_pool > MAX_WARM_POOL {
            return Err(Error::invalid(format!(
                "docker warm_pool is {}, at most {MAX_WARM_POOL} is allowed",
                config.warm_pool
            )));
        }
        // Only a scheme bollard cannot use is a configuration error; a socket
        // that does not exist (yet) is for is_available to report.
        if let Err(e) = connect(&config) {
            if !matches!(e, E::Unreachable { .. }) {
                return Err(e.into());
            }
        }
        Ok(Self {
            host: config.host_description(),
            refill_config: Arc::new(config.clone()),
            config,
            client: tokio::sync::OnceCell::new(),
            owner: Owner::current(),
            workspaces: Mutex::new(HashMap::new()),
            shared: Arc::new(Shared::new()),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The negotiated client (negotiating on first use).
    async fn docker(&self) -> std::result::Result<Docker, E> {
        self.docker_within(self.config.request_timeout).await
    }

    async fn docker_within(&self, timeout: Duration) -> std::result::Result<Docker, E> {
        let c = self
            .client
            .get_or_try_init(|| crate::client::negotiated(&self.config, timeout))
            .await?;
        Ok(c.clone())
    }

    async fn call<T>(
        &self,
        operation: &'static str,
        fut: impl std::future::Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> std::result::Result<T, E> {
        deadline(&self.host, operation, self.config.request_timeout, fut).await
    }

    /// Pulls `image`, reporting progress to `progress` (or the configured
    /// callback). The error names the image and why the pull failed.
    pub async fn pull_image(&self, image: &str, progress: Option<&PullProgress>) -> Result<()> {
        let docker = self.docker().await?;
        let p = progress.or(self.config.pull_progress.as_ref());
        image::pull(&docker, &self.config, image, p).await?;
        Ok(())
    }

    /// Makes sure `image` exists locally, pulling it when missing (unless
    /// pulling is switched off). Always asks the daemon; `create_workspace`
    /// skips the question for an image this backend has already seen.
    pub async fn ensure_image(&self, image: &str) -> Result<()> {
        self.ensure_image_uncached(image).await?;
        lock(&self.shared.images).insert(image.to_string());
        Ok(())
    }

    /// [`Self::ensure_image`], skipped for an image seen present before.
    async fn ensure_image_cached(&self, image: &str) -> Result<()> {
        if lock(&self.shared.images).contains(image) {
            return Ok(());
        }
        self.ensure_image(image).await
    }

    async fn ensure_image_uncached(&self, image: &str) -> Result<()> {
        let docker = self.docker().await?;
        if image::image_exists(&docker, &self.config, image).await? {
            return Ok(());
        }
        if !self.config.pull_missing {
            return Err(E::ImagePull {
                image: image.to_string(),
                reason: "the image is not available locally and pulling is switched off".into(),
            }
            .into());
        }
        image::pull(
            &docker,
            &self.config,
            image,
            self.config.pull_progress.as_ref(),
        )
        .await?;
        if !image::image_exists(&docker, &self.config, image).await? {
            return Err(E::ImagePull {
                image: image.to_string(),
                reason: "the pull finished but the image is still missing".into(),
            }
            .into());
        }
        Ok(())
    }

    /// A name part no other backend of this process draws.
    fn unique(&self) -> String {
        container::unique(self.owner.pid)
    }

    fn ws(&self, id: &WorkspaceId) -> Result<Arc<Ws>> {
        lock(&self.workspaces)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::workspace_not_found(id))
    }

    async fn ctx(&self, ws: &Ws) -> std::result::Result<Ctx, E> {
        let limits = lock(&ws.limits).clone();
        Ok(Ctx {
            docker: self.docker().await?,
            host: self.host.clone(),
            container: ws.container.clone(),
            request_timeout: self.config.request_timeout,
            pids_limit: limits::cgroup_fields(&limits).pids_limit,
            oom_seen: ws.oom_seen.clone(),
        })
    }

    /// Runs the path resolver in the container; maps its verdicts to errors.
    async fn resolve(&self, ctx: &Ctx, mode: &str, shown: &str, rel: &Path) -> Result<String> {
        let rel_s = rel.to_string_lossy().to_string();
        let (code, out, err) = exec::helper(ctx, scripts::RESOLVE, &[mode, &rel_s]).await?;
        let msg = String::from_utf8_lossy(&out).trim().to_string();
        match code {
            0 => Ok(msg),
            3 => Err(escape(shown, msg)),
            4 => Err(Error::NotFound {
                what: if mode == "dir" { "directory" } else { "path" },
                id: shown.to_string(),
            }),
            6 => Err(Error::invalid(format!("{shown:?}: {msg}"))),
            _ => Err(E::Helper {
                container: ctx.container.clone(),
                reason: format!(
                    "resolving {shown:?} failed ({code}): {msg} {}",
                    String::from_utf8_lossy(&err).trim()
                ),
            }
            .into()),
        }
    }

    /// Validates a command and resolves it into an exec plan.
    async fn plan(&self, ws: &Ws, ctx: &Ctx, cmd: &CommandSpec) -> Result<(ExecPlan, Capture)> {
        cmd.validate()?;
        let workdir = match &cmd.workdir {
            None => WORKSPACE_DIR.to_string(),
            Some(w) => {
                let rel = paths::sandbox_relative(w)?;
                if rel.as_os_str().is_empty() {
                    WORKSPACE_DIR.to_string()
                } else {
                    self.resolve(ctx, "dir", w, &rel).await?
                }
            }
        };
        let limits = lock(&ws.limits).clone();
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
        env.insert("HOME".to_string(), WORKSPACE_DIR.to_string());
        env.insert("LANG".to_string(), "C.UTF-8".to_string());
        for (k, v) in &cmd.env {
            env.insert(k.clone(), v.clone());
        }
        let timeout = match (cmd.timeout, limits.wall_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // A requested limit stops the command; without one, what is kept is
        // still bounded (the rest is dropped, the command goes on).
        let capture = match (cmd.output_limit, limits.output_bytes) {
            (Some(a), Some(b)) => Capture::new(a.min(b), true),
            (None, None) => Capture::new(exec::DEFAULT_OUTPUT_CAP, false),
            (a, b) => Capture::new(a.or(b).unwrap_or(exec::DEFAULT_OUTPUT_CAP), true),
        };
        Ok((
            ExecPlan {
                tag: format!("x{}", self.unique()),
                argv: cmd.argv.clone(),
                env,
                workdir,
                stdin: cmd.stdin.clone(),
                timeout,
                sink: cmd.output.clone(),
                rlimits: limits::exec_rlimits(&limits),
            },
            capture,
        ))
    }

    async fn list(
        &self,
        label: &str,
        value: &str,
    ) -> std::result::Result<Vec<ContainerSummary>, E> {
        let docker = self.docker().await?;
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("label".into(), vec![format!("{label}={value}")]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.call("list containers", docker.list_containers(Some(opts)))
            .await
    }

    /// Removes a container by force; a container already gone is fine.
    async fn remove(&self, container: &str) -> std::result::Result<(), E> {
        let docker = self.docker().await?;
        container::remove(&docker, &self.config, container).await
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

    /// Starts refills so the warm pool returns to its size.
    fn top_up(&self, docker: &Docker) {
        pool::top_up(&self.shared, self.config.warm_pool, || RefillCtx {
            docker: docker.clone(),
            config: self.refill_config.clone(),
            owner: self.owner.clone(),
        });
    }

    /// Takes a container from the warm pool for `spec` (poolable), applies
    /// the spec's limits and execution id to it, and triggers a refill.
    /// `None`: the pool was empty or the container it held was unusable
    /// (then removed); the caller creates one cold.
    async fn take_pooled(
        &self,
        docker: &Docker,
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
        self.top_up(docker);
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
            let body = ContainerUpdateBody {
                memory: cg.memory,
                memory_swap: cg.memory_swap,
                nano_cpus: cg.nano_cpus,
                pids_limit: cg.pids_limit,
                ..Default::default()
            };
            self.call(
                "update container",
                docker.update_container(&p.container, body),
            )
            .await
        };
        let rename = async {
            let Some(e) = &spec.execution_id else {
                return Ok(());
            };
            let opts = RenameContainerOptionsBuilder::default()
                .name(&pool::name_with_execution(&p.id, e))
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
        if size == 0 {
            return Ok(());
        }
        self.ensure_image_cached(&self.config.default_image).await?;
        let docker = self.docker().await?;
        let mut refilled = self.shared.refilled.subscribe();
        let failures = lock(&self.shared.pool).refill_failures;
        let limit = self.config.request_timeout * (2 + size as u32);
        let until = Instant::now() + limit;
        loop {
            self.top_up(&docker);
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

    async fn start_background_inner(&self, ws: &Arc<Ws>, cmd: &CommandSpec) -> Result<ProcessId> {
        let ctx = self.ctx(ws).await?;
        let (plan, capture) = self.plan(ws, &ctx, cmd).await?;
        let n = ws.next_proc.fetch_add(1, Ordering::Relaxed) + 1;
        let pid = ProcessId::new(format!("p{n}"))?;
        let capture = Arc::new(Mutex::new(capture));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(None);
        let cap2 = capture.clone();
        let task = tokio::spawn(async move {
            let r = match exec::run(&ctx, &plan, &cap2, Some(stop_rx)).await {
                Ok(raw) => exec::finish(&ctx, &plan, raw, &cap2).await,
                Err(e) => Err(e),
            };
            let out = r.unwrap_or_else(|e| {
                let c = lock(&cap2);
                ExecOutput {
                    status: ExitStatus::FailedToStart {
                        reason: StartFailure::Other,
                        message: e.to_string(),
                    },
                    stdout: c.stdout.data().to_vec(),
                    stderr: c.stderr.data().to_vec(),
                    stdout_truncated: c.stdout.truncated(),
                    stderr_truncated: c.stderr.truncated(),
                    wall_time: Duration::ZERO,
                    cpu_time: None,
                    peak_memory: None,
                }
            });
            let _ = done_tx.send(Some(out));
        });
        let bg = Arc::new(Bg {
            capture,
            stop_tx,
            done: done_rx,
            task: Mutex::new(Some(task)),
        });
        lock(&ws.procs).insert(pid.clone(), bg);
        Ok(pid)
    }

    fn proc(ws: &Ws, pid: &ProcessId) -> Result<Arc<Bg>> {
        lock(&ws.procs)
            .get(pid)
            .cloned()
            .ok_or_else(|| Error::process_not_found(pid))
    }

    async fn wait_done(bg: &Bg, timeout: Option<Duration>) -> Option<ExecOutput> {
        let mut rx = bg.done.clone();
        let wait = async {
            loop {
                if let Some(o) = rx.borrow_and_update().clone() {
                    return Some(o);
                }
                if rx.changed().await.is_err() {
                    return rx.borrow().clone();
                }
            }
        };
        match timeout {
            None => wait.await,
            Some(t) => tokio::time::timeout(t, wait).await.ok().flatten(),
        }
    }

    fn container_description(c: &ContainerSummary) -> String {
        let name = c
            .names
            .as_ref()
            .and_then(|n| n.first().cloned())
            .unwrap_or_default();
        let id: String = c.id.clone().unwrap_or_default().chars().take(12).collect();
        let state = c.state.as_ref().map(|s| s.to_string()).unwrap_or_default();
        format!("container {} ({id}, {state})", name.trim_start_matches('/'))
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

impl Drop for DockerOrchestrator {
    /// Removes the containers of workspaces that were never cleaned up and
    /// those waiting in the warm pool, so a dropped backend (a panicking
    /// caller) leaves nothing behind; refills still running remove theirs
    /// when they end. Runs on a helper thread with its own runtime and
    /// client, bounded in time.
    fn drop(&mut self) {
        let mut containers: Vec<String> = lock(&self.workspaces)
            .drain()
            .map(|(_, ws)| ws.container.clone())
            .collect();
        let pooled = self.shared.close();
        let n_pooled = pooled.len();
        containers.extend(pooled);
        if containers.is_empty() {
            return;
        }
        container::remove_blocking(&self.config, containers.clone(), Duration::ZERO);
        let refs: Vec<&str> = containers.iter().map(String::as_str).collect();
        container::live_remove(&refs);
        tracing::info!(
            count = containers.len(),
            pooled = n_pooled,
            "removed containers of a dropped docker backend"
        );
    }
}

#[async_trait]
impl Orchestrator for DockerOrchestrator {
    fn name(&self) -> &str {
        "docker"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            copy: true,
            background: true,
            direct_access: false,
            network_isolation: self.config.network_mode == "none",
            oom_detection: true,
            limits: limits::enforced_kinds(),
        }
    }

    async fn is_available(&self) -> Availability {
        let limit = self.config.availability_timeout;
        let check = async {
            let docker = self.docker_within(limit).await?;
            self.call("ping", docker.ping()).await?;
            Ok::<_, E>(())
        };
        match tokio::time::timeout(limit, check).await {
            Ok(Ok(())) => Availability::yes(),
            Ok(Err(E::Timeout { .. })) | Err(_) => Availability::no(format!(
                "the docker daemon at {} did not answer within {limit:?}",
                self.host
            )),
            Ok(Err(e)) => Availability::no(e.to_string()),
        }
    }

    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        let lim = spec.limits.clone().unwrap_or_default();
        lim.validate()?;
        if lim.strict || self.config.strict_limits {
            limits::report(&lim).check_strict()?;
        }
        let image = spec
            .image
            .clone()
            .unwrap_or_else(|| self.config.default_image.clone());
        let mut made = None;
        if self.config.warm_pool > 0 && pool::poolable(spec, &self.config.default_image) {
            let docker = self.docker().await?;
            made = self.take_pooled(&docker, spec, &lim).await;
        }
        let pooled = made.is_some();
        let (id, container) = match made {
            Some(m) => m,
            None => self.create_cold(spec, &lim, &image).await?,
        };
        let ws = Arc::new(Ws {
            container: container.clone(),
            limits: Mutex::new(lim),
            procs: Mutex::new(HashMap::new()),
            next_proc: AtomicU64::new(0),
            oom_seen: Arc::new(Mutex::new(0)),
        });
        tracing::info!(workspace = %id, container = %container, image = %image, pooled, "workspace created");
        lock(&self.workspaces).insert(id.clone(), ws);
        Ok(id)
    }

    async fn apply_resource_limits(
        &self,
        id: &WorkspaceId,
        requested: &ResourceLimits,
    ) -> Result<LimitReport> {
        requested.validate()?;
        let ws = self.ws(id)?;
        let report = limits::report(requested);
        if requested.strict || self.config.strict_limits {
            report.check_strict()?;
        }
        let cg = limits::cgroup_fields(requested);
        if cg != limits::CgroupFields::default() {
            let docker = self.docker().await?;
            let update = ContainerUpdateBody {
                memory: cg.memory,
                memory_swap: cg.memory_swap,
                nano_cpus: cg.nano_cpus,
                pids_limit: cg.pids_limit,
                ..Default::default()
            };
            self.call(
                "update container",
                docker.update_container(&ws.container, update),
            )
            .await?;
        }
        {
            let mut cur = lock(&ws.limits);
            *cur = limits::merge(&cur, requested);
        }
        tracing::debug!(workspace = %id, ?requested, "limits applied");
        Ok(report)
    }

    async fn copy_to(&self, id: &WorkspaceId, host_path: &Path, sandbox_path: &str) -> Result<()> {
        let ws = self.ws(id)?;
        let rel = paths::sandbox_relative(sandbox_path)?;
        if rel.as_os_str().is_empty() {
            return Err(Error::invalid(
                "cannot replace the workspace root; name a path inside it",
            ));
        }
        if std::fs::symlink_metadata(host_path).is_err() {
            return Err(Error::NotFound {
                what: "path",
                id: host_path.display().to_string(),
            });
        }
        let ctx = self.ctx(&ws).await?;
        let dest = self.resolve(&ctx, "to", sandbox_path, &rel).await?;
        let (parent, base) = match dest.rsplit_once('/') {
            Some((p, b)) if !b.is_empty() => (
                if p.is_empty() {
                    "/".to_string()
                } else {
                    p.to_string()
                },
                b.to_string(),
            ),
            _ => return Err(Error::invalid(format!("bad destination {dest:?}"))),
        };
        let stage_name = format!(".{base}.runbox-tmp-{}", self.unique());
        let host = host_path.to_path_buf();
        let sn = stage_name.clone();
        let tar = tokio::task::spawn_blocking(move || crate::archive::build(&host, &sn))
            .await
            .map_err(|e| Error::backend("docker", e))??;
        let opts = UploadToContainerOptionsBuilder::default()
            .path(&parent)
            .build();
        let upload = deadline(
            &self.host,
            "upload archive",
            self.config.transfer_timeout,
            ctx.docker.upload_to_container(
                &ws.container,
                Some(opts),
                bollard::body_full(tar.into()),
            ),
        )
        .await;
        let stage = format!("{}/{stage_name}", parent.trim_end_matches('/'));
        if let Err(e) = upload {
            let _ = exec::helper(&ctx, scripts::FINISH_UPLOAD, &[&stage, &dest, "abort"]).await;
            return Err(e.into());
        }
        let (code, _, err) =
            exec::helper(&ctx, scripts::FINISH_UPLOAD, &[&stage, &dest, "move"]).await?;
        if code != 0 {
            let _ = exec::helper(&ctx, scripts::FINISH_UPLOAD, &[&stage, &dest, "abort"]).await;
            return Err(E::Helper {
                container: ws.container.clone(),
                reason: format!(
                    "cannot move the upload into place at {sandbox_path}: {}",
                    String::from_utf8_lossy(&err).trim()
                ),
            }
            .into());
        }
        Ok(())
    }

    async fn copy_from(
        &self,
        id: &WorkspaceId,
        sandbox_path: &str,
        host_path: &Path,
    ) -> Result<()> {
        let ws = self.ws(id)?;
        let rel = paths::sandbox_relative(sandbox_path)?;
        let host_path = &paths::host_copy_target(host_path, rel.file_name())?;
        let ctx = self.ctx(&ws).await?;
        let src = self.resolve(&ctx, "from", sandbox_path, &rel).await?;
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(&src)
            .build();
        let download = async {
            let mut stream = ctx
                .docker
                .download_from_container(&ws.container, Some(opts));
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = stream.next().await {
                buf.extend_from_slice(&chunk?);
            }
            Ok::<_, bollard::errors::Error>(buf)
        };
        let tar = deadline(
            &self.host,
            "download archive",
            self.config.transfer_timeout,
            download,
        )
        .await?;
        let host = host_path.to_path_buf();
        tokio::task::spawn_blocking(move || crate::archive::extract(&tar[..], &host))
            .await
            .map_err(|e| Error::backend("docker", e))??;
        Ok(())
    }

    async fn run_command(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput> {
        let ws = self.ws(id)?;
        cmd.validate()?;
        let ctx = self.ctx(&ws).await?;
        let (plan, capture) = self.plan(&ws, &ctx, cmd).await?;
        let capture = Arc::new(Mutex::new(capture));
        let mut guard = KillOnDrop {
            ctx: Some(ctx.clone()),
            tag: plan.tag.clone(),
        };
        let raw = exec::run(&ctx, &plan, &capture, None).await;
        guard.disarm();
        let out = exec::finish(&ctx, &plan, raw?, &capture).await?;
        tracing::debug!(workspace = %id, status = %out.status, wall = ?out.wall_time, "command ended");
        Ok(out)
    }

    async fn start_background(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ProcessId> {
        let ws = self.ws(id)?;
        cmd.validate()?;
        self.start_background_inner(&ws, cmd).await
    }

    async fn process_status(&self, id: &WorkspaceId, pid: &ProcessId) -> Result<ProcessSnapshot> {
        let ws = self.ws(id)?;
        let bg = Self::proc(&ws, pid)?;
        if let Some(out) = bg.done.borrow().clone() {
            return Ok(ProcessSnapshot {
                status: Some(out.status),
                stdout: out.stdout,
                stderr: out.stderr,
                stdout_truncated: out.stdout_truncated,
                stderr_truncated: out.stderr_truncated,
            });
        }
        let c = lock(&bg.capture);
        Ok(ProcessSnapshot {
            status: None,
            stdout: c.stdout.data().to_vec(),
            stderr: c.stderr.data().to_vec(),
            stdout_truncated: c.stdout.truncated(),
            stderr_truncated: c.stderr.truncated(),
        })
    }

    async fn wait_process(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
        timeout: Option<Duration>,
    ) -> Result<Option<ExecOutput>> {
        let ws = self.ws(id)?;
        let bg = Self::proc(&ws, pid)?;
        Ok(Self::wait_done(&bg, timeout).await)
    }

    async fn stop(&self, id: &WorkspaceId, pid: Option<&ProcessId>) -> Result<()> {
        let ws = self.ws(id)?;
        match pid {
            Some(pid) => {
                let bg = Self::proc(&ws, pid)?;
                if bg.done.borrow().is_some() {
                    return Ok(());
                }
                let _ = bg.stop_tx.send(true);
                if Self::wait_done(&bg, Some(STOP_WAIT)).await.is_none() {
                    return Err(E::Helper {
                        container: ws.container.clone(),
                        reason: format!(
                            "process {pid} did not end within {STOP_WAIT:?} of being stopped"
                        ),
                    }
                    .into());
                }
            }
            None => {
                let all: Vec<Arc<Bg>> = lock(&ws.procs).values().cloned().collect();
                for bg in &all {
                    let _ = bg.stop_tx.send(true);
                }
                let ctx = self.ctx(&ws).await?;
                exec::kill_all(&ctx).await?;
                for bg in &all {
                    let _ = Self::wait_done(bg, Some(STOP_WAIT)).await;
                }
            }
        }
        Ok(())
    }

    async fn cleanup(&self, id: &WorkspaceId) -> Result<()> {
        let ws = lock(&self.workspaces).remove(id);
        if let Some(ws) = &ws {
            for bg in lock(&ws.procs).values() {
                if let Some(t) = lock(&bg.task).take() {
                    t.abort();
                }
            }
            self.remove(&ws.container).await?;
            container::live_remove(&[&ws.container]);
        } else {
            // Not one of ours (another process's, or already cleaned up):
            // whatever carries its label goes.
            for c in self.list(LABEL_WORKSPACE, id.as_str()).await? {
                if let Some(cid) = &c.id {
                    self.remove(cid).await?;
                }
            }
        }
        tracing::info!(workspace = %id, "workspace cleaned up");
        Ok(())
    }

    fn workspace_path(&self, _id: &WorkspaceId) -> Option<PathBuf> {
        None
    }

    async fn residue(&self, id: &WorkspaceId) -> Result<Vec<String>> {
        Ok(self
            .list(LABEL_WORKSPACE, id.as_str())
            .await?
            .iter()
            .map(Self::container_description)
            .collect())
    }

    async fn reap_orphans(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for c in self.list(OWNER_LABEL, OWNER_VALUE).await? {
            let Some(cid) = c.id.clone() else { continue };
            if container::is_live(&c) {
                continue;
            }
            let labels = c.labels.clone().unwrap_or_default();
            let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let pid = get(LABEL_OWNER_PID).parse::<u32>().ok();
            let start = get(LABEL_OWNER_START);
            let is_me = pid == Some(self.owner.pid)
                && start == self.owner.start
                && get(LABEL_OWNER_BOOT) == self.owner.boot;
            let orphan = is_me
                || self
                    .owner
                    .is_alive(pid, &start, &get(LABEL_OWNER_BOOT), &get(LABEL_OWNER_HOST))
                    == Some(false);
            if !orphan {
                continue;
            }
            let desc = format!(
                "{} of workspace {} (owner pid {} gone)",
                Self::container_description(&c),
                get(LABEL_WORKSPACE),
                get(LABEL_OWNER_PID)
            );
            self.remove(&cid).await?;
            tracing::info!(%desc, "reaped orphan");
            removed.push(desc);
        }
        Ok(removed)
    }
}

//! [`DockerOrchestrator`]: the [`Orchestrator`] implementation.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, ContainerSummary, ContainerUpdateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
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
    DockerConfig, PullProgress, LABEL_EXECUTION, LABEL_OWNER_BOOT, LABEL_OWNER_HOST,
    LABEL_OWNER_PID, LABEL_OWNER_START, LABEL_WORKSPACE, OWNER_LABEL, OWNER_VALUE,
};
use crate::error::DockerOrchestratorError as E;
use crate::exec::{self, Capture, Ctx, ExecPlan, DEFAULT_PATH};
use crate::image;
use crate::limits;
use crate::owner::Owner;
use crate::scripts;

/// The keep-alive loop a workspace container runs under docker-init.
/// The container's main process: prepares runbox's helper directory, then
/// idles (commands run as execs). Doing the setup here instead of in an exec
/// after start saves a round trip per workspace.
const KEEPALIVE: &str =
    "mkdir -p /run/runbox /workspace && chmod 1777 /run/runbox; while :; do sleep 3600; done";
/// Where the workspace lives inside the container.
const WORKSPACE_DIR: &str = "/workspace";
/// How long stop waits for a stopped process to be reported ended.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// Containers of live workspaces of every [`DockerOrchestrator`] in this
/// process, so `reap_orphans` of one instance never removes another's.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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
        // Only a scheme bollard cannot use is a configuration error; a socket
        // that does not exist (yet) is for is_available to report.
        if let Err(e) = connect(&config) {
            if !matches!(e, E::Unreachable { .. }) {
                return Err(e.into());
            }
        }
        Ok(Self {
            host: config.host_description(),
            config,
            client: tokio::sync::OnceCell::new(),
            owner: Owner::current(),
            workspaces: Mutex::new(HashMap::new()),
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
    /// pulling is switched off).
    pub async fn ensure_image(&self, image: &str) -> Result<()> {
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

    /// A name part no other backend of this process draws (the counter is
    /// process-wide, so a coarse clock cannot make two backends collide).
    fn unique(&self) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        format!("{:x}-{:x}-{n}", self.owner.pid, nanos & 0xffff_ffff_ffff)
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
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        for attempt in 0..50 {
            match self
                .call(
                    "remove container",
                    docker.remove_container(container, Some(opts.clone())),
                )
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if e.status_code() == Some(404) => return Ok(()),
                // Removal already in progress: wait for it.
                Err(e) if e.status_code() == Some(409) && attempt < 49 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn create_container(
        &self,
        id: &WorkspaceId,
        spec: &WorkspaceSpec,
        image: &str,
    ) -> Result<String> {
        let docker = self.docker().await?;
        let mut labels: HashMap<String, String> = HashMap::new();
        for (k, v) in self.config.labels.iter().chain(spec.labels.iter()) {
            labels.insert(k.clone(), v.clone());
        }
        labels.insert(OWNER_LABEL.into(), OWNER_VALUE.into());
        labels.insert(LABEL_WORKSPACE.into(), id.to_string());
        if let Some(e) = &spec.execution_id {
            labels.insert(LABEL_EXECUTION.into(), e.clone());
        }
        labels.insert(LABEL_OWNER_PID.into(), self.owner.pid.to_string());
        labels.insert(LABEL_OWNER_START.into(), self.owner.start.clone());
        labels.insert(LABEL_OWNER_BOOT.into(), self.owner.boot.clone());
        labels.insert(LABEL_OWNER_HOST.into(), self.owner.host.clone());
        let lim = spec.limits.clone().unwrap_or_default();
        let cg = limits::cgroup_fields(&lim);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(vec!["sh".into(), "-c".into(), KEEPALIVE.into()]),
            cmd: Some(vec![]),
            env: Some(vec![
                format!("PATH={DEFAULT_PATH}"),
                format!("HOME={WORKSPACE_DIR}"),
                "LANG=C.UTF-8".into(),
            ]),
            working_dir: Some(WORKSPACE_DIR.into()),
            labels: Some(labels),
            stop_timeout: Some(1),
            host_config: Some(HostConfig {
                init: Some(true),
                network_mode: Some(self.config.network_mode.clone()),
                memory: cg.memory,
                memory_swap: cg.memory_swap,
                nano_cpus: cg.nano_cpus,
                pids_limit: cg.pids_limit,
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("runbox-{id}");
        let opts = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = self
            .call(
                "create container",
                docker.create_container(Some(opts), body),
            )
            .await?;
        Ok(created.id)
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

impl Drop for DockerOrchestrator {
    /// Removes the containers of workspaces that were never cleaned up, so
    /// a dropped backend (a panicking caller) leaves nothing behind. Runs on
    /// a helper thread with its own runtime and client, bounded in time.
    fn drop(&mut self) {
        let containers: Vec<String> = lock(&self.workspaces)
            .drain()
            .map(|(_, ws)| ws.container.clone())
            .collect();
        if containers.is_empty() {
            return;
        }
        let config = self.config.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let list = containers.clone();
        let spawned = std::thread::Builder::new()
            .name("runbox-docker-drop".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(_) => return,
                };
                rt.block_on(async {
                    let Ok(docker) =
                        crate::client::negotiated(&config, config.request_timeout).await
                    else {
                        return;
                    };
                    let opts = RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build();
                    for c in &list {
                        let _ = tokio::time::timeout(
                            config.request_timeout,
                            docker.remove_container(c, Some(opts.clone())),
                        )
                        .await;
                    }
                });
                let _ = tx.send(());
            });
        if spawned.is_ok() {
            let _ = rx.recv_timeout(self.config.request_timeout * 4);
        }
        lock(&LIVE).retain(|c| !containers.contains(c));
        tracing::info!(
            count = containers.len(),
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
        self.ensure_image(&image).await?;
        let id = WorkspaceId::new(format!("dk-{}", self.unique()))?;
        let container = self.create_container(&id, spec, &image).await?;
        let ws = Arc::new(Ws {
            container: container.clone(),
            limits: Mutex::new(lim),
            procs: Mutex::new(HashMap::new()),
            next_proc: AtomicU64::new(0),
            oom_seen: Arc::new(Mutex::new(0)),
        });
        let started = async {
            let docker = self.docker().await?;
            self.call("start container", docker.start_container(&container, None))
                .await
        };
        if let Err(e) = started.await {
            let _ = self.remove(&container).await;
            return Err(e.into());
        }
        tracing::info!(workspace = %id, container = %container, image = %image, "workspace created");
        lock(&LIVE).push(ws.container.clone());
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
            lock(&LIVE).retain(|c| *c != ws.container);
        }
        for c in self.list(LABEL_WORKSPACE, id.as_str()).await? {
            if let Some(cid) = &c.id {
                self.remove(cid).await?;
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
        let ours: Vec<String> = lock(&LIVE).clone();
        let mut removed = Vec::new();
        for c in self.list(OWNER_LABEL, OWNER_VALUE).await? {
            let Some(cid) = c.id.clone() else { continue };
            if ours.contains(&cid) {
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

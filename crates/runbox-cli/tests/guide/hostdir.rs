//! The example backend of docs/writing-a-backend.md: workspaces in host
//! directories, commands as host processes. Every Rust block of the guide
//! is an excerpt of this file (tests/guide.rs checks that), and
//! tests/guide_conformance.rs runs the shared conformance suite against it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use orchestrator_core::exec::{self, OutputCapture, ResolvedCommand};
use orchestrator_core::owner::Owner;
use orchestrator_core::{
    async_trait, paths, Availability, BackendOptions, Capabilities, CommandSpec, Error, ExecOutput,
    ExitStatus, LimitEntry, LimitKind, LimitReport, Mechanism, Orchestrator, ProcessId,
    ProcessSnapshot, ResourceLimits, Result, SandboxPath, StartFailure, Stream, WorkspaceId,
    WorkspaceSpec,
};

/// The name the backend registers under and reports in errors.
pub const NAME: &str = "hostdir";

/// Errors of the hostdir backend; each converts into
/// `orchestrator_core::Error::Backend`, so callers match on the core error
/// and can still downcast to this type.
#[derive(Debug, thiserror::Error)]
pub enum HostdirError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<HostdirError> for Error {
    fn from(e: HostdirError) -> Self {
        Error::backend(NAME, e)
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HostdirError {
    let path = path.to_path_buf();
    move |source| HostdirError::Io { op, path, source }
}

fn unsupported(operation: &str) -> Error {
    Error::Unsupported {
        backend: NAME.into(),
        operation: operation.into(),
    }
}

/// A poisoned lock still guards consistent data here (every critical
/// section is a single assignment), so it is taken over, not propagated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// hostdir's own enforcement mechanism: resource limits (`setrlimit`) set
/// in the command's process just before it executes. Core does not know
/// it; limit reports carry its name.
pub const HOSTDIR: Mechanism = Mechanism::named("hostdir-rlimit");

/// How hostdir enforces a limit kind (the mechanism and a note for the
/// report), or `None` when it cannot. `capabilities()` and the limit report
/// both read this, so they cannot disagree.
fn enforcement(kind: LimitKind) -> Option<(Mechanism, &'static str)> {
    match kind {
        LimitKind::WallTimeout => Some((Mechanism::RUNBOX, "timer, kills the process group")),
        LimitKind::OutputBytes => Some((Mechanism::RUNBOX, "output capture stops the command")),
        LimitKind::CpuTime => Some((HOSTDIR, "RLIMIT_CPU of each process")),
        LimitKind::FileSize => Some((HOSTDIR, "RLIMIT_FSIZE of each process")),
        LimitKind::OpenFiles => Some((HOSTDIR, "RLIMIT_NOFILE of each process")),
        _ => None,
    }
}

#[derive(Debug)]
struct Workspace {
    dir: PathBuf,
    limits: Mutex<ResourceLimits>,
}

/// Workspaces are directories under `root`; commands are host processes,
/// each in its own process group. It enforces the wall timeout and the
/// output cap through orchestrator_core::exec, CPU time, file size and open
/// files with rlimits, and nothing else.
#[derive(Debug)]
pub struct HostdirOrchestrator {
    root: PathBuf,
    workspaces: Mutex<HashMap<WorkspaceId, Arc<Workspace>>>,
}

/// Unique within the process, across instances.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The owner a workspace name (`hd-<owner token>-<n>`) carries; `None` for
/// a name hostdir did not make.
fn owner_of(name: &str) -> Option<Owner> {
    let (owner, n) = Owner::parse_token(name.strip_prefix("hd-")?)?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(owner)
}

/// Removes a workspace directory; one that is already gone is fine.
fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", dir)(e).into()),
    }
}

impl HostdirOrchestrator {
    /// A backend keeping its workspaces under `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io("create", &root))?;
        let root = root.canonicalize().map_err(io("canonicalize", &root))?;
        // Commands see their workspace as HOME, which is a string.
        if root.to_str().is_none() {
            return Err(Error::invalid(format!(
                "{NAME} root {} is not valid UTF-8",
                root.display()
            )));
        }
        Ok(Self {
            root,
            workspaces: Mutex::new(HashMap::new()),
        })
    }

    fn get(&self, id: &WorkspaceId) -> Result<Arc<Workspace>> {
        lock(&self.workspaces)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::workspace_not_found(id))
    }
}

/// Kills a command's whole process group. `pgid` comes from `Child::id`,
/// which is never 0; the check still rules out `killpg(0)`, which would
/// signal runbox's own group.
fn kill_group(pgid: Option<u32>) {
    let Some(pgid) = pgid.and_then(|p| libc::pid_t::try_from(p).ok()) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: killpg(2) takes no pointers; the group is the one this
        // backend created for the command.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// Reads one stream to its end into the shared capture (which keeps what
/// fits under the cap and feeds the live sink); wakes `over` when the
/// stream goes over a requested output limit.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    capture: Arc<Mutex<OutputCapture>>,
    over: Arc<tokio::sync::Notify>,
) {
    use tokio::io::AsyncReadExt;
    let mut chunk = vec![0u8; 8192];
    while let Ok(n @ 1..) = from.read(&mut chunk).await {
        if lock(&capture).push(stream, &chunk[..n]) {
            over.notify_one();
            return;
        }
    }
}

#[async_trait]
impl Orchestrator for HostdirOrchestrator {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            direct_access: true,
            // Workspaces are host directories: another process using
            // hostdir on this host meets them too.
            cross_process: true,
            // Runs no container images (`runbox run --image` is refused).
            images: false,
            limits: LimitKind::ALL
                .into_iter()
                .filter(|kind| enforcement(*kind).is_some())
                .collect(),
            ..Capabilities::default()
        }
    }

    async fn is_available(&self) -> Availability {
        Availability::degraded("no isolation: commands run as host processes")
    }

    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        // Host processes in a host directory cannot see a bind mount of
        // their own: refuse mounts rather than ignore them.
        if !spec.mounts.is_empty() {
            return Err(Error::Unsupported {
                backend: NAME.into(),
                operation: "mounts".into(),
            });
        }
        let n = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The owner is part of the name: a later process tells whose
        // workspace it is without a metadata file.
        let id = WorkspaceId::new(format!("hd-{}-{n}", Owner::current().token()))?;
        let dir = self.root.join(id.as_str());
        std::fs::create_dir(&dir).map_err(io("create", &dir))?;
        let ws = Arc::new(Workspace {
            dir,
            limits: Mutex::new(ResourceLimits::default()),
        });
        lock(&self.workspaces).insert(id.clone(), ws);
        if let Some(limits) = &spec.limits {
            if let Err(e) = self.apply_resource_limits(&id, limits).await {
                self.cleanup(&id).await?;
                return Err(e);
            }
        }
        Ok(id)
    }

    async fn apply_resource_limits(
        &self,
        id: &WorkspaceId,
        limits: &ResourceLimits,
    ) -> Result<LimitReport> {
        let ws = self.get(id)?;
        let report = LimitReport {
            entries: limits
                .requested()
                .into_iter()
                .map(|(kind, requested)| {
                    let (enforced_by, note) = match enforcement(kind) {
                        Some((mechanism, how)) => (Some(mechanism), how.to_string()),
                        None => (None, format!("{NAME} cannot enforce {kind}")),
                    };
                    LimitEntry {
                        kind,
                        requested,
                        enforced_by,
                        note: Some(note),
                    }
                })
                .collect(),
        };
        if limits.strict() {
            report.check_strict()?; // nothing changed yet
        }
        let mut current = lock(&ws.limits);
        *current = current.overlay(limits);
        Ok(report)
    }

    async fn copy_to(&self, id: &WorkspaceId, _host: &Path, _to: &SandboxPath) -> Result<()> {
        self.get(id)?;
        Err(unsupported("copy_to"))
    }

    async fn copy_from(&self, id: &WorkspaceId, _from: &SandboxPath, _host: &Path) -> Result<()> {
        self.get(id)?;
        Err(unsupported("copy_from"))
    }

    async fn run_command(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput> {
        let ws = self.get(id)?;
        let limits = lock(&ws.limits).clone();
        // Lossless: `new` checked that the root is UTF-8.
        let resolved = ResolvedCommand::new(cmd, &limits, &ws.dir.to_string_lossy());
        let workdir = resolved.workdir.clone().unwrap_or_else(SandboxPath::root);
        let dir = paths::resolve_in_root(&ws.dir, &workdir)?;
        if !dir.is_dir() {
            return Err(Error::NotFound {
                what: "directory",
                id: workdir.to_string(),
            });
        }

        let mut command = tokio::process::Command::new(&resolved.argv[0]);
        command
            .args(&resolved.argv[1..])
            .env_clear()
            .envs(&resolved.env)
            .current_dir(&dir)
            .process_group(0)
            .stdin(if resolved.stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let rlimits = [
            (libc::RLIMIT_CPU, limits.cpu_time().map(exec::cpu_seconds)),
            (libc::RLIMIT_FSIZE, limits.file_size_bytes()),
            (libc::RLIMIT_NOFILE, limits.open_files()),
        ];
        // SAFETY: the closure runs between fork and exec, where only
        // async-signal-safe calls are allowed: setrlimit(2) is one, and
        // nothing here allocates.
        unsafe {
            command.pre_exec(move || {
                for (resource, value) in rlimits {
                    if let Some(v) = value {
                        let rl = libc::rlimit {
                            rlim_cur: v,
                            rlim_max: v,
                        };
                        if libc::setrlimit(resource, &rl) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                }
                Ok(())
            });
        }

        let started = Instant::now();
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                let reason = match e.kind() {
                    std::io::ErrorKind::NotFound => StartFailure::NotFound,
                    std::io::ErrorKind::PermissionDenied => StartFailure::PermissionDenied,
                    _ => StartFailure::Other,
                };
                let status = ExitStatus::FailedToStart {
                    reason,
                    message: e.to_string(),
                };
                return Ok(OutputCapture::empty().finish(status, started.elapsed(), None, None));
            }
        };
        let pgid = child.id();
        if let (Some(data), Some(mut stdin)) = (resolved.stdin.clone(), child.stdin.take()) {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(&data).await;
            });
        }
        let capture = Arc::new(Mutex::new(OutputCapture::for_command(&resolved)));
        let over = Arc::new(tokio::sync::Notify::new());
        let readers = [
            child
                .stdout
                .take()
                .map(|s| tokio::spawn(pump(s, Stream::Stdout, capture.clone(), over.clone()))),
            child
                .stderr
                .take()
                .map(|s| tokio::spawn(pump(s, Stream::Stderr, capture.clone(), over.clone()))),
        ];

        let deadline = async {
            match resolved.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let status = tokio::select! {
            st = child.wait() => {
                use std::os::unix::process::ExitStatusExt;
                let st = st.map_err(io("wait for", &ws.dir))?;
                match (st.code(), st.signal()) {
                    (Some(c), _) => ExitStatus::Exited(c),
                    (None, Some(s)) => ExitStatus::Signaled(s),
                    _ => ExitStatus::Exited(-1),
                }
            }
            _ = deadline => ExitStatus::TimedOut,
            _ = over.notified() => ExitStatus::OutputLimitExceeded,
        };
        // The command is over: end whatever it left running, so no
        // grandchild holding a pipe can make us wait.
        kill_group(pgid);
        let _ = child.wait().await;
        let wall_time = started.elapsed();
        for reader in readers.into_iter().flatten() {
            let _ = reader.await;
        }
        let capture = std::mem::replace(&mut *lock(&capture), OutputCapture::empty());
        Ok(capture.finish(status, wall_time, None, None))
    }

    async fn start_background(&self, id: &WorkspaceId, _cmd: &CommandSpec) -> Result<ProcessId> {
        self.get(id)?;
        Err(unsupported("start_background"))
    }

    async fn process_status(&self, id: &WorkspaceId, pid: &ProcessId) -> Result<ProcessSnapshot> {
        self.get(id)?;
        Err(Error::process_not_found(pid))
    }

    async fn wait_process(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
        _timeout: Option<Duration>,
    ) -> Result<Option<ExecOutput>> {
        self.get(id)?;
        Err(Error::process_not_found(pid))
    }

    async fn stop(&self, id: &WorkspaceId, pid: Option<&ProcessId>) -> Result<()> {
        self.get(id)?;
        match pid {
            None => Ok(()), // run_command already ends every process it starts
            Some(p) => Err(Error::process_not_found(p)),
        }
    }

    async fn cleanup(&self, id: &WorkspaceId) -> Result<()> {
        let held = lock(&self.workspaces).remove(id).is_some();
        if !held {
            // Not this instance's: perhaps another process's. Leave it
            // while that owner lives (one whose liveness cannot be told
            // counts as alive).
            if let Some(owner) = owner_of(id.as_str()) {
                if !owner.is_current() && !owner.is_dead() {
                    return Ok(());
                }
            }
        }
        remove_dir(&self.root.join(id.as_str()))
    }

    fn workspace_path(&self, id: &WorkspaceId) -> Option<PathBuf> {
        self.get(id).ok().map(|w| w.dir.clone())
    }

    async fn residue(&self, id: &WorkspaceId) -> Result<Vec<String>> {
        let dir = self.root.join(id.as_str());
        Ok(if dir.exists() {
            vec![format!("directory {}", dir.display())]
        } else {
            Vec::new()
        })
    }

    async fn reap_orphans(&self) -> Result<Vec<String>> {
        let mut reaped = Vec::new();
        let entries = std::fs::read_dir(&self.root).map_err(io("read", &self.root))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only workspaces whose owner is known to be gone: a live
            // owner, or one that cannot be judged, keeps its own.
            if owner_of(&name).is_some_and(|owner| owner.is_dead()) {
                remove_dir(&entry.path())?;
                reaped.push(format!("{NAME} workspace {name}"));
            }
        }
        Ok(reaped)
    }
}

/// Builds the backend from the registry's options: one setting, `root`
/// (default: `runbox-hostdir` in the temp directory); no warm pool.
fn factory(options: &BackendOptions) -> Result<Arc<dyn Orchestrator>> {
    options.check(NAME, &["root"], false)?;
    let root = match options.settings.get("root") {
        Some(root) => PathBuf::from(root),
        None => std::env::temp_dir().join("runbox-hostdir"),
    };
    Ok(Arc::new(HostdirOrchestrator::new(root)?))
}

orchestrator_core::register_backend!(
    NAME,
    "host processes in a plain directory (example from docs/writing-a-backend.md)",
    factory
);

// The example backend of docs/writing-a-backend.md. Every Rust block of the
// guide is an excerpt of this file (a test checks that), and
// tests/guide_conformance.rs runs the shared conformance suite against it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator_core::{
    async_trait, paths, Availability, Capabilities, CappedBuffer, CommandSpec, Error, ExecOutput,
    ExitStatus, LimitEntry, LimitKind, LimitReport, Mechanism, Orchestrator, ProcessId,
    ProcessSnapshot, ResourceLimits, Result, StartFailure, Stream, WorkspaceId, WorkspaceSpec,
};

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
        Error::backend("hostdir", e)
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HostdirError {
    let path = path.to_path_buf();
    move |source| HostdirError::Io { op, path, source }
}

/// Output kept per stream when neither the command nor the limits say.
const DEFAULT_OUTPUT_CAP: u64 = 64 << 20;

#[derive(Debug)]
struct Workspace {
    dir: PathBuf,
    limits: Mutex<ResourceLimits>,
}

/// Workspaces are directories under `root`; commands are host processes,
/// each in its own process group. It enforces the wall timeout and the
/// output cap itself and nothing else.
#[derive(Debug)]
pub struct HostdirOrchestrator {
    root: PathBuf,
    workspaces: Mutex<HashMap<WorkspaceId, Arc<Workspace>>>,
}

/// Unique within the process, across instances.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl HostdirOrchestrator {
    /// A backend keeping its workspaces under `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io("create", &root))?;
        let root = root.canonicalize().map_err(io("canonicalize", &root))?;
        Ok(Self {
            root,
            workspaces: Mutex::new(HashMap::new()),
        })
    }

    fn get(&self, id: &WorkspaceId) -> Result<Arc<Workspace>> {
        let map = self.workspaces.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .cloned()
            .ok_or_else(|| Error::workspace_not_found(id))
    }
}

fn kill_group(pgid: Option<u32>) {
    if let Some(pgid) = pgid {
        // SAFETY: killpg(2) of the group this backend created.
        unsafe {
            libc::killpg(pgid as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// Reads one stream to its end: keeps what fits under the cap, hands it to
/// the live sink, and signals `overflow` when the cap is exceeded.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    cap: u64,
    sink: Option<orchestrator_core::OutputSink>,
    overflow: Arc<tokio::sync::Notify>,
) -> CappedBuffer {
    use tokio::io::AsyncReadExt;
    let mut buf = CappedBuffer::new(cap);
    let mut chunk = vec![0u8; 8192];
    loop {
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return buf,
            Ok(n) => {
                let kept = buf.push(&chunk[..n]);
                if let Some(s) = &sink {
                    s.emit(stream, kept);
                }
                if buf.truncated() {
                    overflow.notify_one();
                    return buf;
                }
            }
        }
    }
}

#[async_trait]
impl Orchestrator for HostdirOrchestrator {
    fn name(&self) -> &str {
        "hostdir"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            direct_access: true,
            limits: vec![LimitKind::WallTimeout, LimitKind::OutputBytes],
            ..Capabilities::default()
        }
    }

    async fn is_available(&self) -> Availability {
        Availability::degraded("no isolation: commands run as host processes")
    }

    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        let n = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = WorkspaceId::new(format!("hd-{}-{n}", std::process::id()))?;
        let dir = self.root.join(id.as_str());
        std::fs::create_dir(&dir).map_err(io("create", &dir))?;
        let ws = Arc::new(Workspace {
            dir,
            limits: Mutex::new(ResourceLimits::default()),
        });
        self.workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), ws);
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
        limits.validate()?;
        let enforced = self.capabilities();
        let report = LimitReport {
            entries: limits
                .requested()
                .into_iter()
                .map(|(kind, requested)| {
                    let by = enforced.enforces(kind).then_some(Mechanism::Runbox);
                    LimitEntry {
                        kind,
                        requested,
                        enforced_by: by,
                        note: Some(match by {
                            Some(_) => "enforced by the backend's own timer / output cap".into(),
                            None => format!("hostdir cannot enforce {kind}"),
                        }),
                    }
                })
                .collect(),
        };
        if limits.strict {
            report.check_strict()?; // nothing changed yet
        }
        *ws.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits.clone();
        Ok(report)
    }

    async fn copy_to(&self, id: &WorkspaceId, _host: &Path, _sandbox: &str) -> Result<()> {
        self.get(id)?;
        Err(Error::Unsupported {
            backend: "hostdir".into(),
            operation: "copy_to".into(),
        })
    }

    async fn copy_from(&self, id: &WorkspaceId, _sandbox: &str, _host: &Path) -> Result<()> {
        self.get(id)?;
        Err(Error::Unsupported {
            backend: "hostdir".into(),
            operation: "copy_from".into(),
        })
    }

    async fn run_command(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput> {
        cmd.validate()?;
        let ws = self.get(id)?;
        let dir = paths::resolve_in_root(&ws.dir, cmd.workdir.as_deref().unwrap_or("."))?;
        if !dir.is_dir() {
            return Err(Error::NotFound {
                what: "directory",
                id: cmd.workdir.clone().unwrap_or_default(),
            });
        }
        let limits = ws.limits.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let timeout = match (cmd.timeout, limits.wall_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let cap = [cmd.output_limit, limits.output_bytes]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(DEFAULT_OUTPUT_CAP);

        let mut command = tokio::process::Command::new(&cmd.argv[0]);
        command
            .args(&cmd.argv[1..])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &ws.dir)
            .env("LANG", "C.UTF-8")
            .envs(&cmd.env)
            .current_dir(&dir)
            .process_group(0)
            .stdin(if cmd.stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);

        let started = Instant::now();
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                let reason = match e.kind() {
                    std::io::ErrorKind::NotFound => StartFailure::NotFound,
                    std::io::ErrorKind::PermissionDenied => StartFailure::PermissionDenied,
                    _ => StartFailure::Other,
                };
                return Ok(ExecOutput {
                    status: ExitStatus::FailedToStart {
                        reason,
                        message: e.to_string(),
                    },
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    stdout_truncated: false,
                    stderr_truncated: false,
                    wall_time: started.elapsed(),
                    cpu_time: None,
                    peak_memory: None,
                });
            }
        };
        let pgid = child.id();
        if let (Some(data), Some(mut stdin)) = (cmd.stdin.clone(), child.stdin.take()) {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(&data).await;
            });
        }
        let overflow = Arc::new(tokio::sync::Notify::new());
        let out = child.stdout.take().map(|s| {
            tokio::spawn(pump(
                s,
                Stream::Stdout,
                cap,
                cmd.output.clone(),
                overflow.clone(),
            ))
        });
        let err = child.stderr.take().map(|s| {
            tokio::spawn(pump(
                s,
                Stream::Stderr,
                cap,
                cmd.output.clone(),
                overflow.clone(),
            ))
        });

        let deadline = async {
            match timeout {
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
            _ = overflow.notified() => ExitStatus::OutputLimitExceeded,
        };
        // The command is over: end whatever it left running, so no
        // grandchild holding a pipe can make us wait.
        kill_group(pgid);
        let _ = child.wait().await;
        let wall_time = started.elapsed();
        let join = |h: Option<tokio::task::JoinHandle<CappedBuffer>>| async move {
            match h {
                Some(h) => h.await.unwrap_or_default().into_parts(),
                None => (Vec::new(), false),
            }
        };
        let (stdout, stdout_truncated) = join(out).await;
        let (stderr, stderr_truncated) = join(err).await;
        Ok(ExecOutput {
            status,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            wall_time,
            cpu_time: None,
            peak_memory: None,
        })
    }

    async fn start_background(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ProcessId> {
        cmd.validate()?;
        self.get(id)?;
        Err(Error::Unsupported {
            backend: "hostdir".into(),
            operation: "start_background".into(),
        })
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
        let ws = self
            .workspaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let dir = match ws {
            Some(ws) => ws.dir.clone(),
            None => self.root.join(id.as_str()),
        };
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &dir)(e).into()),
        }
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
        // A real backend records its owner (pid + start time) with each
        // workspace and removes those whose owner is gone; see the native
        // backend.
        Ok(Vec::new())
    }
}

fn factory() -> Result<Arc<dyn Orchestrator>> {
    let root = std::env::temp_dir().join("runbox-hostdir");
    Ok(Arc::new(HostdirOrchestrator::new(root)?))
}

orchestrator_core::register_backend!(
    "hostdir",
    "host processes in a plain directory (example from docs/writing-a-backend.md)",
    factory
);

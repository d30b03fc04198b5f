//! Starting a command: its plan (the command resolved against the
//! workspace), and as a host process its own process group, a clean
//! environment, the workspace cgroup joined and rlimits set between fork
//! and exec ([`super::sandboxed`] starts it in a sandbox instead).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator_core::exec::ResolvedCommand;
use orchestrator_core::{
    paths, CommandSpec, Error, ExitStatus, ResourceLimits, Result, StartFailure,
};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use crate::cgroup::{self, WorkspaceCgroup};
use crate::error::NativeOrchestratorError;
use crate::process::capture::Shared;
use crate::process::group::{Group, Leader};
use crate::process::signal::Pgid;
use crate::sandbox::Sandbox;

/// One setrlimit(2) to apply in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rlimit {
    pub resource: libc::__rlimit_resource_t,
    pub soft: u64,
    pub hard: u64,
}

/// Applies `limits` to the calling process (between fork and exec:
/// async-signal-safe, allocation-free).
pub(crate) fn set_rlimits(limits: &[Rlimit]) -> std::io::Result<()> {
    for r in limits {
        let lim = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(r.resource, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Everything needed to start one command.
pub(crate) struct SpawnPlan {
    /// Argv, environment, stdin, timeout, output cap and sink.
    pub cmd: ResolvedCommand,
    /// The working directory on the host.
    pub cwd: PathBuf,
    /// The working directory inside the sandbox, when there is one.
    pub sandbox_cwd: String,
    pub rlimits: Vec<Rlimit>,
    pub cgroup: Option<Arc<WorkspaceCgroup>>,
    /// The workspace's sandbox: the command is started by its init.
    pub sandbox: Option<Arc<Sandbox>>,
    /// The sandbox init sits in `cgroup`: the command is born there and
    /// joins nothing.
    pub born_in_cgroup: bool,
}

/// The workspace as an isolated command sees it (the Docker backend's
/// path too).
pub(crate) const SANDBOX_WORKSPACE: &str = "/workspace";

impl SpawnPlan {
    /// The plan to start `cmd` in workspace directory `dir` (which exists),
    /// under the workspace's `limits`; `rlimits` and `cgroup` are how this
    /// host enforces them. A working directory that is not a directory is
    /// NotFound. With a `sandbox`, the command sees the workspace at
    /// [`SANDBOX_WORKSPACE`] (its HOME and working directory).
    pub(crate) fn new(
        dir: &Path,
        cmd: &CommandSpec,
        limits: &ResourceLimits,
        rlimits: Vec<Rlimit>,
        cgroup: Option<Arc<WorkspaceCgroup>>,
        sandbox: Option<Arc<Sandbox>>,
    ) -> Result<Self> {
        let cwd = match cmd.workdir() {
            Some(w) => {
                let cwd = paths::resolve_in_root(dir, w)?;
                if !cwd.is_dir() {
                    return Err(Error::NotFound {
                        what: "working directory",
                        id: w.to_string(),
                    });
                }
                cwd
            }
            None => dir.to_path_buf(),
        };
        let sandbox_cwd = match cmd.workdir() {
            Some(w) if !w.is_root() => format!("{SANDBOX_WORKSPACE}/{}", w.as_str()),
            _ => SANDBOX_WORKSPACE.to_string(),
        };
        let home = match &sandbox {
            Some(_) => SANDBOX_WORKSPACE.into(),
            None => dir.to_string_lossy(),
        };
        Ok(Self {
            cmd: ResolvedCommand::new(cmd, limits, &home),
            cwd,
            sandbox_cwd,
            rlimits,
            cgroup,
            sandbox,
            born_in_cgroup: false,
        })
    }
}

/// Kills the process tree when dropped: a dropped `run_command` future
/// leaves no process behind.
#[derive(Debug)]
pub(crate) struct TreeGuard {
    pub group: Group,
    pub armed: bool,
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if self.armed {
            self.group.kill_tree();
        }
    }
}

/// A command's output stream, as read by the driver.
pub(crate) type OutputPipe = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

/// A started command.
pub(crate) struct Running {
    pub leader: Leader,
    pub group: Group,
    pub shared: Arc<Shared>,
    pub stdout: Option<OutputPipe>,
    pub stderr: Option<OutputPipe>,
    /// Feeds stdin, when the command has some.
    pub stdin_task: Option<JoinHandle<()>>,
    /// The stdout/stderr pipes' descriptors (their inodes tell a slow
    /// reader from a pipe held open by a process outside the command's
    /// group; looked up only on that rare path, while the reading future,
    /// which owns them, is still pending).
    pub pipe_fds: Vec<i32>,
    pub started: Instant,
    pub timeout: Option<Duration>,
    pub cgroup: Option<Arc<WorkspaceCgroup>>,
    pub oom_before: u64,
    pub cpu_before: Option<Duration>,
    pub peak_handle: Option<std::fs::File>,
    pub guard: TreeGuard,
}

pub(crate) fn start_failure(e: &std::io::Error) -> Option<StartFailure> {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Some(StartFailure::NotFound),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ENOEXEC) | Some(libc::EISDIR) => {
            Some(StartFailure::PermissionDenied)
        }
        Some(libc::E2BIG) | Some(libc::ELOOP) | Some(libc::ENAMETOOLONG) | Some(libc::EAGAIN) => {
            Some(StartFailure::Other)
        }
        _ => None,
    }
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub(crate) fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `/dev/null` for a command's stdin: a duplicate of one descriptor opened
/// once, rather than a path lookup per command.
fn dev_null() -> Stdio {
    static NULL: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| std::fs::File::open("/dev/null").ok())
        .as_ref()
        .and_then(|f| f.try_clone().ok())
        .map_or_else(Stdio::null, Stdio::from)
}

/// What starting a command gives: it running, or the status of a command
/// that could not start (FailedToStart); `Err` for backend failures.
pub(crate) type Started =
    std::result::Result<std::result::Result<Running, ExitStatus>, NativeOrchestratorError>;

/// Starts a command where its workspace runs commands.
pub(crate) async fn start(plan: SpawnPlan) -> Started {
    match plan.sandbox.clone() {
        Some(sandbox) => super::sandboxed::spawn(plan, sandbox).await,
        None => spawn(plan),
    }
}

/// The error of a command that could not be started for a backend reason.
pub(crate) fn spawn_err(program: &str, source: std::io::Error) -> NativeOrchestratorError {
    NativeOrchestratorError::Spawn {
        program: program.to_string(),
        source,
    }
}

/// A command that did not start with `e`: its FailedToStart status when the
/// reason is the command's (not found, not executable, a process limit),
/// else a backend error.
pub(crate) fn not_started(program: &str, e: std::io::Error) -> Started {
    match start_failure(&e) {
        Some(reason) => Ok(Err(ExitStatus::FailedToStart {
            reason,
            message: format!("{program}: {e}"),
        })),
        None => Err(spawn_err(program, e)),
    }
}

/// The service's ends of the pipes a command was started on.
pub(crate) struct Pipes {
    pub out_r: OwnedFd,
    pub err_r: OwnedFd,
    pub stdin_w: Option<OwnedFd>,
}

/// The counters a result is measured against ([`baseline`]).
pub(crate) type Baseline = (Option<std::fs::File>, u64, Option<Duration>);

/// A command started on pipes made here (in a sandbox, or cloned into its
/// cgroup) as a [`Running`]: its tree guarded, its output read from the
/// pipes, its stdin fed.
pub(crate) fn on_pipes(
    plan: SpawnPlan,
    leader: Leader,
    group: Group,
    pipes: Pipes,
    started: Instant,
    (peak_handle, oom_before, cpu_before): Baseline,
) -> Started {
    use tokio::net::unix::pipe;
    let program = plan.cmd.argv[0].clone();
    let io_err = |e| spawn_err(&program, e);
    let guard = TreeGuard {
        group: group.clone(),
        armed: true,
    };
    let pipe_fds = vec![pipes.out_r.as_raw_fd(), pipes.err_r.as_raw_fd()];
    let stdout = pipe::Receiver::from_owned_fd(pipes.out_r).map_err(io_err)?;
    let stderr = pipe::Receiver::from_owned_fd(pipes.err_r).map_err(io_err)?;
    let stdin_task = match (plan.cmd.stdin, pipes.stdin_w) {
        (Some(data), Some(w)) => {
            let mut tx = pipe::Sender::from_owned_fd(w).map_err(io_err)?;
            Some(tokio::spawn(async move {
                let _ = tx.write_all(&data).await;
                let _ = tx.shutdown().await;
            }))
        }
        _ => None,
    };
    Ok(Ok(Running {
        leader,
        group,
        shared: Arc::new(Shared::new(plan.cmd.output_cap, plan.cmd.sink)),
        stdout: Some(Box::new(stdout) as OutputPipe),
        stderr: Some(Box::new(stderr) as OutputPipe),
        stdin_task,
        pipe_fds,
        started,
        timeout: plan.cmd.timeout,
        cgroup: plan.cgroup,
        oom_before,
        cpu_before,
        peak_handle,
        guard,
    }))
}

/// The cgroup counters a command's result is measured against, read just
/// before it starts: the peak-memory handle, OOM kills, CPU usage.
pub(crate) fn baseline(cgroup: Option<&Arc<WorkspaceCgroup>>) -> Baseline {
    let peak = cgroup.and_then(|cg| cg.reset_peak());
    let oom = cgroup.map(|c| c.oom_kills()).unwrap_or(0);
    let cpu = cgroup.and_then(|c| c.cpu_usage());
    (peak, oom, cpu)
}

/// Starts a command as a host process: born in its cgroup where the host
/// can clone into one (cgroup v2), else joining it between fork and exec.
fn spawn(plan: SpawnPlan) -> Started {
    let target = match &plan.cgroup {
        Some(cg) if super::cloned::supported() => cg.clone_target(),
        _ => None,
    };
    let plan = match target {
        Some(dir) => match super::cloned::spawn(plan, dir) {
            Ok(started) => return started,
            Err(plan) => *plan,
        },
        None => plan,
    };
    let fds = match &plan.cgroup {
        Some(cg) => cg.attach_fds()?,
        None => Vec::new(),
    };
    let raw = cgroup::raw(&fds);
    let rlimits = plan.rlimits.clone();
    let argv = &plan.cmd.argv;
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(&plan.cmd.env)
        .current_dir(&plan.cwd)
        .stdin(if plan.cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            dev_null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    // Without a cgroup to join or rlimits to set there is no pre_exec, so
    // the standard library can use posix_spawn (vfork) instead of fork.
    if !(raw.is_empty() && rlimits.is_empty()) {
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe calls (write(2), setrlimit(2)) on data prepared
        // before the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                cgroup::join_in_child(&raw)?;
                set_rlimits(&rlimits)
            });
        }
    }
    let (peak_handle, oom_before, cpu_before) = baseline(plan.cgroup.as_ref());
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return not_started(&argv[0], e),
    };
    drop(fds);
    // The child leads its own group (process_group(0)), so its pid is the
    // group's id. tokio knows the pid until the child is reaped, which only
    // the driver does.
    let Some(pgid) = child.id().and_then(|p| Pgid::new(i32::try_from(p).ok()?)) else {
        let _ = child.start_kill();
        return Err(NativeOrchestratorError::Spawn {
            program: argv[0].clone(),
            source: std::io::Error::other("the spawned child has no usable pid"),
        });
    };
    let guard = TreeGuard {
        group: Group::Host(pgid),
        armed: true,
    };
    let shared = Arc::new(Shared::new(plan.cmd.output_cap, plan.cmd.sink));
    let stdin_task = match (plan.cmd.stdin, child.stdin.take()) {
        (Some(data), Some(mut stdin)) => Some(tokio::spawn(async move {
            let _ = stdin.write_all(&data).await;
            let _ = stdin.shutdown().await;
        })),
        _ => None,
    };
    let pipe_fds: Vec<i32> = [
        child.stdout.as_ref().map(|p| p.as_raw_fd()),
        child.stderr.as_ref().map(|p| p.as_raw_fd()),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(Ok(Running {
        stdout: child.stdout.take().map(|p| Box::new(p) as OutputPipe),
        stderr: child.stderr.take().map(|p| Box::new(p) as OutputPipe),
        leader: Leader::Host(child),
        group: Group::Host(pgid),
        shared,
        stdin_task,
        pipe_fds,
        started,
        timeout: plan.cmd.timeout,
        cgroup: plan.cgroup,
        oom_before,
        cpu_before,
        peak_handle,
        guard,
    }))
}

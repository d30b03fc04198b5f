//! Starting a command: its plan (the command resolved against the
//! workspace), its own process group, a clean environment, the workspace
//! cgroup joined and rlimits set between fork and exec.

use std::os::fd::AsRawFd;
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
use crate::process::signal::{self, Pgid};

/// One setrlimit(2) to apply in the child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rlimit {
    pub resource: libc::__rlimit_resource_t,
    pub soft: u64,
    pub hard: u64,
}

/// Everything needed to start one command.
pub(crate) struct SpawnPlan {
    /// Argv, environment, stdin, timeout, output cap and sink.
    pub cmd: ResolvedCommand,
    /// The working directory on the host.
    pub cwd: PathBuf,
    pub rlimits: Vec<Rlimit>,
    pub cgroup: Option<Arc<WorkspaceCgroup>>,
}

impl SpawnPlan {
    /// The plan to start `cmd` in workspace directory `dir` (which exists),
    /// under the workspace's `limits`; `rlimits` and `cgroup` are how this
    /// host enforces them. A working directory that is not a directory is
    /// NotFound.
    pub(crate) fn new(
        dir: &Path,
        cmd: &CommandSpec,
        limits: &ResourceLimits,
        rlimits: Vec<Rlimit>,
        cgroup: Option<Arc<WorkspaceCgroup>>,
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
        Ok(Self {
            cmd: ResolvedCommand::new(cmd, limits, &dir.to_string_lossy()),
            cwd,
            rlimits,
            cgroup,
        })
    }
}

/// Kills the process group (and, while its leader lives, every descendant)
/// when dropped: a dropped `run_command` future leaves no process behind.
#[derive(Debug)]
pub(crate) struct TreeGuard {
    pub pgid: Pgid,
    pub armed: bool,
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if self.armed {
            signal::kill_tree(self.pgid);
        }
    }
}

/// A started command.
pub(crate) struct Running {
    pub child: tokio::process::Child,
    pub pgid: Pgid,
    pub shared: Arc<Shared>,
    pub stdout: Option<tokio::process::ChildStdout>,
    pub stderr: Option<tokio::process::ChildStderr>,
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

fn start_failure(e: &std::io::Error) -> Option<StartFailure> {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Some(StartFailure::NotFound),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ENOEXEC) | Some(libc::EISDIR) => {
            Some(StartFailure::PermissionDenied)
        }
        Some(libc::E2BIG) | Some(libc::ELOOP) | Some(libc::ENAMETOOLONG) => {
            Some(StartFailure::Other)
        }
        _ => None,
    }
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

/// Starts a command. `Ok(Err(status))` when it could not start
/// (FailedToStart); `Err` for backend failures.
pub(crate) fn spawn(
    plan: SpawnPlan,
) -> std::result::Result<std::result::Result<Running, ExitStatus>, NativeOrchestratorError> {
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
                for r in &rlimits {
                    let lim = libc::rlimit {
                        rlim_cur: r.soft,
                        rlim_max: r.hard,
                    };
                    if libc::setrlimit(r.resource, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let peak_handle = plan.cgroup.as_ref().and_then(|cg| cg.reset_peak());
    let oom_before = plan.cgroup.as_ref().map(|c| c.oom_kills()).unwrap_or(0);
    let cpu_before = plan.cgroup.as_ref().and_then(|c| c.cpu_usage());
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return match start_failure(&e) {
                Some(reason) => Ok(Err(ExitStatus::FailedToStart {
                    reason,
                    message: format!("{}: {e}", argv[0]),
                })),
                None => Err(NativeOrchestratorError::Spawn {
                    program: argv[0].clone(),
                    source: e,
                }),
            }
        }
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
    let guard = TreeGuard { pgid, armed: true };
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
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        pgid,
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

//! Starting a host command born in its workspace's cgroup v2 cgroup:
//! `clone3(CLONE_INTO_CGROUP | CLONE_PIDFD)`, so it never joins the cgroup
//! between fork and exec (a join takes the cgroup threadgroup lock for
//! writing); the child sets itself up as a sandboxed command's child does
//! ([`crate::sandbox::command`]) and is waited for through its pidfd.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::process::group::{Group, Leader};
use crate::process::pidfd::PidfdChild;
use crate::process::signal::Pgid;
use crate::process::spawn::{
    baseline, not_started, on_pipes, pipe_pair, spawn_err, Pipes, SpawnPlan, Started,
};
use crate::sandbox::command::{self, Prepared};

/// CLONE_INTO_CGROUP (Linux 5.7), whose libc constant is a (deprecated)
/// `c_int` too narrow for it.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2), up to `cgroup` (Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

fn cstring(s: impl Into<Vec<u8>>) -> std::io::Result<CString> {
    CString::new(s).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// Whether clone3 into a cgroup works here (until it once fails as a
/// kernel without it does: then the caller's own path is used).
static SUPPORTED: AtomicBool = AtomicBool::new(true);

pub(crate) fn supported() -> bool {
    SUPPORTED.load(Ordering::Relaxed)
}

/// Starts `plan`'s command as a host process born in the cgroup whose
/// directory is open as `cgroup_dir`; `Err(plan)` untouched when this
/// kernel has no clone3 into a cgroup.
pub(crate) fn spawn(plan: SpawnPlan, cgroup_dir: OwnedFd) -> Result<Started, Box<SpawnPlan>> {
    match spawn_inner(&plan, &cgroup_dir) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                // EPERM: a seccomp profile (older container runtimes')
                // refusing clone3 itself.
                Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EPERM)
            ) =>
        {
            tracing::debug!(error = %e, "no clone3 into a cgroup here; joining between fork and exec");
            SUPPORTED.store(false, Ordering::Relaxed);
            Err(Box::new(plan))
        }
        // EAGAIN: the cgroup's pids limit (or RLIMIT_NPROC) refused the
        // process, which is the command's failure to start.
        Err(e) => Ok(not_started(&plan.cmd.argv[0], e)),
        Ok(c) => Ok(finish(plan, c)),
    }
}

/// A child just cloned: its pid and pidfd, its pipes' parent ends.
struct Cloned {
    pid: i32,
    pidfd: OwnedFd,
    errno_r: OwnedFd,
    out_r: OwnedFd,
    err_r: OwnedFd,
    stdin_w: Option<OwnedFd>,
}

fn spawn_inner(plan: &SpawnPlan, cgroup_dir: &OwnedFd) -> std::io::Result<Cloned> {
    use std::os::unix::ffi::OsStrExt;
    let program = &plan.cmd.argv[0];
    let (out_r, out_w) = pipe_pair()?;
    let (err_r, err_w) = pipe_pair()?;
    let stdin = match plan.cmd.stdin.is_some() {
        true => Some(pipe_pair()?),
        false => None,
    };
    let (errno_r, errno_w) = pipe_pair()?;
    let env: Vec<Vec<u8>> = plan
        .cmd
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}").into_bytes())
        .collect();
    let prepared = Prepared {
        candidates: Prepared::candidates_for(program.as_bytes(), &env)
            .into_iter()
            .map(cstring)
            .collect::<Result<_, _>>()?,
        argv: plan
            .cmd
            .argv
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<Result<_, _>>()?,
        envp: env.into_iter().map(cstring).collect::<Result<_, _>>()?,
        cwd: cstring(plan.cwd.as_os_str().as_bytes())?,
        limits: plan.rlimits.clone(),
        stdio: [
            stdin.as_ref().map_or(-1, |(r, _)| r.as_raw_fd()),
            out_w.as_raw_fd(),
            err_w.as_raw_fd(),
        ],
        cgroups: Vec::new(),
        oom_score_adj: None,
    };
    let ptrs = prepared.pointers();
    let mut pidfd: RawFd = -1;
    let args = CloneArgs {
        flags: (libc::CLONE_PIDFD as u64) | CLONE_INTO_CGROUP,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM is a fork: the child gets a copy of
    // this (multi-threaded) process and only makes async-signal-safe calls
    // (`command::exec`, `command::fail`) on data prepared above.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        let e = command::exec(&prepared, &ptrs);
        command::fail(errno_w.as_raw_fd(), e);
    }
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: CLONE_PIDFD stored a fresh descriptor we now own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Cloned {
        pid: i32::try_from(pid).unwrap_or(0),
        pidfd,
        errno_r,
        out_r,
        err_r,
        stdin_w: stdin.map(|(_, w)| w),
    })
}

/// How a cloned child's start went: it exec'd (its pipe closed), or why
/// not; the [`Running`] command.
fn finish(plan: SpawnPlan, c: Cloned) -> Started {
    let program = plan.cmd.argv[0].clone();
    let io_err = |e| spawn_err(&program, e);
    let (peak_handle, oom_before, cpu_before) = baseline(plan.cgroup.as_ref());
    let started = Instant::now();
    let mut child = match PidfdChild::from_pidfd(c.pidfd, c.pid as u32) {
        Ok(child) => child,
        Err(e) => {
            // Not left running unsupervised: killed and reaped here.
            // SAFETY: kill and waitpid of our own, unwaited child.
            unsafe {
                libc::kill(c.pid, libc::SIGKILL);
                libc::waitpid(c.pid, std::ptr::null_mut(), 0);
            }
            return Err(io_err(e));
        }
    };
    // The errno pipe closes on exec (end of file) or carries why not.
    let mut buf = [0u8; 4];
    let n = loop {
        // SAFETY: reads into a local buffer of its length.
        let n = unsafe { libc::read(c.errno_r.as_raw_fd(), buf.as_mut_ptr().cast(), 4) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break n;
    };
    if n == 4 {
        // It exited (127) before exec: reaped here, at once.
        child.reap_now();
        return not_started(
            &program,
            std::io::Error::from_raw_os_error(i32::from_le_bytes(buf)),
        );
    }
    let Some(pgid) = Pgid::new(c.pid) else {
        return Err(io_err(std::io::Error::other(
            "the cloned child has no usable pid",
        )));
    };
    let pipes = Pipes {
        out_r: c.out_r,
        err_r: c.err_r,
        stdin_w: c.stdin_w,
    };
    let group = Group::Host(pgid);
    let baseline = (peak_handle, oom_before, cpu_before);
    on_pipes(plan, Leader::Cloned(child), group, pipes, started, baseline)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use orchestrator_core::{CommandSpec, ExitStatus, ResourceLimits};

    use crate::cgroup::WorkspaceCgroup;
    use crate::process::drive::drive;
    use crate::process::spawn::{start, SpawnPlan};

    /// A host command with a v2 cgroup is cloned into it: it is in the
    /// cgroup from its first instruction (its own /proc/self/cgroup says
    /// so), gets its output captured and its status, and a program that
    /// does not exist is FailedToStart.
    #[tokio::test]
    async fn a_host_command_is_born_in_its_v2_cgroup() {
        let Some(mount) = crate::cgroup::writable_unified_mount() else {
            eprintln!("note: skipped, no cgroup2 mount writable here");
            return;
        };
        let name = format!("runbox-clone-test-{}", std::process::id());
        let dir = mount.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        // Removed however the test ends (its processes have exited by then).
        struct Remove(std::path::PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let _remove = Remove(dir.clone());
        let cg = Arc::new(WorkspaceCgroup::unified_at(dir.clone()));
        let ws = tempfile::tempdir().unwrap();
        let limits = ResourceLimits::default();
        let run = |argv: &[&str]| {
            let cmd = CommandSpec::new(argv.iter().copied()).build().unwrap();
            SpawnPlan::new(ws.path(), &cmd, &limits, Vec::new(), Some(cg.clone()), None).unwrap()
        };
        let started = start(run(&["sh", "-c", "cat /proc/self/cgroup; exit 3"]))
            .await
            .unwrap();
        let out = drive(started.expect("started")).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status, ExitStatus::Exited(3), "{out:?}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("0::") && l.ends_with(&format!("/{name}"))),
            "not in {name}: {text}"
        );
        let missing = start(run(&["/nonexistent/program"])).await.unwrap();
        assert!(
            matches!(missing, Err(ExitStatus::FailedToStart { .. })),
            "{:?}",
            missing.err()
        );
        assert!(super::supported());
    }
}

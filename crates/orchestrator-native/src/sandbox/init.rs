//! The sandbox init: pid 1 of the sandbox's namespaces. It builds the
//! sandbox's root, drops its own privileges (its commands inherit that),
//! then serves the control socket: forks each command, reports its start
//! and its end, kills command trees on request, and reaps every orphan.
//! When the service's end of the socket closes, it exits, and the kernel
//! ends every process of its pid namespace with it.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::command::{self, Prepared};
use super::protocol::{Reply, Request, Setup, Spawn};
use super::rootfs::{self, SANDBOX_ID};
use super::sys::{check_int, Step, StepError};
use super::{privileges, seccomp, wire};
use crate::process::signal::{kill_pids, signal_group, Pgid};
use crate::procfs;

fn reply(sock: &OwnedFd, r: &Reply) {
    // A send that fails means the service is gone: the next read sees it.
    let _ = wire::send(sock.as_fd(), &r.encode(), &[]);
}

/// Becomes the sandbox user (still holding every capability of the user
/// namespace: its uid 0 is not mapped, so the change clears nothing).
fn become_sandbox_user() -> Result<(), StepError> {
    let id = SANDBOX_ID;
    // SAFETY: plain id changes.
    unsafe {
        check_int(libc::setresgid(id, id, id)).step(|| "setresgid".into())?;
        check_int(libc::setresuid(id, id, id)).step(|| "setresuid".into())?;
    }
    Ok(())
}

fn prepare(setup: &Setup) -> Result<seccomp::Filter, StepError> {
    // SAFETY: prctl with integer arguments.
    check_int(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })
        .step(|| "PR_SET_PDEATHSIG".into())?;
    let sources = rootfs::open_sources(setup)?;
    become_sandbox_user()?;
    rootfs::identity(setup)?;
    rootfs::build(setup, &sources)?;
    drop(sources);
    let filter = seccomp::Filter::build().map_err(|e| StepError {
        stage: format!("build the seccomp filter: {e}"),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    privileges::drop_all().step(|| "drop privileges".into())?;
    filter
        .apply()
        .step(|| "install the seccomp filter".into())?;
    Ok(filter)
}

/// The init's main: never returns.
pub(crate) fn main(sock: OwnedFd, setup: Setup) -> ! {
    match prepare(&setup) {
        Ok(_filter) => {
            reply(&sock, &Reply::Ready);
            serve(sock)
        }
        Err(e) => {
            reply(
                &sock,
                &Reply::SetupFailed {
                    stage: e.to_string(),
                    errno: e.errno(),
                },
            );
            // SAFETY: ends the process.
            unsafe { libc::_exit(1) }
        }
    }
}

struct State {
    /// Running commands: pid → request id.
    running: HashMap<i32, u64>,
    /// Every command's process group, by request id (a tree is killed by
    /// its group also after its leader ended).
    groups: HashMap<u64, i32>,
}

fn signalfd_for_children() -> std::io::Result<OwnedFd> {
    // SAFETY: sigset manipulation on a local; signalfd returns a new fd.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        check_int(libc::sigprocmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
        let fd = check_int(libc::signalfd(
            -1,
            &set,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn serve(sock: OwnedFd) -> ! {
    let sig = match signalfd_for_children() {
        Ok(s) => s,
        // SAFETY: ends the process.
        Err(_) => unsafe { libc::_exit(1) },
    };
    let mut st = State {
        running: HashMap::new(),
        groups: HashMap::new(),
    };
    loop {
        let mut fds = [
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sig.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of its length.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            continue;
        }
        if fds[1].revents != 0 {
            drain(&sig);
            reap(&sock, &mut st);
        }
        if fds[0].revents != 0 {
            match wire::recv(sock.as_fd()) {
                Ok(Some(msg)) => handle(&sock, &mut st, msg),
                Ok(None) | Err(_) => {
                    // The service is gone (or sent garbage): end the
                    // sandbox. As pid 1 exiting, the kernel kills the rest.
                    // SAFETY: ends the process.
                    unsafe { libc::_exit(0) }
                }
            }
        }
    }
}

fn drain(sig: &OwnedFd) {
    let mut buf = [0u8; std::mem::size_of::<libc::signalfd_siginfo>() * 8];
    // SAFETY: reads into a local buffer of its length (non-blocking fd).
    while unsafe { libc::read(sig.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

fn reap(sock: &OwnedFd, st: &mut State) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only into status.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if let Some(id) = st.running.remove(&pid) {
            reply(sock, &Reply::Exited { id, status });
        }
    }
}

fn kill_tree(pgid: i32) {
    if let Some(g) = Pgid::new(pgid) {
        for _ in 0..2 {
            let _ = signal_group(g, libc::SIGKILL);
            kill_pids(procfs::tree_of_group(g));
        }
    }
}

fn handle(sock: &OwnedFd, st: &mut State, msg: wire::Received) {
    let req = match Request::decode(&msg.body) {
        Ok(r) => r,
        // SAFETY: ends the process: a service that sends garbage is broken.
        Err(_) => unsafe { libc::_exit(2) },
    };
    match req {
        Request::Spawn(s) => {
            let id = s.id;
            match start(s, msg.fds) {
                Ok(pid) => {
                    st.running.insert(pid, id);
                    st.groups.insert(id, pid);
                    reply(sock, &Reply::Started { id });
                }
                Err(errno) => reply(sock, &Reply::StartFailed { id, errno }),
            }
        }
        Request::Kill { id } => {
            if let Some(&pgid) = st.groups.get(&id) {
                kill_tree(pgid);
            }
        }
        Request::KillAll => kill_all(),
        Request::Mapped => {}
    }
}

/// SIGKILLs every process of the sandbox but the init. kill(-1) from pid
/// 1 reaches only its own pid namespace; anywhere else it would reach the
/// whole machine, so it is refused unless this process is pid 1.
fn kill_all() {
    // SAFETY: getpid/kill touch no memory.
    unsafe {
        if libc::getpid() == 1 {
            libc::kill(-1, libc::SIGKILL);
        }
    }
}

fn cstring(b: Vec<u8>) -> Result<CString, i32> {
    CString::new(b).map_err(|_| libc::EINVAL)
}

/// Forks and execs one command; its pid, or the errno of the failure.
fn start(s: Spawn, fds: Vec<OwnedFd>) -> Result<i32, i32> {
    let expected = s.stdin as usize + 2 + s.cgroups as usize;
    if fds.len() != expected || s.argv.is_empty() {
        return Err(libc::EINVAL);
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let (stdio, cgroups) = if s.stdin {
        ([raw[0], raw[1], raw[2]], raw[3..].to_vec())
    } else {
        ([-1, raw[0], raw[1]], raw[2..].to_vec())
    };
    let candidates = Prepared::candidates_for(&s.argv[0], &s.env)
        .into_iter()
        .map(cstring)
        .collect::<Result<_, _>>()?;
    let p = Prepared {
        argv: s.argv.into_iter().map(cstring).collect::<Result<_, _>>()?,
        envp: s.env.into_iter().map(cstring).collect::<Result<_, _>>()?,
        candidates,
        cwd: cstring(s.cwd)?,
        limits: s.limits,
        stdio,
        cgroups,
    };
    let mut pipe = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(libc::EMFILE);
    }
    // SAFETY: both are fresh descriptors we own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    // SAFETY: the init is single-threaded, so the child may do anything.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EAGAIN));
    }
    if pid == 0 {
        drop(r);
        let e = command::exec(&p);
        command::fail(w.as_raw_fd(), e);
    }
    drop(w);
    drop(fds);
    // The write end closes at exec (success: nothing read) or carries
    // the errno of the failure.
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        // SAFETY: reads into the rest of a local buffer.
        let n = unsafe { libc::read(r.as_raw_fd(), buf[got..].as_mut_ptr().cast(), 4 - got) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    if got == 4 {
        // The child ends by itself; reaped as an untracked pid.
        return Err(i32::from_le_bytes(buf));
    }
    Ok(pid)
}

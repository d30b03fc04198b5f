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

fn prctl(option: libc::c_int, value: libc::c_ulong, what: &str) -> Result<(), StepError> {
    // SAFETY: prctl with integer arguments.
    check_int(unsafe { libc::prctl(option, value, 0, 0, 0) })
        .map(drop)
        .step(|| what.into())
}

fn prepare(setup: &Setup) -> Result<seccomp::Filter, StepError> {
    let sources = rootfs::open_sources(setup)?;
    become_sandbox_user()?;
    rootfs::identity(setup)?;
    rootfs::build(setup, &sources)?;
    drop(sources);
    let filter = seccomp::Filter::build().map_err(|e| StepError {
        stage: format!("build the seccomp filter: {e}"),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    // Not dumpable: a command (same uid, no capabilities either, rootless
    // the same host uid too) cannot open the init's /proc/1/mem or fds, or
    // attach to it; exec makes each command dumpable again for itself.
    prctl(libc::PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")?;
    privileges::drop_all().step(|| "drop privileges".into())?;
    filter
        .apply()
        .step(|| "install the seccomp filter".into())?;
    // Last: a change of credentials clears the parent-death signal. The
    // outer process (its parent) cannot have died meanwhile: it waits for
    // this process.
    prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        "PR_SET_PDEATHSIG",
    )?;
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

/// A command forked, not yet known to have exec'd.
struct Starting {
    id: u64,
    pid: i32,
    /// The read end of its close-on-exec errno pipe: end of file when it
    /// exec'd, an errno when it could not.
    pipe: OwnedFd,
}

struct State {
    /// Commands between fork and exec, by their pipe's descriptor. They
    /// are waited for in the poll loop, never by blocking: a command can
    /// be stopped there (`kill -STOP -1` from a sibling) for ever.
    starting: HashMap<RawFd, Starting>,
    /// Running commands: pid → request id.
    running: HashMap<i32, u64>,
    /// Every command's process group, by request id (a tree is killed by
    /// its group also after its leader ended; the entry goes with the
    /// kill of its leftovers).
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
        starting: HashMap::new(),
        running: HashMap::new(),
        groups: HashMap::new(),
    };
    let watch = |fd: RawFd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        let mut fds = vec![watch(sock.as_raw_fd()), watch(sig.as_raw_fd())];
        fds.extend(st.starting.keys().map(|&fd| watch(fd)));
        // SAFETY: fds is a valid array of its length.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            continue;
        }
        for p in &fds[2..] {
            if p.revents != 0 {
                settle(&sock, &mut st, p.fd);
            }
        }
        if fds[1].revents != 0 {
            drain(&sig);
            reap(&sock, &mut st);
        }
        if fds[0].revents != 0 {
            match wire::recv(sock.as_fd(), wire::Peer::Service) {
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

/// Learns how a starting command's exec went (its pipe is readable: the
/// errno, or end of file once it exec'd or died) and says so.
fn settle(sock: &OwnedFd, st: &mut State, fd: RawFd) {
    let Some(s) = st.starting.remove(&fd) else {
        return;
    };
    let mut buf = [0u8; 4];
    let n = loop {
        // SAFETY: reads into a local buffer of its length. The child writes
        // its 4 bytes at once (below PIPE_BUF), so one read has them all.
        let n = unsafe { libc::read(s.pipe.as_raw_fd(), buf.as_mut_ptr().cast(), 4) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break n;
    };
    if n == 4 {
        // The child ends by itself; reaped as an untracked pid.
        st.groups.remove(&s.id);
        reply(
            sock,
            &Reply::StartFailed {
                id: s.id,
                errno: i32::from_le_bytes(buf),
            },
        );
    } else {
        st.running.insert(s.pid, s.id);
        reply(sock, &Reply::Started { id: s.id });
    }
}

fn reap(sock: &OwnedFd, st: &mut State) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only into status.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        // Dead before its start was reported: its pipe is settled now (the
        // write end closed with it), so Started always precedes Exited.
        let pending = st
            .starting
            .iter()
            .find(|(_, s)| s.pid == pid)
            .map(|(fd, _)| *fd);
        if let Some(fd) = pending {
            settle(sock, st, fd);
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
                Ok((pid, pipe)) => {
                    st.groups.insert(id, pid);
                    st.starting
                        .insert(pipe.as_raw_fd(), Starting { id, pid, pipe });
                }
                Err(errno) => reply(sock, &Reply::StartFailed { id, errno }),
            }
        }
        Request::Kill { id } => {
            let starting = st.starting.values().find(|s| s.id == id).map(|s| s.pid);
            match starting {
                // Not reaped yet, so the pid is still this child's: killed
                // whether or not it reached setsid.
                Some(pid) => {
                    if let Some(p) = crate::process::signal::Pid::new(pid) {
                        kill_pids([p]);
                    }
                }
                None => {
                    if let Some(pgid) = st.groups.get(&id).copied() {
                        kill_tree(pgid);
                        if !st.running.values().any(|r| *r == id) {
                            st.groups.remove(&id);
                        }
                    }
                }
            }
        }
        Request::KillAll => kill_all(),
        Request::Mapped => {}
        Request::Join { id } => {
            let raw: Vec<RawFd> = msg.fds.iter().map(|f| f.as_raw_fd()).collect();
            let errno = match raw.is_empty() {
                true => libc::EINVAL,
                false => match crate::cgroup::join_in_child(&raw) {
                    Ok(()) => 0,
                    Err(e) => e.raw_os_error().unwrap_or(libc::EIO),
                },
            };
            reply(sock, &Reply::Joined { id, errno });
        }
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

/// Forks one command, which execs by itself; its pid and the read end of
/// its errno pipe, or the errno of a failure before the fork.
fn start(s: Spawn, fds: Vec<OwnedFd>) -> Result<(i32, OwnedFd), i32> {
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
        oom_score_adj: Some(command::SANDBOXED_OOM_SCORE_ADJ),
    };
    let last_errno = || {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    let ptrs = p.pointers();
    let mut pipe = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(last_errno());
    }
    // SAFETY: both are fresh descriptors we own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    // SAFETY: the init is single-threaded, so the child may do anything.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_errno());
    }
    if pid == 0 {
        drop(r);
        let e = command::exec(&p, &ptrs);
        command::fail(w.as_raw_fd(), e);
    }
    drop(w);
    drop(fds);
    Ok((pid, r))
}

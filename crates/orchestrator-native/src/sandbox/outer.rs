//! The entry point of a sandbox in the re-executed binary, and its outer
//! process. A constructor in `.init_array` runs before `main` (so before
//! any thread exists) in every binary that links this crate; when the
//! service started the binary as a sandbox (the [`ENV`] variable names the
//! control socket), it never returns to `main`.
//!
//! The outer process unshares the user, mount, pid, network, ipc, uts and
//! cgroup namespaces, waits for the service to write its uid and gid maps,
//! forks the init (pid 1 of the new pid namespace) and waits for it: its
//! exit, seen by the service, means every process of the sandbox is gone.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use super::protocol::{Reply, Request, Setup};
use super::{init, wire};

/// The variable that makes the binary a sandbox's outer process; its
/// value is the control socket's descriptor.
pub(crate) const ENV: &str = "RUNBOX_SANDBOX_INIT";
/// The control socket's descriptor in the outer process.
pub(crate) const CONTROL_FD: i32 = 3;

#[used]
#[link_section = ".init_array"]
static ENTRY: extern "C" fn() = entry;

extern "C" fn entry() {
    let Some(v) = std::env::var_os(ENV) else {
        return;
    };
    if v.as_encoded_bytes() != CONTROL_FD.to_string().as_bytes() {
        return;
    }
    // Nothing but the control socket is the sandbox's (the service marks
    // the rest close-on-exec; a caller that did not is not trusted).
    // SAFETY: close_range of descriptors this process does not use; fd 3
    // was set up by the service for this process alone.
    let sock = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (CONTROL_FD + 1) as u32,
            u32::MAX,
            0u32,
        );
        OwnedFd::from_raw_fd(CONTROL_FD)
    };
    let code = outer(sock);
    // SAFETY: ends the process without returning to the host program.
    unsafe { libc::_exit(code) }
}

fn fail(sock: &OwnedFd, stage: &str) -> i32 {
    let errno = std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO);
    let r = Reply::SetupFailed {
        stage: stage.to_string(),
        errno,
    };
    let _ = wire::send(sock.as_fd(), &r.encode(), &[]);
    1
}

fn recv_request(sock: &OwnedFd) -> Option<wire::Received> {
    wire::recv(sock.as_fd(), wire::Peer::Service).ok().flatten()
}

fn outer(sock: OwnedFd) -> i32 {
    let Some(msg) = recv_request(&sock) else {
        return 2;
    };
    let Ok(setup) = Setup::decode(&msg.body) else {
        return 2;
    };
    // As root: no supplementary group of the service survives into the
    // sandbox (once setgroups is denied there it could not be dropped).
    // Without the privilege this fails and the caller's own groups stay.
    // SAFETY: setgroups with an empty list.
    unsafe { libc::setgroups(0, std::ptr::null()) };
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    if !setup.host_network {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare in a single-threaded process (before main).
    if unsafe { libc::unshare(flags) } != 0 {
        return fail(&sock, "unshare the namespaces");
    }
    let _ = wire::send(sock.as_fd(), &Reply::Unshared.encode(), &[]);
    match recv_request(&sock).map(|m| Request::decode(&m.body)) {
        Some(Ok(Request::Mapped)) => {}
        _ => return 2,
    }
    // SAFETY: single-threaded: the child is a full copy.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return fail(&sock, "fork the init");
    }
    if pid == 0 {
        init::main(sock, setup);
    }
    drop(sock);
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only into status.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 1;
        }
    }
}

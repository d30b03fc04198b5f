//! Starting a sandbox's outer process: `/proc/self/exe` re-executed with
//! the control socket as fd 3 and nothing else open, through
//! posix_spawn(3). glibc's posix_spawn runs the child on the parent's
//! memory until its exec (`CLONE_VM | CLONE_VFORK`): no copy of a large,
//! multi-threaded service's page tables per sandbox, as a fork (which a
//! `pre_exec` hook forces on std's spawn) would make.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::outer::{CONTROL_FD, ENV};

fn check(r: libc::c_int) -> std::io::Result<()> {
    match r {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// File actions and attributes, destroyed when dropped.
struct Spawn {
    actions: libc::posix_spawn_file_actions_t,
    attr: libc::posix_spawnattr_t,
}

impl Drop for Spawn {
    fn drop(&mut self) {
        // SAFETY: both were initialised in `outer`.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut self.actions);
            libc::posix_spawnattr_destroy(&mut self.attr);
        }
    }
}

/// Spawns the outer process in directory `cwd` with `socket` as its fd 3;
/// its pid.
pub(crate) fn outer(socket: &OwnedFd, cwd: &Path) -> std::io::Result<u32> {
    let bad = |_| std::io::Error::from_raw_os_error(libc::EINVAL);
    let program = c"/proc/self/exe";
    let argv0 = c"runbox-sandbox";
    let env = CString::new(format!("{ENV}={CONTROL_FD}")).map_err(bad)?;
    let cwd = CString::new(cwd.as_os_str().as_bytes()).map_err(bad)?;
    let null = c"/dev/null";
    // A source that is fd 3 already would be dup2'ed onto itself, which
    // POSIX only recently made clear close-on-exec: move it out of the way.
    let moved;
    let source = if socket.as_raw_fd() == CONTROL_FD {
        // SAFETY: F_DUPFD_CLOEXEC makes a fresh descriptor we own.
        let fd = unsafe { libc::fcntl(CONTROL_FD, libc::F_DUPFD_CLOEXEC, 10) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: just made, owned here.
        moved = unsafe { OwnedFd::from_raw_fd(fd) };
        moved.as_raw_fd()
    } else {
        socket.as_raw_fd()
    };
    // SAFETY: zeroed structs are initialised by the _init calls before use;
    // every pointer passed is a NUL-terminated string or array that
    // outlives posix_spawn.
    unsafe {
        let mut s = Spawn {
            actions: std::mem::zeroed(),
            attr: std::mem::zeroed(),
        };
        check(libc::posix_spawn_file_actions_init(&mut s.actions))?;
        check(libc::posix_spawnattr_init(&mut s.attr))?;
        let a = &mut s.actions;
        for (fd, flags) in [
            (0, libc::O_RDONLY),
            (1, libc::O_WRONLY),
            (2, libc::O_WRONLY),
        ] {
            check(libc::posix_spawn_file_actions_addopen(
                a,
                fd,
                null.as_ptr(),
                flags,
                0,
            ))?;
        }
        check(libc::posix_spawn_file_actions_adddup2(
            a, source, CONTROL_FD,
        ))?;
        check(libc::posix_spawn_file_actions_addclosefrom_np(
            a,
            CONTROL_FD + 1,
        ))?;
        check(libc::posix_spawn_file_actions_addchdir_np(a, cwd.as_ptr()))?;
        // The signal mask empty and SIGPIPE back to its default (the Rust
        // runtime ignores it, and an ignored signal survives exec), as
        // std's spawn does.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        check(libc::posix_spawnattr_setsigmask(&mut s.attr, &empty))?;
        check(libc::posix_spawnattr_setsigdefault(&mut s.attr, &pipe))?;
        let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
        check(libc::posix_spawnattr_setflags(
            &mut s.attr,
            flags as libc::c_short,
        ))?;
        let argv = [argv0.as_ptr() as *mut libc::c_char, std::ptr::null_mut()];
        let envp = [env.as_ptr() as *mut libc::c_char, std::ptr::null_mut()];
        let mut pid: libc::pid_t = 0;
        check(libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            &s.actions,
            &s.attr,
            argv.as_ptr(),
            envp.as_ptr(),
        ))?;
        Ok(pid as u32)
    }
}

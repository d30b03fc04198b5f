//! A command's process between its fork and its exec (forked by a sandbox
//! init, or cloned by the service into its cgroup): its own session, its
//! descriptors, working directory, cgroup and rlimits, then exec through
//! the command's PATH. In a sandbox, privileges were already dropped by
//! the init (and are inherited); a failure before exec is reported as an
//! errno on a close-on-exec pipe. Nothing here allocates after the fork:
//! the child of a multi-threaded service may not.

use std::ffi::CString;
use std::os::fd::RawFd;

use crate::process::spawn::Rlimit;

/// A command ready to start: everything allocated before the fork.
pub(crate) struct Prepared {
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// Candidate paths of the program, in PATH order (one when the program
    /// names a path).
    pub candidates: Vec<CString>,
    pub cwd: CString,
    pub limits: Vec<Rlimit>,
    /// stdin (or -1 for /dev/null), stdout, stderr.
    pub stdio: [RawFd; 3],
    pub cgroups: Vec<RawFd>,
    /// Written to `/proc/self/oom_score_adj` before exec, when set.
    pub oom_score_adj: Option<&'static [u8]>,
}

/// A sandboxed command's `oom_score_adj`: its sandbox's init sits in the
/// same memory cgroup, and its resident binary (~2 MiB) can outweigh a
/// small command, so without this the OOM killer could pick the init and
/// end the workspace. At 500 a command is taken before the init (and,
/// on a host out of memory, before the host's own processes). Raising it
/// needs no privilege, where lowering the init's would (CAP_SYS_RESOURCE,
/// which not every root has, and a command could then lower itself too).
pub(crate) const SANDBOXED_OOM_SCORE_ADJ: &[u8] = b"500";

/// The NUL-terminated pointer arrays execve takes, made before the fork
/// (they point into a [`Prepared`], which must outlive them).
pub(crate) struct Pointers {
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

fn pointers(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

impl Prepared {
    /// Its argv and environment as execve takes them.
    pub fn pointers(&self) -> Pointers {
        Pointers {
            argv: pointers(&self.argv),
            envp: pointers(&self.envp),
        }
    }

    /// Resolves `argv[0]` against the command's own `PATH` (as a shell
    /// would: a name with a slash is used as is).
    pub fn candidates_for(program: &[u8], env: &[Vec<u8>]) -> Vec<Vec<u8>> {
        if program.contains(&b'/') {
            return vec![program.to_vec()];
        }
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix(b"PATH="))
            .unwrap_or(orchestrator_core::exec::DEFAULT_PATH.as_bytes());
        path.split(|b| *b == b':')
            .map(|dir| {
                let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
                let mut p = dir.to_vec();
                p.push(b'/');
                p.extend_from_slice(program);
                p
            })
            .collect()
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// In the forked child: sets the command up and execs it. Returns only on
/// failure, with the errno to report. Async-signal-safe: `ptrs` are `p`'s
/// [`Prepared::pointers`], made before the fork.
pub(crate) fn exec(p: &Prepared, ptrs: &Pointers) -> i32 {
    // SAFETY: only system calls, on NUL-terminated strings and arrays
    // prepared before the fork.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // An ignored signal stays ignored across exec, and the Rust runtime
        // ignores SIGPIPE: the command gets the default back (as std's
        // spawn gives it).
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if libc::setsid() < 0 {
            return errno();
        }
        if let Some(adj) = p.oom_score_adj {
            // Raising it needs no privilege, but the file of a process
            // that is not dumpable (a fork of the init) is root's: the
            // command becomes dumpable now rather than at its exec (which
            // makes any ordinary program so anyway). Where /proc is
            // missing the command keeps its parent's value.
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                libc::write(fd, adj.as_ptr().cast(), adj.len());
                libc::close(fd);
            }
        }
        let null;
        let stdin = if p.stdio[0] >= 0 {
            p.stdio[0]
        } else {
            null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if null < 0 {
                return errno();
            }
            null
        };
        for (target, src) in [(0, stdin), (1, p.stdio[1]), (2, p.stdio[2])] {
            if src == target {
                if libc::fcntl(src, libc::F_SETFD, 0) < 0 {
                    return errno();
                }
            } else if libc::dup2(src, target) < 0 {
                return errno();
            }
        }
        // Nothing else of the init reaches the command.
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) < 0
        {
            return errno();
        }
        if libc::chdir(p.cwd.as_ptr()) < 0 {
            return errno();
        }
        if crate::cgroup::join_in_child(&p.cgroups).is_err()
            || crate::process::spawn::set_rlimits(&p.limits).is_err()
        {
            return errno();
        }
        let (argv, envp) = (&ptrs.argv, &ptrs.envp);
        // As execvp does: a directory that lacks the program is skipped;
        // one where it exists but cannot run is remembered.
        let mut denied = None;
        for c in &p.candidates {
            libc::execve(c.as_ptr(), argv.as_ptr(), envp.as_ptr());
            match errno() {
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                libc::EACCES => denied = Some(libc::EACCES),
                e => return e,
            }
        }
        denied.unwrap_or(libc::ENOENT)
    }
}

/// Hands `e` to the parent (the init, or the service) and ends the child.
pub(crate) fn fail(pipe: RawFd, e: i32) -> ! {
    let _ = super::sys::write_all(pipe, &e.to_le_bytes());
    // SAFETY: _exit ends the process without running the init's handlers.
    unsafe { libc::_exit(127) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_through_the_commands_path() {
        let env = vec![b"A=1".to_vec(), b"PATH=/a::/b".to_vec()];
        let c = Prepared::candidates_for(b"sh", &env);
        assert_eq!(c, [b"/a/sh".to_vec(), b"./sh".to_vec(), b"/b/sh".to_vec()]);
        assert_eq!(
            Prepared::candidates_for(b"./run", &env),
            [b"./run".to_vec()]
        );
        let default = Prepared::candidates_for(b"sh", &[]);
        assert!(default.contains(&b"/usr/bin/sh".to_vec()), "{default:?}");
    }
}

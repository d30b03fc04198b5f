//! A child process held by its pidfd: waited for through the pidfd (no
//! SIGCHLD bookkeeping, never confused with a reused pid), killed through
//! it, and reaped on a thread when dropped unwaited.

use std::os::fd::{AsFd, OwnedFd};

use rustix::process::{
    pidfd_open, pidfd_send_signal, waitid, PidfdFlags, Signal, WaitId, WaitIdOptions,
};
use tokio::io::unix::AsyncFd;

/// A child process of this one, by pidfd.
pub(crate) struct PidfdChild {
    fd: AsyncFd<OwnedFd>,
    pid: u32,
    done: Option<Option<std::process::ExitStatus>>,
}

impl std::fmt::Debug for PidfdChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PidfdChild")
            .field("pid", &self.pid)
            .finish()
    }
}

impl PidfdChild {
    /// Takes `pidfd` of child `pid`, registered with the runtime.
    pub(crate) fn from_pidfd(pidfd: OwnedFd, pid: u32) -> std::io::Result<Self> {
        // SAFETY: the AsyncFd owns the pidfd from here on; nothing else
        // closes or replaces it.
        let fd = unsafe { AsyncFd::register(pidfd) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self {
            fd,
            pid,
            done: None,
        })
    }

    /// Opens a pidfd for child `pid`, which has not been waited for.
    pub(crate) fn open(pid: u32) -> std::io::Result<Self> {
        let p = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))?;
        Self::from_pidfd(pidfd_open(p, PidfdFlags::empty())?, pid)
    }

    /// SIGKILLs it (a no-op once it has been waited for).
    pub(crate) fn kill(&self) {
        if self.done.is_none() {
            let _ = pidfd_send_signal(self.fd.get_ref().as_fd(), Signal::KILL);
        }
    }

    /// Waits for it to end; `None` when waiting failed.
    pub(crate) async fn wait(&mut self) -> Option<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        if let Some(done) = self.done {
            return done;
        }
        let status = loop {
            let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
            match waitid(WaitId::PidFd(self.fd.get_ref().as_fd()), opts) {
                Ok(Some(st)) => {
                    // As wait(2) encodes it: code << 8, or the signal (with
                    // 0x80 when it dumped core).
                    let raw = match (st.exit_status(), st.terminating_signal()) {
                        (Some(code), _) => (code & 0xff) << 8,
                        (None, Some(sig)) => sig | if st.dumped() { 0x80 } else { 0 },
                        (None, None) => break None,
                    };
                    break Some(std::process::ExitStatus::from_raw(raw));
                }
                Ok(None) => match self.fd.readable().await {
                    Ok(mut g) => g.clear_ready(),
                    Err(_) => break None,
                },
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break None,
            }
        };
        self.done = Some(status);
        status
    }

    /// Reaps it now, blocking: for a child known to have exited.
    pub(crate) fn reap_now(&mut self) {
        while let Err(rustix::io::Errno::INTR) = waitid(
            WaitId::PidFd(self.fd.get_ref().as_fd()),
            WaitIdOptions::EXITED,
        ) {}
        self.done = Some(None);
    }
}

impl Drop for PidfdChild {
    /// Not waited for (its run was dropped; its tree was killed): reaped on
    /// a thread, so no zombie stays behind.
    fn drop(&mut self) {
        if self.done.is_some() {
            return;
        }
        let Ok(fd) = self.fd.get_ref().try_clone() else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("runbox-reap".into())
            .spawn(move || {
                while let Err(rustix::io::Errno::INTR) =
                    waitid(WaitId::PidFd(fd.as_fd()), WaitIdOptions::EXITED)
                {}
            });
    }
}

//! The service's side of a sandbox: starting its init (the binary
//! re-executed as the outer process, its uid and gid maps written from
//! here), starting commands through it and learning how they end, killing
//! command trees, and shutting the sandbox down.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::protocol::{Reply, Request, Setup, Spawn};
use super::rootfs::SANDBOX_ID;
use super::wire;
use crate::error::NativeOrchestratorError;
use crate::process::pidfd::PidfdChild;
use crate::sync::lock;

/// How long the init may take to build the sandbox.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a command may take from its request to its exec (the init
/// forks at once; only a process stopped or stuck between fork and exec
/// takes longer, and is killed).
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for the init to end by itself before killing
/// the outer process (which takes the init with it).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn sandbox_err(what: impl Into<String>) -> NativeOrchestratorError {
    NativeOrchestratorError::Sandbox(what.into())
}

/// Waiters of one command.
struct Waiter {
    started: Option<oneshot::Sender<Result<(), i32>>>,
    exited: Option<oneshot::Sender<i32>>,
}

#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    /// The init is gone: no reply will come.
    dead: bool,
}

/// One running sandbox: its control socket and outer process.
pub(crate) struct Sandbox {
    sock: AsyncFd<OwnedFd>,
    pending: Mutex<Pending>,
    next: AtomicU64,
    outer: tokio::sync::Mutex<Option<PidfdChild>>,
    /// The outer process's pid (its cwd is the workspace: residue checks
    /// find it there).
    pub outer_pid: u32,
    init_pid: std::sync::OnceLock<Option<crate::process::signal::Pid>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("outer_pid", &self.outer_pid)
            .finish_non_exhaustive()
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Receives one message, waiting for it.
async fn recv(sock: &AsyncFd<OwnedFd>) -> std::io::Result<Option<wire::Received>> {
    loop {
        let mut guard = sock.readable().await?;
        match guard.try_io(|s| wire::recv(s.get_ref().as_fd(), wire::Peer::Sandbox)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn recv_reply(sock: &AsyncFd<OwnedFd>) -> Result<Reply, NativeOrchestratorError> {
    match recv(sock).await {
        Ok(Some(m)) => Reply::decode(&m.body).map_err(|e| sandbox_err(e.to_string())),
        Ok(None) => Err(sandbox_err("the sandbox init ended during set-up")),
        Err(e) => Err(sandbox_err(format!("reading from the sandbox init: {e}"))),
    }
}

fn write_maps(pid: u32, host_uid: u32, host_gid: u32) -> std::io::Result<()> {
    let dir = format!("/proc/{pid}");
    std::fs::write(format!("{dir}/setgroups"), "deny")?;
    std::fs::write(
        format!("{dir}/uid_map"),
        format!("{SANDBOX_ID} {host_uid} 1\n"),
    )?;
    std::fs::write(
        format!("{dir}/gid_map"),
        format!("{SANDBOX_ID} {host_gid} 1\n"),
    )?;
    Ok(())
}

impl Sandbox {
    /// Starts a sandbox as `setup` says and waits until its init serves.
    pub(crate) async fn start(setup: &Setup) -> Result<Arc<Self>, NativeOrchestratorError> {
        Self::start_inner(setup).await
    }

    async fn start_inner(setup: &Setup) -> Result<Arc<Self>, NativeOrchestratorError> {
        let (ours, theirs) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| sandbox_err(format!("socketpair: {e}")))?;
        set_nonblocking(ours.as_fd()).map_err(|e| sandbox_err(format!("socket: {e}")))?;
        tracing::trace!("spawning the sandbox outer");
        let outer_pid = super::launch::outer(&theirs, &setup.workspace)
            .map_err(|e| sandbox_err(format!("start the sandbox init: {e}")))?;
        drop(theirs);
        let child = match PidfdChild::open(outer_pid) {
            Ok(c) => c,
            Err(e) => {
                // Not left a zombie: killed (its socket is gone anyway) and
                // reaped here.
                // SAFETY: kill and waitpid of our own, unwaited child.
                unsafe {
                    libc::kill(outer_pid as i32, libc::SIGKILL);
                    libc::waitpid(outer_pid as i32, std::ptr::null_mut(), 0);
                }
                return Err(sandbox_err(format!("the sandbox outer's pidfd: {e}")));
            }
        };
        tracing::trace!(outer_pid, "sandbox outer spawned");
        // SAFETY: the AsyncFd owns `ours` from here on; nothing else
        // closes or replaces it.
        let sock =
            unsafe { AsyncFd::register(ours) }.map_err(|e| sandbox_err(format!("socket: {e}")))?;
        let sandbox = Arc::new(Self {
            sock,
            pending: Mutex::new(Pending::default()),
            next: AtomicU64::new(1),
            outer: tokio::sync::Mutex::new(Some(child)),
            outer_pid,
            init_pid: std::sync::OnceLock::new(),
        });
        match tokio::time::timeout(START_TIMEOUT, sandbox.handshake(setup)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                sandbox.shutdown().await;
                return Err(e);
            }
            Err(_) => {
                sandbox.shutdown().await;
                return Err(sandbox_err(format!(
                    "the sandbox init did not start within {START_TIMEOUT:?}"
                )));
            }
        }
        let reader = sandbox.clone();
        tokio::spawn(async move { reader.read_replies().await });
        Ok(sandbox)
    }

    async fn handshake(&self, setup: &Setup) -> Result<(), NativeOrchestratorError> {
        self.send(&setup.encode(), &[]).await?;
        match recv_reply(&self.sock).await? {
            Reply::Unshared => {}
            Reply::SetupFailed { stage, errno } => {
                return Err(setup_failed(&stage, errno));
            }
            other => return Err(sandbox_err(format!("unexpected reply {other:?}"))),
        }
        tracing::trace!("sandbox unshared");
        write_maps(self.outer_pid, setup.host_uid, setup.host_gid)
            .map_err(|e| sandbox_err(format!("write the sandbox's uid/gid maps: {e}")))?;
        self.send(&Request::Mapped.encode(), &[]).await?;
        tracing::trace!("sandbox mapped");
        match recv_reply(&self.sock).await? {
            Reply::Ready => {
                tracing::trace!("sandbox ready");
                Ok(())
            }
            Reply::SetupFailed { stage, errno } => Err(setup_failed(&stage, errno)),
            other => Err(sandbox_err(format!("unexpected reply {other:?}"))),
        }
    }

    async fn send(
        &self,
        body: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), NativeOrchestratorError> {
        loop {
            match wire::send(self.sock.get_ref().as_fd(), body, fds) {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    let mut g = self
                        .sock
                        .writable()
                        .await
                        .map_err(|e| sandbox_err(format!("socket: {e}")))?;
                    g.clear_ready();
                }
                Err(e) => return Err(sandbox_err(format!("sending to the sandbox init: {e}"))),
            }
        }
    }

    /// Sends a request from synchronous code (kills); a full socket (an
    /// init that stopped reading) is waited on briefly.
    fn send_now(&self, req: &Request) {
        let body = req.encode();
        for _ in 0..100 {
            match wire::send(self.sock.get_ref().as_fd(), &body, &[]) {
                Ok(true) | Err(_) => return,
                Ok(false) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    async fn read_replies(self: Arc<Self>) {
        while let Ok(Some(m)) = recv(&self.sock).await {
            match Reply::decode(&m.body) {
                Ok(r) => self.dispatch(r),
                Err(e) => {
                    tracing::warn!(error = %e, "sandbox init sent a malformed reply");
                    break;
                }
            }
        }
        let mut p = lock(&self.pending);
        p.dead = true;
        // Nothing more will come: commands not yet reported ended with
        // their sandbox (killed).
        for (_, w) in p.waiters.drain() {
            if let Some(s) = w.started {
                let _ = s.send(Err(libc::ESRCH));
            }
            if let Some(e) = w.exited {
                let _ = e.send(libc::SIGKILL);
            }
        }
    }

    fn dispatch(&self, r: Reply) {
        let mut p = lock(&self.pending);
        match r {
            Reply::Started { id } => {
                if let Some(s) = p.waiters.get_mut(&id).and_then(|w| w.started.take()) {
                    let _ = s.send(Ok(()));
                }
            }
            Reply::StartFailed { id, errno } => {
                if let Some(s) = p.waiters.remove(&id).and_then(|w| w.started) {
                    let _ = s.send(Err(errno));
                }
            }
            Reply::Exited { id, status } => {
                if let Some(e) = p.waiters.remove(&id).and_then(|mut w| w.exited.take()) {
                    let _ = e.send(status);
                }
            }
            Reply::Joined { id, errno } => {
                if let Some(s) = p.waiters.remove(&id).and_then(|w| w.started) {
                    let _ = s.send(if errno == 0 { Ok(()) } else { Err(errno) });
                }
            }
            other => tracing::warn!(reply = ?other, "unexpected reply from a sandbox init"),
        }
    }

    /// A new request id, its `waiter` registered for the replies; an error
    /// once the init is gone.
    fn register(&self, waiter: Waiter) -> Result<u64, NativeOrchestratorError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut p = lock(&self.pending);
        if p.dead {
            return Err(sandbox_err("the sandbox init is gone"));
        }
        p.waiters.insert(id, waiter);
        Ok(id)
    }

    /// Starts a command. `fds`: stdin (when `spawn.stdin`), stdout,
    /// stderr, then the cgroup.procs files to join. `Ok(Err(errno))` when
    /// it could not start.
    pub(crate) async fn spawn(
        self: &Arc<Self>,
        mut spawn: Spawn,
        fds: Vec<OwnedFd>,
    ) -> Result<Result<Command, i32>, NativeOrchestratorError> {
        let (stx, srx) = oneshot::channel();
        let (etx, erx) = oneshot::channel();
        let id = self.register(Waiter {
            started: Some(stx),
            exited: Some(etx),
        })?;
        spawn.id = id;
        // Dropped before the start is known: kill what may have started.
        let mut guard = Command {
            id,
            sandbox: self.clone(),
            exit: erx,
            done: None,
            armed: true,
        };
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        self.send(&Request::Spawn(spawn).encode(), &borrowed)
            .await?;
        drop(borrowed);
        drop(fds);
        let Ok(started) = tokio::time::timeout(EXEC_TIMEOUT, srx).await else {
            // The guard, still armed, kills it.
            return Err(sandbox_err(format!(
                "the command did not reach exec within {EXEC_TIMEOUT:?}"
            )));
        };
        match started {
            Ok(Ok(())) => {
                guard.armed = false;
                Ok(Ok(guard))
            }
            Ok(Err(errno)) if errno == libc::ESRCH && lock(&self.pending).dead => {
                guard.armed = false;
                Err(sandbox_err("the sandbox init ended"))
            }
            Ok(Err(errno)) => {
                guard.armed = false;
                Ok(Err(errno))
            }
            Err(_) => {
                guard.armed = false;
                Err(sandbox_err("the sandbox init ended"))
            }
        }
    }

    /// Moves the init into the cgroup whose `cgroup.procs` files are
    /// `procs` (one per hierarchy): the commands it forks afterwards are
    /// born in that cgroup. The init itself then counts there as one
    /// process (see [`crate::enforcement`]).
    pub(crate) async fn join(&self, procs: Vec<OwnedFd>) -> Result<(), NativeOrchestratorError> {
        let (tx, rx) = oneshot::channel();
        let id = self.register(Waiter {
            started: Some(tx),
            exited: None,
        })?;
        let borrowed: Vec<BorrowedFd<'_>> = procs.iter().map(|f| f.as_fd()).collect();
        let sent = self.send(&Request::Join { id }.encode(), &borrowed).await;
        drop(borrowed);
        drop(procs);
        let forget = || {
            lock(&self.pending).waiters.remove(&id);
        };
        if let Err(e) = sent {
            forget();
            return Err(e);
        }
        match tokio::time::timeout(EXEC_TIMEOUT, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(errno))) => Err(sandbox_err(format!(
                "the sandbox init could not join the workspace cgroup: {}",
                std::io::Error::from_raw_os_error(errno)
            ))),
            Ok(Err(_)) => Err(sandbox_err("the sandbox init ended")),
            Err(_) => {
                forget();
                Err(sandbox_err(format!(
                    "the sandbox init did not join the workspace cgroup within {EXEC_TIMEOUT:?}"
                )))
            }
        }
    }

    /// The init's pid as this process sees it: the outer process's only
    /// child. Read once, from procfs.
    pub(crate) fn init_pid(&self) -> Option<crate::process::signal::Pid> {
        *self.init_pid.get_or_init(|| {
            let p = self.outer_pid;
            let s = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).ok()?;
            let mut it = s.split_whitespace();
            let pid = it.next()?.parse().ok()?;
            // More than one child would not be the outer process we started.
            it.next().is_none().then_some(())?;
            crate::process::signal::Pid::new(pid)
        })
    }

    /// SIGKILLs command `id`'s tree (inside the sandbox, so nothing
    /// outside can be hit whatever its pids have become).
    pub(crate) fn kill(&self, id: u64) {
        self.send_now(&Request::Kill { id });
    }

    /// SIGKILLs every process of the sandbox but its init.
    pub(crate) fn kill_all(&self) {
        self.send_now(&Request::KillAll);
    }

    /// Tells the init to end (it exits when its end of the socket sees the
    /// close), without waiting. AsyncFd cannot give the descriptor back
    /// while the reader shares it, so the socket is shut down instead.
    pub(crate) fn close(&self) {
        let _ = rustix::net::shutdown(self.sock.get_ref(), rustix::net::Shutdown::Both);
    }

    /// Whether the init still serves.
    pub(crate) fn alive(&self) -> bool {
        !lock(&self.pending).dead
    }

    /// Ends the sandbox: the init sees its socket close and exits (every
    /// process of its pid namespace with it); the outer process's exit
    /// says all are gone. An init that does not end is killed with its
    /// outer process.
    pub(crate) async fn shutdown(&self) {
        self.close();
        let mut outer = self.outer.lock().await;
        if let Some(mut child) = outer.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, child.wait())
                .await
                .is_err()
            {
                child.kill();
                let _ = child.wait().await;
            }
        }
    }
}

fn setup_failed(stage: &str, errno: i32) -> NativeOrchestratorError {
    sandbox_err(format!(
        "building the sandbox failed: {stage} ({})",
        std::io::Error::from_raw_os_error(errno)
    ))
}

/// A command started in a sandbox.
pub(crate) struct Command {
    id: u64,
    sandbox: Arc<Sandbox>,
    exit: oneshot::Receiver<i32>,
    /// The status once known (waiting again gives it again).
    done: Option<Option<std::process::ExitStatus>>,
    armed: bool,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command").field("id", &self.id).finish()
    }
}

impl Command {
    /// Its request id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Waits for its main process to end; `None` when the sandbox ended
    /// first.
    pub(crate) async fn wait(&mut self) -> Option<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        if let Some(done) = self.done {
            return done;
        }
        let status = (&mut self.exit)
            .await
            .ok()
            .map(std::process::ExitStatus::from_raw);
        self.done = Some(status);
        status
    }
}

impl Drop for Command {
    fn drop(&mut self) {
        if self.armed {
            self.sandbox.kill(self.id);
        }
    }
}

//! A workspace's state (directory, sandbox, cgroup, limits, running
//! commands), its lookup, and making one: a fresh id, naming its owner,
//! reserved by creating its directory, its sandbox started when isolated.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use orchestrator_core::owner::Owner;
use orchestrator_core::{
    Error, IsolationReport, ProcessId, ResourceLimits, Result, WorkspaceId, WorkspaceSpec,
};

use crate::cgroup::WorkspaceCgroup;
use crate::error::NativeOrchestratorError;
use crate::jobs::Background;
use crate::process::signal::{Pgid, Pid};
use crate::sandbox::Sandbox;
use crate::sync::{lock, maybe_blocking};
use crate::teardown::CgroupRef;
use crate::NativeOrchestrator;

#[derive(Debug)]
pub(crate) struct Workspace {
    pub id: WorkspaceId,
    pub dir: PathBuf,
    /// How it is isolated.
    pub isolation: IsolationReport,
    /// The host uid and gid its sandbox user maps to, when isolated.
    pub sandbox_ids: Option<(u32, u32)>,
    /// Its sandbox, once started (isolated workspaces only).
    sandbox: OnceLock<Arc<Sandbox>>,
    /// Made on the first limit that needs a cgroup (memory, pids, cpus):
    /// a workspace without such limits costs no cgroup work.
    pub cgroup: Mutex<Option<Arc<WorkspaceCgroup>>>,
    pub limits: Mutex<ResourceLimits>,
    pub background: Mutex<HashMap<ProcessId, Arc<Background>>>,
    /// Process groups of the `run_command`s in flight.
    pub foreground: Mutex<HashSet<Pgid>>,
    pub next_process: AtomicU64,
    /// The first command started here; see [`Workspace::scan_floor`].
    first_pid: OnceLock<Pid>,
    /// Its sandbox init sits in its cgroup: commands are born there.
    init_seated: std::sync::atomic::AtomicBool,
}

impl Workspace {
    fn new(
        id: WorkspaceId,
        dir: PathBuf,
        isolation: IsolationReport,
        sandbox_ids: Option<(u32, u32)>,
    ) -> Self {
        Self {
            id,
            dir,
            isolation,
            sandbox_ids,
            sandbox: OnceLock::new(),
            cgroup: Mutex::new(None),
            limits: Mutex::new(ResourceLimits::default()),
            background: Mutex::new(HashMap::new()),
            foreground: Mutex::new(HashSet::new()),
            next_process: AtomicU64::new(1),
            first_pid: OnceLock::new(),
            init_seated: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether its sandbox init sits in its cgroup (see
    /// [`NativeOrchestrator::seat_init`]).
    pub fn init_seated(&self) -> bool {
        self.init_seated.load(Ordering::Acquire)
    }

    pub fn set_init_seated(&self) {
        self.init_seated.store(true, Ordering::Release);
    }

    pub fn cgroup(&self) -> Option<Arc<WorkspaceCgroup>> {
        lock(&self.cgroup).clone()
    }

    /// Where its commands start: `Ok(None)` on the host, its sandbox when
    /// isolated; a sandbox that never started or has ended is an error
    /// (its commands must not fall back to the host).
    pub fn sandbox(&self) -> Result<Option<Arc<Sandbox>>> {
        if self.sandbox_ids.is_none() {
            return Ok(None);
        }
        match self.sandbox.get() {
            Some(s) if s.alive() => Ok(Some(s.clone())),
            _ => Err(NativeOrchestratorError::Sandbox(format!(
                "the sandbox of workspace {} is not running",
                self.id
            ))
            .into()),
        }
    }

    /// Its sandbox, if one was started (for teardown).
    pub fn started_sandbox(&self) -> Option<&Arc<Sandbox>> {
        self.sandbox.get()
    }

    /// Notes a started command (its group leader's pid).
    pub fn note_spawn(&self, pgid: Pgid) {
        let _ = self.first_pid.set(pgid.leader());
    }

    /// The lowest pid a leftover process of this workspace can have, or
    /// `None` when no command ever ran here (nothing to look for).
    /// [`crate::procfs::processes_in_dir`] falls back to a full scan when
    /// the pid counter wrapped since.
    pub fn scan_floor(&self) -> Option<Pid> {
        self.first_pid.get().copied()
    }
}

/// The start of every workspace name `owner` makes: `ws-<owner token>`
/// ([`Owner::token`]); [`owner_of`] reads it back.
pub(crate) fn name_prefix(owner: &Owner) -> String {
    format!("ws-{}", owner.token())
}

/// The owner a workspace name (`<name_prefix>-<unique part>`) names;
/// `None` for a name not made that way.
pub(crate) fn owner_of(name: &str) -> Option<Owner> {
    let (owner, unique) = Owner::parse_token(name.strip_prefix("ws-")?)?;
    (!unique.is_empty() && !unique.contains('-')).then_some(owner)
}

impl NativeOrchestrator {
    pub(crate) fn get(&self, id: &WorkspaceId) -> Result<Arc<Workspace>> {
        lock(&self.inner.workspaces)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::workspace_not_found(id))
    }

    /// A workspace whose directory still exists. One removed behind the
    /// backend's back is NotFound (never silently recreated by a copy);
    /// `cleanup` still tears down what is left of it.
    pub(crate) fn get_existing(&self, id: &WorkspaceId) -> Result<Arc<Workspace>> {
        let ws = self.get(id)?;
        match std::fs::symlink_metadata(&ws.dir) {
            Ok(md) if md.is_dir() => Ok(ws),
            _ => Err(Error::workspace_not_found(format!(
                "{id} (its directory {} is gone)",
                ws.dir.display()
            ))),
        }
    }

    /// A fresh id, `<name prefix>-<counter><nanos>` (the unique part in
    /// hex): the owner is part of the name, so recovery needs no metadata
    /// file (see [`owner_of`]). The counter is process-wide: two backends in
    /// one process (the conformance suite makes one per case) never draw
    /// the same id, whatever the clock's resolution.
    fn new_id(&self) -> Result<WorkspaceId> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        WorkspaceId::new(format!("{}-{n:x}{nanos:08x}", self.inner.name_prefix))
    }

    /// Reserves a new id by creating its directory exclusively, so an id
    /// that exists on disk (left by a crashed process that had the same pid
    /// and start time, say) is skipped, never reused or removed.
    pub(crate) fn reserve(&self) -> Result<(WorkspaceId, PathBuf)> {
        use std::os::unix::fs::DirBuilderExt;
        const ATTEMPTS: usize = 16;
        for _ in 0..ATTEMPTS {
            let id = self.new_id()?;
            let dir = self.inner.root.join(id.as_str());
            match std::fs::DirBuilder::new().mode(0o755).create(&dir) {
                Ok(()) => return Ok((id, dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(NativeOrchestratorError::io("create workspace", &dir, e).into())
                }
            }
        }
        Err(NativeOrchestratorError::io(
            "create workspace",
            &self.inner.root,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("no free workspace id after {ATTEMPTS} attempts"),
            ),
        )
        .into())
    }

    /// `create_workspace`: a registered workspace with `spec`'s limits,
    /// and, when isolated, its sandbox (with `spec`'s mounts) running.
    /// Mounts need the sandbox's mount namespace: without isolation a spec
    /// with any is `Unsupported` (never silently ignored).
    pub(crate) async fn create(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        // Made on a task of its own: a caller that goes away mid-way (a
        // client that disconnected, a cancelled run) would otherwise leave
        // a workspace that no one knows to remove. The task finishes and,
        // finding no one to hand the workspace to, tears it down.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let spec = spec.clone();
        tokio::spawn(async move {
            let made = this.create_now(&spec).await;
            if let Err(Ok(id)) = tx.send(made) {
                tracing::debug!(workspace = %id, "its creator went away; removing it");
                let _ = this.tear_down(&id).await;
            }
        });
        rx.await
            .map_err(|_| NativeOrchestratorError::Task("workspace creation was cut short".into()))?
    }

    async fn create_now(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        if !spec.mounts.is_empty() {
            // A sandbox that fails on a mount says nothing about the host:
            // the question is put to a probe sandbox without mounts first.
            let _ = self.isolation_state();
        }
        self.check_isolation(&spec.mounts)?;
        // Refused before anything is made or taken from the pool.
        if let Some(l) = &spec.limits {
            if l.strict() || self.inner.config.strict {
                self.report(l).check_strict()?;
            }
        }
        if spec.mounts.is_empty() {
            if let Some(p) = self.take_pooled().await {
                return self.adopt(p, spec).await;
            }
        }
        // Not known yet whether this host isolates: this workspace's
        // sandbox is the probe.
        let learning = self.isolation_known().is_none();
        let isolate = self.isolation_known().unwrap_or(true);
        let this = self.clone();
        let spec2 = spec.clone();
        // Without limits this is a small file and a directory: done inline.
        let quick = spec.limits.is_none();
        // Registered inside the task: when this future is dropped mid-way,
        // the workspace is still known (and removed on drop).
        let ws = maybe_blocking(quick, move || {
            let ws = this.create_sync(&spec2, isolate)?;
            tracing::debug!(workspace = %ws.id, dir = %ws.dir.display(), "workspace created");
            lock(&this.inner.workspaces).insert(ws.id.clone(), ws.clone());
            Ok(ws)
        })
        .await?;
        let id = ws.id.clone();
        if let Some(ids) = ws.sandbox_ids {
            let setup = self.sandbox_setup(&ws.dir, ids, &spec.mounts);
            #[cfg(test)]
            let started = match self.inner.fail_next_sandbox.swap(false, Ordering::AcqRel) {
                true => Err(NativeOrchestratorError::Sandbox("injected failure".into())),
                false => Sandbox::start(&setup).await,
            };
            #[cfg(not(test))]
            let started = Sandbox::start(&setup).await;
            match started {
                Ok(s) => {
                    let _ = ws.sandbox.set(s);
                    if learning {
                        self.learn_isolation(Ok(()));
                    }
                }
                Err(e) if learning => {
                    // One sandbox that did not start (a timeout under load,
                    // a namespace limit reached) does not decide for the
                    // process: the probe does, and the workspace is made
                    // again as its answer says (host processes for `auto`
                    // when the host cannot isolate, refused for `full`; a
                    // second failure of a host that can is an error).
                    let _ = self.tear_down(&id).await;
                    tracing::debug!(error = %e, "the first sandbox failed; asking the probe");
                    let _ = self.isolation_state();
                    return Box::pin(self.create_now(spec)).await;
                }
                Err(e) => {
                    let _ = self.tear_down(&id).await;
                    return Err(e.into());
                }
            }
            if let Err(e) = self.seat_init(&ws).await {
                let _ = self.tear_down(&id).await;
                return Err(e);
            }
        }
        Ok(id)
    }

    /// Makes a pooled workspace the workspace `spec` asks for: registered,
    /// its limits applied (a cgroup made on demand, as for a fresh one).
    async fn adopt(&self, p: crate::pool::Pooled, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        let isolation = self.isolation_report(Some(p.ids.0));
        let ws = Arc::new(Workspace::new(p.id.clone(), p.dir, isolation, Some(p.ids)));
        let _ = ws.sandbox.set(p.sandbox);
        if let Some(cg) = p.cgroup {
            *lock(&ws.cgroup) = Some(cg);
            ws.set_init_seated();
        }
        let id = ws.id.clone();
        lock(&self.inner.workspaces).insert(id.clone(), ws.clone());
        if let Some(l) = spec.limits.clone() {
            let this = self.clone();
            let applied = maybe_blocking(false, move || this.apply_limits_sync(&ws, &l).map(drop));
            if let Err(e) = applied.await {
                let _ = self.tear_down(&id).await;
                return Err(e);
            }
        }
        tracing::debug!(workspace = %id, "workspace taken from the warm pool");
        Ok(id)
    }

    /// Makes a fresh workspace, given a sandbox user when `isolate`.
    fn create_sync(&self, spec: &WorkspaceSpec, isolate: bool) -> Result<Arc<Workspace>> {
        let (id, dir) = self.reserve()?;
        // From here on the directory is ours: a failure removes it.
        let sandbox_ids = isolate.then(|| self.host_ids(&id));
        let isolation = self.isolation_report(sandbox_ids.map(|i| i.0));
        let ws = Arc::new(Workspace::new(
            id.clone(),
            dir.clone(),
            isolation,
            sandbox_ids,
        ));
        if let Some((uid, gid)) = sandbox_ids {
            // The sandbox user owns its workspace (as root it is not the
            // service's uid); the service, as root or as that same user,
            // still reads and removes everything in it.
            if let Err(e) = std::os::unix::fs::chown(&dir, Some(uid), Some(gid)) {
                let _ = self.remove_all(id.as_str(), &dir, CgroupRef::Lookup);
                return Err(NativeOrchestratorError::io("chown workspace", &dir, e).into());
            }
        }
        let applied = match &spec.limits {
            Some(l) => self.apply_limits_sync(&ws, l).map(drop),
            None => Ok(()),
        };
        match applied {
            Ok(()) => Ok(ws),
            Err(e) => {
                let _ = self.remove_all(id.as_str(), &dir, CgroupRef::Lookup);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_owner() {
        let me = Owner::current();
        let name = format!("{}-1f00", name_prefix(&me));
        assert_eq!(owner_of(&name), Some(me.clone()));
        // Written by another process: its pid and start time come back.
        let other = owner_of("ws-42-4242-1").unwrap();
        assert_eq!((other.pid, other.start_time), (0x42, Some(0x4242)));
        for not_ours in [
            "ws-orphan-1",
            "ws-42-4242",
            "ws-42-4242-",
            "ws-42-1-2-3",
            "x-42-1-2",
        ] {
            assert_eq!(owner_of(not_ours), None, "{not_ours}");
        }
    }
}

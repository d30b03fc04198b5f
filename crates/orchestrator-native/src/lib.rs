//! # orchestrator-native
//!
//! runbox's default backend. A workspace is a directory under a workspace
//! root; commands are host processes, each in its own process group, with a
//! clean environment. Limits are enforced by cgroup v2 where the unified
//! hierarchy offers memory, pids and cpu; by cgroup v1 (through cgroups-rs)
//! on hybrid hosts; by rlimits where no cgroup can be written. The
//! [`LimitReport`] says which, and strict mode refuses what cannot be
//! enforced. Stop and cleanup kill whole process trees.
//!
//! ```no_run
//! # async fn demo() -> orchestrator_core::Result<()> {
//! use orchestrator_core::{CommandSpec, Orchestrator, WorkspaceSpec};
//! use orchestrator_native::{NativeConfig, NativeOrchestrator};
//!
//! let native = NativeOrchestrator::new(NativeConfig::default())?;
//! let ws = native.create_workspace(&WorkspaceSpec::new()).await?;
//! let out = native.run_command(&ws, &CommandSpec::shell("echo hi")).await?;
//! assert_eq!(out.stdout, b"hi\n");
//! native.cleanup(&ws).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod cgroup;
mod error;
mod fsops;
mod process;
mod procfs;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_core::{
    paths, Availability, Capabilities, CommandSpec, Error, ExecOutput, LimitEntry, LimitKind,
    LimitReport, Mechanism, Orchestrator, ProcessId, ProcessSnapshot, ResourceLimits, Result,
    WorkspaceId, WorkspaceSpec,
};
use tokio::sync::watch;

pub use cgroup::CgroupVersion;
pub use error::NativeOrchestratorError;

use cgroup::{CgroupSupport, WorkspaceCgroup};
use process::{Rlimit, Shared, SpawnPlan};

/// The name this backend registers under.
pub const BACKEND_NAME: &str = "native";

/// Output kept per stream when no output limit is set: 64 MiB. Beyond it
/// output is drained and dropped (the `*_truncated` flag is set) but the
/// command is not stopped: that only happens for a requested limit.
pub const DEFAULT_OUTPUT_CAP: u64 = 64 << 20;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Configuration of the native backend.
#[derive(Debug, Clone)]
pub struct NativeConfig {
    /// Where workspace directories are made. Default: `$RUNBOX_WORKSPACE_ROOT`,
    /// else [`default_root`] (a roomy `/dev/shm` tmpfs, else the temp dir).
    pub workspace_root: PathBuf,
    /// Strict limits: a limit that cannot be enforced is an error for every
    /// workspace (as if each `ResourceLimits` had `strict` set).
    pub strict: bool,
    /// cgroup under which workspace cgroups are made (relative to each
    /// hierarchy's root). Default `runbox`.
    pub cgroup_parent: String,
    /// Use cgroups when writable (default). `false` forces the rlimit
    /// fallback, as on hosts without writable cgroups.
    pub use_cgroups: bool,
}

impl Default for NativeConfig {
    fn default() -> Self {
        let root = std::env::var_os("RUNBOX_WORKSPACE_ROOT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(default_root);
        Self {
            workspace_root: root,
            strict: false,
            cgroup_parent: "runbox".to_string(),
            use_cgroups: true,
        }
    }
}

/// A tmpfs must have this much room to be the default workspace root.
const MIN_TMPFS_ROOM: u64 = 1 << 30;

/// The default workspace root: `/dev/shm/runbox-<uid>` when `/dev/shm` is a
/// writable tmpfs with at least 1 GiB free (creating and deleting files there
/// costs a fraction of a disk filesystem's, which dominates a short
/// execution), else `<temp dir>/runbox-<uid>`.
pub fn default_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let shm = Path::new("/dev/shm");
    if is_roomy_tmpfs(shm) {
        return shm.join(format!("runbox-{uid}"));
    }
    std::env::temp_dir().join(format!("runbox-{uid}"))
}

fn is_roomy_tmpfs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs/access write only into the struct we pass / read the
    // NUL-terminated path we own.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 || st.f_type != libc::TMPFS_MAGIC {
            return false;
        }
        let free = (st.f_bavail as u64).saturating_mul(st.f_bsize as u64);
        free >= MIN_TMPFS_ROOM && libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0
    }
}

/// The native backend. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct NativeOrchestrator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: NativeConfig,
    root: PathBuf,
    cgroups: std::result::Result<CgroupSupport, String>,
    owner: (i32, u64),
    workspaces: Mutex<HashMap<WorkspaceId, Arc<Workspace>>>,
}

#[derive(Debug)]
struct Workspace {
    id: WorkspaceId,
    dir: PathBuf,
    /// Made on the first limit that needs a cgroup (memory, pids, cpus):
    /// a workspace without such limits costs no cgroup work.
    cgroup: Mutex<Option<Arc<WorkspaceCgroup>>>,
    limits: Mutex<ResourceLimits>,
    background: Mutex<HashMap<ProcessId, Arc<Background>>>,
    foreground: Mutex<HashSet<i32>>,
    next_process: AtomicU64,
    /// Pid of the first command started here (0: none yet); see
    /// [`Workspace::scan_floor`].
    first_pid: std::sync::atomic::AtomicI32,
}

#[derive(Debug)]
struct Background {
    pgid: i32,
    shared: Arc<Shared>,
    result: watch::Receiver<Option<ExecOutput>>,
}

/// Which cgroup [`NativeOrchestrator::remove_all`] should remove.
#[derive(Clone, Copy)]
enum CgroupRef<'a> {
    /// The workspace is ours: we know its cgroup (or that it has none) and
    /// the scan floor for leftover processes (`None`: nothing ever ran).
    Known(Option<&'a WorkspaceCgroup>, Option<i32>),
    /// Not ours (recovery): look the cgroup up by name.
    Lookup,
}

impl Workspace {
    fn cgroup(&self) -> Option<Arc<WorkspaceCgroup>> {
        lock(&self.cgroup).clone()
    }

    fn note_spawn(&self, pid: i32) {
        let _ = self
            .first_pid
            .compare_exchange(0, pid, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The lowest pid a leftover process of this workspace can have, or
    /// `None` when no command ever ran here (nothing to look for).
    /// [`procfs::processes_in_dir`] falls back to a full scan when the pid
    /// counter wrapped since.
    fn scan_floor(&self) -> Option<i32> {
        match self.first_pid.load(Ordering::Relaxed) {
            0 => None,
            first => Some(first),
        }
    }
}

fn kill_pids(pids: Vec<i32>) {
    for pid in pids {
        // SAFETY: kill(2) of one pid; touches no memory.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` inline when `quick`, else on the blocking pool: work this small
/// (a few syscalls on small files) costs less than a trip through the pool.
async fn maybe_blocking<T: Send + 'static>(
    quick: bool,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if quick {
        f()
    } else {
        blocking(f).await
    }
}

/// The lstat of a copy's source, and whether it is a regular file small
/// enough to copy inline.
fn small_file(p: &Path) -> (Option<std::fs::Metadata>, bool) {
    let md = std::fs::symlink_metadata(p).ok();
    let small = md
        .as_ref()
        .is_some_and(|m| m.is_file() && m.len() <= fsops::SMALL_FILE_MAX);
    (md, small)
}

/// Removes a directory that holds a handful of entries and no
/// subdirectory, with one listing (cheap enough to do inline). `Ok(false)`,
/// with nothing removed, for anything bigger: the caller takes the general
/// path on the blocking pool.
fn remove_small_flat(dir: &Path) -> std::io::Result<bool> {
    const MAX: usize = 32;
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for e in rd {
        let e = e?;
        if names.len() == MAX || e.file_type()?.is_dir() {
            return Ok(false);
        }
        names.push(e.file_name());
    }
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    for n in names {
        gone(std::fs::remove_file(dir.join(n)))?;
    }
    match std::fs::remove_dir(dir) {
        // Something appeared meanwhile: the general path removes it.
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(false),
        r => gone(r).map(|()| true),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NativeOrchestratorError::Task(e.to_string()))?
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl NativeOrchestrator {
    /// Creates the backend: makes the workspace root and detects cgroups.
    pub fn new(config: NativeConfig) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let root = &config.workspace_root;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| NativeOrchestratorError::io("create workspace root", root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| NativeOrchestratorError::io("canonicalize", root, e))?;
        let cgroups = if config.use_cgroups {
            CgroupSupport::detect(&config.cgroup_parent)
        } else {
            Err("cgroups disabled by configuration".to_string())
        };
        match &cgroups {
            Ok(c) => tracing::debug!(version = ?c.version, "native backend uses cgroups"),
            Err(why) => tracing::info!(%why, "native backend without cgroups: rlimit fallback"),
        }
        let me = std::process::id() as i32;
        let owner = (me, procfs::start_time(me).unwrap_or(0));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                root,
                cgroups,
                owner,
                workspaces: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The cgroup version in use, or `None` on the rlimit fallback.
    pub fn cgroup_version(&self) -> Option<CgroupVersion> {
        self.inner.cgroups.as_ref().ok().map(|c| c.version)
    }

    /// Why cgroups are not used, when they are not.
    pub fn cgroup_unavailable_reason(&self) -> Option<&str> {
        self.inner.cgroups.as_ref().err().map(String::as_str)
    }

    /// The canonical workspace root.
    pub fn workspace_root(&self) -> &Path {
        &self.inner.root
    }

    fn get(&self, id: &WorkspaceId) -> Result<Arc<Workspace>> {
        lock(&self.inner.workspaces)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::workspace_not_found(id))
    }

    /// A workspace whose directory still exists. One removed behind the
    /// backend's back is NotFound (never silently recreated by a copy);
    /// `cleanup` still tears down what is left of it.
    fn get_existing(&self, id: &WorkspaceId) -> Result<Arc<Workspace>> {
        let ws = self.get(id)?;
        match std::fs::symlink_metadata(&ws.dir) {
            Ok(md) if md.is_dir() => Ok(ws),
            _ => Err(Error::workspace_not_found(format!(
                "{id} (its directory {} is gone)",
                ws.dir.display()
            ))),
        }
    }

    fn mechanism(&self) -> Option<Mechanism> {
        match &self.inner.cgroups {
            Ok(c) if c.version == CgroupVersion::V2 => Some(Mechanism::CgroupV2),
            Ok(_) => Some(Mechanism::CgroupV1),
            Err(_) => None,
        }
    }

    /// How each limit kind is enforced here: mechanism and note, or reason.
    fn enforcement(&self, kind: LimitKind) -> (Option<Mechanism>, String) {
        let cg = self.mechanism();
        let no_cg = || {
            self.cgroup_unavailable_reason()
                .unwrap_or("no cgroup")
                .to_string()
        };
        match kind {
            LimitKind::Memory => match cg {
                Some(m) => (
                    Some(m),
                    "memory limit with swap disabled; OOM kills detected".into(),
                ),
                None => (
                    Some(Mechanism::Rlimit),
                    format!(
                        "RLIMIT_AS per process (address space, not RSS; OOM not detected): {}",
                        no_cg()
                    ),
                ),
            },
            LimitKind::Cpus => match cg {
                Some(m) => (Some(m), "CFS quota over a 100 ms period".into()),
                None => (None, format!("CPU bandwidth needs a cgroup: {}", no_cg())),
            },
            LimitKind::Pids => match cg {
                Some(m) => (Some(m), "pids controller (processes and threads)".into()),
                None if !is_root() => (
                    Some(Mechanism::Rlimit),
                    format!(
                        "RLIMIT_NPROC counts every process of the user, not only the sandbox's: {}",
                        no_cg()
                    ),
                ),
                None => (
                    None,
                    format!("RLIMIT_NPROC does not bind root and no cgroup: {}", no_cg()),
                ),
            },
            LimitKind::WallTimeout => (
                Some(Mechanism::Runbox),
                "timer; the whole process tree is killed".into(),
            ),
            LimitKind::CpuTime => (
                Some(Mechanism::Rlimit),
                "RLIMIT_CPU per process, whole seconds rounded up (SIGXCPU, then SIGKILL)".into(),
            ),
            LimitKind::FileSize => (Some(Mechanism::Rlimit), "RLIMIT_FSIZE (SIGXFSZ)".into()),
            LimitKind::OpenFiles => (Some(Mechanism::Rlimit), "RLIMIT_NOFILE".into()),
            LimitKind::OutputBytes => (
                Some(Mechanism::Runbox),
                "captured output capped per stream; the command is stopped".into(),
            ),
            _ => (None, "limit kind unknown to the native backend".into()),
        }
    }

    fn report(&self, limits: &ResourceLimits) -> LimitReport {
        LimitReport {
            entries: limits
                .requested()
                .into_iter()
                .map(|(kind, requested)| {
                    let (enforced_by, note) = self.enforcement(kind);
                    LimitEntry {
                        kind,
                        requested,
                        enforced_by,
                        note: Some(note),
                    }
                })
                .collect(),
        }
    }

    fn rlimits(&self, l: &ResourceLimits) -> Vec<Rlimit> {
        let mut v = Vec::new();
        let mut push = |resource, n: u64| {
            v.push(Rlimit {
                resource,
                soft: n,
                hard: n,
            })
        };
        if let Some(d) = l.file_size_bytes {
            push(libc::RLIMIT_FSIZE, d);
        }
        if let Some(n) = l.open_files {
            push(libc::RLIMIT_NOFILE, n);
        }
        let cg = self.inner.cgroups.is_ok();
        if let Some(m) = l.memory_bytes.filter(|_| !cg) {
            push(libc::RLIMIT_AS, m);
        }
        if let Some(n) = l.pids.filter(|_| !cg && !is_root()) {
            push(libc::RLIMIT_NPROC, n);
        }
        if let Some(d) = l.cpu_time {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            v.push(Rlimit {
                resource: libc::RLIMIT_CPU,
                soft: secs,
                hard: secs + 1,
            });
        }
        v
    }

    /// A fresh id, `ws-<owner pid>-<owner start time>-<counter><nanos>` (hex):
    /// the owner is part of the name, so recovery needs no metadata file
    /// (see [`owner_of`]). The counter is process-wide: two backends in one
    /// process (the conformance suite makes one per case) never draw the
    /// same id, whatever the clock's resolution.
    fn new_id(&self) -> Result<WorkspaceId> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let (pid, start) = self.inner.owner;
        WorkspaceId::new(format!("ws-{pid:x}-{start:x}-{n:x}{nanos:08x}"))
    }

    /// Reserves a new id by creating its directory exclusively, so an id
    /// that exists on disk (left by a crashed process that had the same pid
    /// and start time, say) is skipped, never reused or removed.
    fn reserve(&self) -> Result<(WorkspaceId, PathBuf)> {
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

    fn plan(&self, ws: &Workspace, cmd: &CommandSpec) -> Result<SpawnPlan> {
        cmd.validate()?;
        let cwd = match &cmd.workdir {
            Some(w) => paths::resolve_in_root(&ws.dir, w)?,
            None => ws.dir.clone(),
        };
        // The root itself was just checked by `get_existing`.
        if cmd.workdir.is_some() && !cwd.is_dir() {
            return Err(Error::NotFound {
                what: "working directory",
                id: cmd.workdir.clone().unwrap_or_default(),
            });
        }
        let limits = lock(&ws.limits).clone();
        let mut env: HashMap<String, String> = HashMap::with_capacity(cmd.env.len() + 3);
        env.insert("PATH".into(), DEFAULT_PATH.into());
        env.insert("HOME".into(), ws.dir.to_string_lossy().into_owned());
        env.insert("LANG".into(), "C.UTF-8".into());
        env.extend(cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(SpawnPlan {
            argv: cmd.argv.clone(),
            env: env.into_iter().collect(),
            cwd,
            stdin: cmd.stdin.clone(),
            rlimits: self.rlimits(&limits),
            cgroup: ws.cgroup(),
            output_cap: min_opt(cmd.output_limit, limits.output_bytes)
                .unwrap_or(DEFAULT_OUTPUT_CAP),
            enforce_cap: cmd.output_limit.is_some() || limits.output_bytes.is_some(),
            sink: cmd.output.clone(),
            timeout: min_opt(cmd.timeout, limits.wall_timeout),
        })
    }

    /// Kills every process of a workspace (background, foreground, cgroup).
    fn kill_everything(ws: &Workspace) {
        Self::kill_groups(ws);
        match ws.cgroup() {
            Some(cg) => cg.kill_all(),
            // No cgroup: processes that left their group are found by
            // their working directory.
            None => {
                if let Some(floor) = ws.scan_floor() {
                    kill_pids(procfs::processes_in_dir(&ws.dir, floor))
                }
            }
        }
    }

    /// Kills the process groups of running commands.
    fn kill_groups(ws: &Workspace) {
        for b in lock(&ws.background).values() {
            if b.result.borrow().is_none() {
                procfs::kill_tree(b.pgid);
            }
        }
        for pgid in lock(&ws.foreground).iter() {
            procfs::kill_tree(*pgid);
        }
    }

    /// Removes everything a workspace id may have on the host.
    fn remove_all(&self, id: &str, dir: &Path, cgroup: CgroupRef<'_>) -> Result<()> {
        let loaded;
        let (cgroup, floor) = match cgroup {
            CgroupRef::Known(c, floor) => (c, floor),
            CgroupRef::Lookup => {
                loaded = self.inner.cgroups.as_ref().ok().and_then(|s| s.load(id));
                (loaded.as_ref(), Some(0))
            }
        };
        match (cgroup, floor) {
            (Some(cg), _) => cg.kill_all(),
            (None, Some(floor)) => kill_pids(procfs::processes_in_dir(dir, floor)),
            (None, None) => {}
        }
        // The directory goes last: while it exists, `reap_orphans` (after a
        // crash half-way through) finds the workspace and finishes the job.
        if let Some(cg) = cgroup {
            cg.remove()?;
        }
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NativeOrchestratorError::io("remove workspace", dir, e).into()),
        }
    }

    fn apply_limits_sync(&self, ws: &Workspace, limits: &ResourceLimits) -> Result<LimitReport> {
        limits.validate()?;
        let report = self.report(limits);
        if limits.strict || self.inner.config.strict {
            report.check_strict()?;
        }
        let wants_cgroup =
            limits.memory_bytes.is_some() || limits.pids.is_some() || limits.cpus.is_some();
        let cgroup = match (&self.inner.cgroups, wants_cgroup) {
            (Ok(support), true) => {
                let mut slot = lock(&ws.cgroup);
                match &*slot {
                    Some(cg) => Some(cg.clone()),
                    None => {
                        let cg = Arc::new(support.create(ws.id.as_str())?);
                        *slot = Some(cg.clone());
                        Some(cg)
                    }
                }
            }
            _ => None,
        };
        if let Some(cg) = &cgroup {
            if let Some(m) = limits.memory_bytes {
                cg.set_memory(m)?;
            }
            if let Some(p) = limits.pids {
                cg.set_pids(p)?;
            }
            if let Some(c) = limits.cpus {
                cg.set_cpus(c)?;
            }
        }
        let mut cur = lock(&ws.limits);
        macro_rules! merge {
            ($($f:ident),*) => { $( if limits.$f.is_some() { cur.$f = limits.$f; } )* };
        }
        merge!(
            memory_bytes,
            cpus,
            pids,
            wall_timeout,
            cpu_time,
            file_size_bytes,
            open_files,
            output_bytes
        );
        Ok(report)
    }

    fn create_sync(&self, spec: &WorkspaceSpec) -> Result<Arc<Workspace>> {
        if let Some(l) = &spec.limits {
            l.validate()?;
            if l.strict || self.inner.config.strict {
                self.report(l).check_strict()?;
            }
        }
        let (id, dir) = self.reserve()?;
        // From here on the directory is ours: a failure removes it.
        let made = (|| -> Result<Arc<Workspace>> {
            let ws = Arc::new(Workspace {
                id: id.clone(),
                dir: dir.clone(),
                cgroup: Mutex::new(None),
                limits: Mutex::new(ResourceLimits::default()),
                background: Mutex::new(HashMap::new()),
                foreground: Mutex::new(HashSet::new()),
                next_process: AtomicU64::new(1),
                first_pid: std::sync::atomic::AtomicI32::new(0),
            });
            if let Some(l) = &spec.limits {
                self.apply_limits_sync(&ws, l)?;
            }
            Ok(ws)
        })();
        match made {
            Ok(ws) => Ok(ws),
            Err(e) => {
                let _ = self.remove_all(id.as_str(), &dir, CgroupRef::Lookup);
                Err(e)
            }
        }
    }
}

/// The owner (pid, start time) a workspace id names (see
/// [`NativeOrchestrator::new_id`]); `None` for a name not made that way.
fn owner_of(id: &str) -> Option<(i32, u64)> {
    let mut it = id.strip_prefix("ws-")?.split('-');
    let pid = i32::from_str_radix(it.next()?, 16).ok()?;
    let start = u64::from_str_radix(it.next()?, 16).ok()?;
    it.next()?;
    it.next().is_none().then_some((pid, start))
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Nothing outlives the backend: remove what callers forgot.
        let all: Vec<Arc<Workspace>> = lock(&self.workspaces).drain().map(|(_, w)| w).collect();
        for ws in all {
            NativeOrchestrator::kill_everything(&ws);
            let _ = std::fs::remove_dir_all(&ws.dir);
            if let Some(cg) = ws.cgroup() {
                let _ = cg.remove();
            }
        }
    }
}

#[async_trait]
impl Orchestrator for NativeOrchestrator {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    fn capabilities(&self) -> Capabilities {
        let limits = LimitKind::ALL
            .into_iter()
            .filter(|k| self.enforcement(*k).0.is_some())
            .collect();
        Capabilities {
            copy: true,
            background: true,
            direct_access: true,
            network_isolation: false,
            oom_detection: self.inner.cgroups.is_ok(),
            limits,
        }
    }

    async fn is_available(&self) -> Availability {
        let probe = &self.inner.root;
        match std::fs::metadata(probe) {
            Err(e) => Availability::no(format!("workspace root {} unusable: {e}", probe.display())),
            Ok(_) => match &self.inner.cgroups {
                Ok(_) => Availability::yes(),
                Err(why) => Availability::degraded(format!(
                    "no writable cgroups ({why}); limits fall back to rlimits"
                )),
            },
        }
    }

    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        let this = self.clone();
        let spec = spec.clone();
        // Without limits this is a small file and a directory: done inline.
        let quick = spec.limits.is_none();
        // Registered inside the task: when this future is dropped mid-way,
        // the workspace is still known (and removed on drop).
        maybe_blocking(quick, move || {
            let ws = this.create_sync(&spec)?;
            let id = ws.id.clone();
            tracing::debug!(workspace = %id, dir = %ws.dir.display(), "workspace created");
            lock(&this.inner.workspaces).insert(id.clone(), ws);
            Ok(id)
        })
        .await
    }

    async fn apply_resource_limits(
        &self,
        id: &WorkspaceId,
        limits: &ResourceLimits,
    ) -> Result<LimitReport> {
        let ws = self.get(id)?;
        self.apply_limits_sync(&ws, limits)
    }

    async fn copy_to(&self, id: &WorkspaceId, host_path: &Path, sandbox_path: &str) -> Result<()> {
        let ws = self.get_existing(id)?;
        let dest = paths::resolve_in_root(&ws.dir, sandbox_path)?;
        let src = host_path.to_path_buf();
        let (md, quick) = small_file(&src);
        maybe_blocking(quick, move || fsops::copy_in(&src, &dest, &ws.dir, md)).await
    }

    async fn copy_from(
        &self,
        id: &WorkspaceId,
        sandbox_path: &str,
        host_path: &Path,
    ) -> Result<()> {
        let ws = self.get_existing(id)?;
        let src = paths::resolve_in_root(&ws.dir, sandbox_path)?;
        let dest = paths::host_copy_target(
            host_path,
            paths::sandbox_relative(sandbox_path)?.file_name(),
        )?;
        let (md, quick) = small_file(&src);
        maybe_blocking(quick, move || fsops::copy_out(&src, &dest, &ws.dir, md)).await
    }

    async fn run_command(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput> {
        let ws = self.get_existing(id)?;
        let plan = self.plan(&ws, cmd)?;
        let running = match process::spawn(plan)? {
            Ok(r) => r,
            Err(status) => return Ok(process::not_started(status)),
        };
        let pgid = running.pgid;
        ws.note_spawn(pgid);
        lock(&ws.foreground).insert(pgid);
        let out = process::drive(running).await;
        lock(&ws.foreground).remove(&pgid);
        Ok(out)
    }

    async fn start_background(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ProcessId> {
        let ws = self.get_existing(id)?;
        let plan = self.plan(&ws, cmd)?;
        let pid = ProcessId::new(format!(
            "p{}",
            ws.next_process.fetch_add(1, Ordering::Relaxed)
        ))?;
        let (tx, rx) = watch::channel(None);
        let bg = match process::spawn(plan)? {
            Ok(running) => {
                ws.note_spawn(running.pgid);
                let bg = Background {
                    pgid: running.pgid,
                    shared: running.shared.clone(),
                    result: rx,
                };
                tokio::spawn(async move {
                    let out = process::drive(running).await;
                    let _ = tx.send(Some(out));
                });
                bg
            }
            Err(status) => {
                let _ = tx.send(Some(process::not_started(status)));
                Background {
                    pgid: 0,
                    shared: Arc::new(process::Shared::empty()),
                    result: rx,
                }
            }
        };
        lock(&ws.background).insert(pid.clone(), Arc::new(bg));
        Ok(pid)
    }

    async fn process_status(&self, id: &WorkspaceId, pid: &ProcessId) -> Result<ProcessSnapshot> {
        let ws = self.get(id)?;
        let bg = lock(&ws.background)
            .get(pid)
            .cloned()
            .ok_or_else(|| Error::process_not_found(pid))?;
        let done = bg.result.borrow().clone();
        Ok(match done {
            Some(out) => ProcessSnapshot {
                status: Some(out.status),
                stdout: out.stdout,
                stderr: out.stderr,
                stdout_truncated: out.stdout_truncated,
                stderr_truncated: out.stderr_truncated,
            },
            None => bg.shared.snapshot(None),
        })
    }

    async fn wait_process(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
        timeout: Option<Duration>,
    ) -> Result<Option<ExecOutput>> {
        let ws = self.get(id)?;
        let bg = lock(&ws.background)
            .get(pid)
            .cloned()
            .ok_or_else(|| Error::process_not_found(pid))?;
        let mut rx = bg.result.clone();
        let wait = async move {
            rx.wait_for(|v| v.is_some())
                .await
                .ok()
                .and_then(|v| v.clone())
        };
        Ok(match timeout {
            Some(t) => tokio::time::timeout(t, wait).await.ok().flatten(),
            None => wait.await,
        })
    }

    async fn stop(&self, id: &WorkspaceId, pid: Option<&ProcessId>) -> Result<()> {
        let ws = self.get(id)?;
        let targets: Vec<Arc<Background>> = match pid {
            Some(p) => vec![lock(&ws.background)
                .get(p)
                .cloned()
                .ok_or_else(|| Error::process_not_found(p))?],
            None => lock(&ws.background).values().cloned().collect(),
        };
        {
            let ws = ws.clone();
            let targets: Vec<i32> = targets
                .iter()
                .filter(|b| b.result.borrow().is_none())
                .map(|b| b.pgid)
                .collect();
            let all = pid.is_none();
            blocking(move || {
                for pgid in targets {
                    procfs::kill_tree(pgid);
                }
                if all {
                    Self::kill_everything(&ws);
                }
                Ok(())
            })
            .await?;
        }
        for b in targets {
            let mut rx = b.result.clone();
            let _ =
                tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| v.is_some())).await;
        }
        Ok(())
    }

    async fn cleanup(&self, id: &WorkspaceId) -> Result<()> {
        let ws = lock(&self.inner.workspaces).remove(id);
        let this = self.clone();
        let id = id.clone();
        // Nothing running, no cgroup, a few files: cheaper done inline than
        // through the blocking pool.
        let quick = ws.as_ref().filter(|ws| {
            ws.cgroup().is_none()
                && lock(&ws.foreground).is_empty()
                && lock(&ws.background)
                    .values()
                    .all(|b| b.result.borrow().is_some())
        });
        if let Some(ws) = quick {
            if let Some(floor) = ws.scan_floor() {
                kill_pids(procfs::processes_in_dir(&ws.dir, floor));
            }
            if remove_small_flat(&ws.dir)
                .map_err(|e| NativeOrchestratorError::io("remove workspace", &ws.dir, e))?
            {
                tracing::debug!(workspace = %id, "workspace cleaned up");
                return Ok(());
            }
        }
        blocking(move || match ws {
            Some(ws) => {
                Self::kill_groups(&ws);
                this.remove_all(id.as_str(), &ws.dir, CgroupRef::Known(ws.cgroup().as_deref(), ws.scan_floor()))?;
                tracing::debug!(workspace = %id, "workspace cleaned up");
                Ok(())
            }
            None => {
                // Not ours (or already gone): remove leftovers only when no
                // live process owns them.
                match owner_of(id.as_str()) {
                    Some((pid, start)) if (pid, start) != this.inner.owner && procfs::is_alive(pid, start) => {
                        tracing::warn!(workspace = %id, owner = pid, "not cleaning a workspace owned by a live process");
                        Ok(())
                    }
                    _ => {
                        let dir = this.inner.root.join(id.as_str());
                        this.remove_all(id.as_str(), &dir, CgroupRef::Lookup)
                    }
                }
            }
        })
        .await
    }

    fn workspace_path(&self, id: &WorkspaceId) -> Option<PathBuf> {
        self.get(id).ok().map(|w| w.dir.clone())
    }

    async fn residue(&self, id: &WorkspaceId) -> Result<Vec<String>> {
        let this = self.clone();
        let id = id.clone();
        blocking(move || {
            let mut r = Vec::new();
            let dir = this.inner.root.join(id.as_str());
            if dir.exists() {
                r.push(format!("directory {}", dir.display()));
            }
            if let Some(cg) = this
                .inner
                .cgroups
                .as_ref()
                .ok()
                .and_then(|s| s.load(id.as_str()))
            {
                for d in cg.existing_dirs() {
                    r.push(format!("cgroup {}", d.display()));
                }
                for p in cg.procs() {
                    r.push(format!("process {p} in the workspace cgroup"));
                }
            }
            for p in procfs::processes_in_dir(&dir, 0) {
                r.push(format!(
                    "process {p} with its working directory in the workspace"
                ));
            }
            Ok(r)
        })
        .await
    }

    async fn reap_orphans(&self) -> Result<Vec<String>> {
        let this = self.clone();
        blocking(move || {
            let mut reaped = Vec::new();
            let root = &this.inner.root;
            let entries = std::fs::read_dir(root)
                .map_err(|e| NativeOrchestratorError::io("read", root, e))?;
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with("ws-") || WorkspaceId::new(name.clone()).is_err() {
                    continue;
                }
                let owner = owner_of(&name);
                let live = match owner {
                    Some(o) if o == this.inner.owner => true,
                    Some((pid, start)) => procfs::is_alive(pid, start),
                    None => false,
                };
                if live {
                    continue;
                }
                let dir = this.inner.root.join(&name);
                this.remove_all(&name, &dir, CgroupRef::Lookup)?;
                reaped.push(format!("native workspace {name} ({})", dir.display()));
            }
            Ok(reaped)
        })
        .await
    }
}

fn factory() -> Result<Arc<dyn Orchestrator>> {
    Ok(Arc::new(NativeOrchestrator::new(NativeConfig::default())?))
}

orchestrator_core::register_backend!(
    BACKEND_NAME,
    "host processes in a temp-dir workspace; cgroup v2/v1 or rlimit limits",
    factory
);

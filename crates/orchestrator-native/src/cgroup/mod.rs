//! Workspace cgroups behind one interface: cgroup v2 ([`v2`]) where the
//! unified hierarchy has the controllers, cgroup v1 ([`v1`]) on hybrid
//! hosts, nothing where no cgroup can be written (limits then fall back to
//! rlimits).
//!
//! Processes join the workspace cgroup in `pre_exec` by writing `0` to the
//! `cgroup.procs` files opened beforehand, so they are inside before `exec`
//! and nothing they fork escapes. The cgroup filesystem root is a
//! parameter ([`DEFAULT_ROOT`] in production), so the file formats are
//! unit-tested against fixture directories.

mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::NativeOrchestratorError;
use crate::process::signal::Pid;

/// Which cgroup version serves this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The unified hierarchy with memory, pids and cpu.
    V2,
    /// Per-controller v1 hierarchies (memory, pids, cpu, cpuacct, freezer).
    V1,
}

/// Where the cgroup filesystems are mounted on a normal host.
pub(crate) const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// CFS bandwidth period for CPU limits.
const CPU_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota written (the kernel refuses less than 1 ms).
const CPU_MIN_QUOTA_US: u64 = 1_000;

/// A cgroup hierarchy of one version: where cgroups are made.
pub(crate) trait Hierarchy: std::fmt::Debug + Send + Sync {
    /// The version this hierarchy is.
    fn version(&self) -> CgroupVersion;

    /// The cgroup at `path` (relative to the hierarchy's root), which need
    /// not exist.
    fn cgroup(&self, path: &str) -> Box<dyn Controllers>;

    /// Creates the cgroup at `path`, with its ancestors, with the
    /// controllers enabled.
    fn create(&self, path: &str) -> std::io::Result<Box<dyn Controllers>>;
}

/// One cgroup as its version lays it out: the files that hold its limits
/// and accounting, and how its processes are killed.
pub(crate) trait Controllers: std::fmt::Debug + Send + Sync {
    /// Every directory of the cgroup (one on v2, one per distinct
    /// controller mount on v1), sorted.
    fn dirs(&self) -> &[PathBuf];

    /// Settings a new workspace cgroup needs before any limit.
    fn prepare(&self) {}

    /// Whether this is a cgroup of the unified hierarchy (one directory a
    /// process can be cloned into).
    fn unified(&self) -> bool {
        false
    }

    /// Sets the memory limit with swap disabled on top of it.
    fn set_memory(&self, bytes: u64) -> Result<(), FileError>;

    /// Sets the process (and thread) limit.
    fn set_pids(&self, n: u64) -> Result<(), FileError>;

    /// Sets the CFS bandwidth: `quota_us` of CPU time per `period_us`.
    fn set_cpu_quota(&self, quota_us: u64, period_us: u64) -> Result<(), FileError>;

    /// OOM kills so far.
    fn oom_kills(&self) -> u64;

    /// Resets the peak-memory watermark where the kernel allows it,
    /// returning the handle the peak must then be read through, if any.
    fn reset_peak(&self) -> Option<File>;

    /// Peak memory (since the last reset, where resets exist).
    fn peak_memory(&self) -> Option<u64>;

    /// Total CPU time consumed.
    fn cpu_usage(&self) -> Option<Duration>;

    /// One attempt at killing `procs`, as just read from the cgroup (all
    /// of its processes when `whole`, which allows a kill of the cgroup as
    /// such); the caller waits and repeats.
    fn kill(&self, procs: &[Pid], whole: bool);
}

/// A cgroup file that could not be written.
#[derive(Debug)]
pub(crate) struct FileError {
    pub file: &'static str,
    pub source: std::io::Error,
}

/// Writes `value` to `file` in `dir`.
pub(crate) fn write(dir: &Path, file: &'static str, value: &str) -> Result<(), FileError> {
    std::fs::write(dir.join(file), value).map_err(|source| FileError { file, source })
}

/// The number after `key` in a flat-keyed file (`memory.events`,
/// `cpu.stat`, `memory.oom_control`).
pub(crate) fn read_key(file: &Path, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(file).ok()?;
    s.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

/// A file holding one number.
pub(crate) fn read_u64(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn cg_err(op: &'static str, cgroup: &str, e: impl std::fmt::Display) -> NativeOrchestratorError {
    NativeOrchestratorError::Cgroup {
        op,
        cgroup: cgroup.to_string(),
        message: e.to_string(),
    }
}

/// The cgroup setup found on this host.
#[derive(Debug, Clone)]
pub(crate) struct CgroupSupport {
    hierarchy: Arc<dyn Hierarchy>,
    parent: String,
}

impl CgroupSupport {
    /// Finds a writable cgroup setup under [`DEFAULT_ROOT`], creating
    /// `parent`. `Err` says why there is none (the caller then falls back
    /// to rlimits).
    pub fn detect(parent: &str) -> Result<Self, String> {
        Self::detect_at(Path::new(DEFAULT_ROOT), parent)
    }

    /// [`Self::detect`] with the cgroup filesystem at `root`: v2 when `root`
    /// is a cgroup2 mount, else v1 with the controllers where
    /// `/proc/self/mountinfo` has them mounted.
    pub fn detect_at(root: &Path, parent: &str) -> Result<Self, String> {
        if parent.is_empty()
            || parent
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(format!("invalid cgroup parent {parent:?}"));
        }
        let hierarchy: Arc<dyn Hierarchy> = if v2::is_unified(root) {
            Arc::new(v2::V2::detect(root, parent)?)
        } else {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
            Arc::new(v1::V1::detect(&mountinfo, parent)?)
        };
        Ok(Self {
            hierarchy,
            parent: parent.to_string(),
        })
    }

    /// The version in use.
    pub fn version(&self) -> CgroupVersion {
        self.hierarchy.version()
    }

    /// The relative cgroup path of a workspace.
    fn path_of(&self, name: &str) -> String {
        format!("{}/{}", self.parent, name)
    }

    /// Creates the cgroup of a workspace.
    pub fn create(&self, name: &str) -> Result<WorkspaceCgroup, NativeOrchestratorError> {
        let path = self.path_of(name);
        let controllers = self
            .hierarchy
            .create(&path)
            .map_err(|e| cg_err("create", &path, e))?;
        controllers.prepare();
        Ok(WorkspaceCgroup { controllers, path })
    }

    /// Loads an existing workspace cgroup (for orphan reaping), if it exists.
    pub fn load(&self, name: &str) -> Option<WorkspaceCgroup> {
        let path = self.path_of(name);
        let controllers = self.hierarchy.cgroup(&path);
        if !controllers.dirs().iter().any(|d| d.is_dir()) {
            return None;
        }
        Some(WorkspaceCgroup { controllers, path })
    }
}

/// Creates `parent` in `hierarchy` and checks that every directory exists
/// and takes processes. Returns the directories.
pub(crate) fn prepare_parent(
    hierarchy: &dyn Hierarchy,
    parent: &str,
) -> Result<Vec<PathBuf>, String> {
    let cg = hierarchy
        .create(parent)
        .map_err(|e| format!("cannot create cgroup {parent}: {e}"))?;
    let dirs = cg.dirs().to_vec();
    if dirs.is_empty() || dirs.iter().any(|d| !d.is_dir()) {
        return Err(format!(
            "cgroup {parent} was not created in every controller"
        ));
    }
    // Writability check: we must be able to move processes in.
    for d in &dirs {
        std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("cgroup.procs"))
            .map_err(|e| format!("cgroup {} not writable: {e}", d.display()))?;
    }
    Ok(dirs)
}

/// Sorted, deduplicated directories of a cgroup.
pub(crate) fn sorted(mut dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    dirs.sort();
    dirs.dedup();
    dirs
}

/// A workspace's cgroup (one directory on v2, one per controller on v1).
#[derive(Debug)]
pub(crate) struct WorkspaceCgroup {
    controllers: Box<dyn Controllers>,
    path: String,
}

/// A cgroup2 mount this process may make cgroups in (`/sys/fs/cgroup` on
/// a v2 host, `/sys/fs/cgroup/unified` on a hybrid one), for tests.
#[cfg(test)]
pub(crate) fn writable_unified_mount() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| v2::is_unified(p) && crate::isolation::is_root())
}

impl WorkspaceCgroup {
    /// A v2 cgroup at `dir` (which exists), whatever its controllers.
    #[cfg(test)]
    pub(crate) fn unified_at(dir: PathBuf) -> Self {
        Self {
            path: dir.display().to_string(),
            controllers: v2::cgroup_at(dir),
        }
    }

    fn dirs(&self) -> &[PathBuf] {
        self.controllers.dirs()
    }

    /// The directories (for residue reports).
    pub fn existing_dirs(&self) -> Vec<PathBuf> {
        self.dirs().iter().filter(|d| d.is_dir()).cloned().collect()
    }

    /// The cgroup's directory, opened for clone3's `CLONE_INTO_CGROUP`,
    /// when it is a cgroup v2 cgroup (v1 has no such thing).
    pub fn clone_target(&self) -> Option<OwnedFd> {
        if !self.controllers.unified() {
            return None;
        }
        let dir = self.dirs().first()?;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .ok()
            .map(OwnedFd::from)
    }

    /// Opens every `cgroup.procs` for writing, for `pre_exec` to join.
    pub fn attach_fds(&self) -> Result<Vec<OwnedFd>, NativeOrchestratorError> {
        self.dirs()
            .iter()
            .map(|d| {
                let p = d.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map(|f: File| OwnedFd::from(f))
                    .map_err(|e| NativeOrchestratorError::io("open", p, e))
            })
            .collect()
    }

    fn file_err(&self, e: FileError) -> NativeOrchestratorError {
        cg_err(e.file, &self.path, e.source)
    }

    /// Sets the memory limit with swap disabled on top of it.
    pub fn set_memory(&self, bytes: u64) -> Result<(), NativeOrchestratorError> {
        self.controllers
            .set_memory(bytes)
            .map_err(|e| self.file_err(e))
    }

    /// Sets the process limit.
    pub fn set_pids(&self, n: u64) -> Result<(), NativeOrchestratorError> {
        self.controllers.set_pids(n).map_err(|e| self.file_err(e))
    }

    /// Sets the CPU bandwidth in cores (quota over a 100 ms period).
    pub fn set_cpus(&self, cores: f64) -> Result<(), NativeOrchestratorError> {
        let quota = ((cores * CPU_PERIOD_US as f64).round() as u64).max(CPU_MIN_QUOTA_US);
        self.controllers
            .set_cpu_quota(quota, CPU_PERIOD_US)
            .map_err(|e| self.file_err(e))
    }

    /// OOM kills so far in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        self.controllers.oom_kills()
    }

    /// Resets the peak-memory watermark where the kernel allows it. On v2
    /// (Linux 6.12+) the reset holds for the file handle that made it, so
    /// the handle is returned and the peak must be read through it; on older
    /// v2 kernels the peak stays the cgroup's lifetime peak.
    pub fn reset_peak(&self) -> Option<File> {
        self.controllers.reset_peak()
    }

    /// Peak memory since the last reset (through `handle` when the reset
    /// made one).
    pub fn peak_memory(&self, handle: Option<&mut File>) -> Option<u64> {
        if let Some(f) = handle {
            use std::io::{Read, Seek};
            let mut s = String::new();
            f.rewind().ok()?;
            f.read_to_string(&mut s).ok()?;
            return s.trim().parse().ok();
        }
        self.controllers.peak_memory()
    }

    /// Total CPU time consumed in this cgroup.
    pub fn cpu_usage(&self) -> Option<Duration> {
        self.controllers.cpu_usage()
    }

    /// Live processes in the cgroup (the union of every directory's
    /// `cgroup.procs`).
    pub fn procs(&self) -> Vec<Pid> {
        let mut v: Vec<Pid> = self
            .dirs()
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse::<i32>().ok())
                    .filter_map(|raw| {
                        let pid = Pid::new(raw);
                        if pid.is_none() {
                            tracing::warn!(cgroup = %self.path, raw, "ignoring a non-process pid in cgroup.procs");
                        }
                        pid
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Kills every process in the cgroup (see [`Controllers::kill`]).
    /// Waits (bounded) until the cgroup is empty.
    pub fn kill_all(&self) {
        self.kill_all_but(None)
    }

    /// Kills every process in the cgroup but `spared` (a sandbox init that
    /// sits there and must go on serving). Waits (bounded) until no other
    /// is left.
    pub fn kill_all_but(&self, spared: Option<Pid>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut procs = self.procs();
            procs.retain(|p| Some(*p) != spared);
            if procs.is_empty() {
                return;
            }
            self.controllers.kill(&procs, spared.is_none());
            if Instant::now() > deadline {
                tracing::warn!(cgroup = %self.path, ?procs, "processes survive SIGKILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills everything and removes the cgroup directories. An empty
    /// cgroup (the usual case: its processes were killed, or its sandbox
    /// ended) is removed at once; a busy one is killed and tried again.
    pub fn remove(&self) -> Result<(), NativeOrchestratorError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut busy = None;
            for d in self.dirs() {
                match std::fs::remove_dir(d) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        busy = Some((d.clone(), e));
                    }
                    _ => {}
                }
            }
            match busy {
                None => return Ok(()),
                Some((d, e)) if Instant::now() > deadline => {
                    return Err(NativeOrchestratorError::io("remove cgroup", d, e))
                }
                Some(_) => {
                    self.kill_all();
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// Moves the calling process into the cgroups whose `cgroup.procs` fds
/// are given. Runs in a child between fork and exec (and in a sandbox
/// init): only async-signal-safe calls.
pub(crate) fn join_in_child(fds: &[i32]) -> std::io::Result<()> {
    for fd in fds {
        // SAFETY: write(2) of a 1-byte static buffer to an fd we own.
        let n = unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) };
        if n != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raw fds of owned fds (for the pre_exec closure).
pub(crate) fn raw(fds: &[OwnedFd]) -> Vec<i32> {
    fds.iter().map(|f| f.as_raw_fd()).collect()
}

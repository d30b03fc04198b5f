//! Workspace cgroups: cgroup v2 where the unified hierarchy has the
//! controllers, cgroup v1 (through cgroups-rs) on hybrid hosts, nothing where
//! no cgroup can be written (limits then fall back to rlimits).
//!
//! Processes join the workspace cgroup in `pre_exec` by writing `0` to the
//! `cgroup.procs` files opened beforehand, so they are inside before `exec`
//! and nothing they fork escapes.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::hierarchies;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::MaxValue;
use cgroups_rs::fs::{Cgroup, Hierarchy};
use cgroups_rs::CgroupPid;

use crate::error::NativeOrchestratorError;

/// Which cgroup version serves this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The unified hierarchy with memory, pids and cpu.
    V2,
    /// Per-controller v1 hierarchies (memory, pids, cpu, cpuacct, freezer).
    V1,
}

const V1_CONTROLLERS: [&str; 5] = ["memory", "pids", "cpu", "cpuacct", "freezer"];
const V2_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// The cgroup setup found on this host.
#[derive(Debug, Clone)]
pub(crate) struct CgroupSupport {
    pub version: CgroupVersion,
    pub parent: String,
    /// cgroup.kill exists (v2, Linux 5.14+).
    pub has_kill: bool,
    /// v1 memory.memsw.* exists (swap accounting).
    pub has_memsw: bool,
}

fn hierarchy(version: CgroupVersion) -> Box<dyn Hierarchy> {
    match version {
        CgroupVersion::V2 => Box::new(hierarchies::V2::new()),
        CgroupVersion::V1 => Box::new(hierarchies::V1::new()),
    }
}

fn controllers(version: CgroupVersion) -> Vec<String> {
    match version {
        CgroupVersion::V2 => V2_CONTROLLERS.iter().map(|s| s.to_string()).collect(),
        CgroupVersion::V1 => V1_CONTROLLERS.iter().map(|s| s.to_string()).collect(),
    }
}

fn cg_err(op: &'static str, cgroup: &str, e: impl std::fmt::Display) -> NativeOrchestratorError {
    NativeOrchestratorError::Cgroup {
        op,
        cgroup: cgroup.to_string(),
        message: e.to_string(),
    }
}

impl CgroupSupport {
    /// Finds a writable cgroup setup, creating `parent`. `Err` says why
    /// there is none (the caller then falls back to rlimits).
    pub fn detect(parent: &str) -> Result<Self, String> {
        if parent.is_empty()
            || parent
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(format!("invalid cgroup parent {parent:?}"));
        }
        let version = if hierarchies::is_cgroup2_unified_mode() {
            let avail = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .map_err(|e| format!("cannot read cgroup.controllers: {e}"))?;
            for c in V2_CONTROLLERS {
                if !avail.split_whitespace().any(|a| a == c) {
                    return Err(format!("cgroup v2 controller {c} not available"));
                }
            }
            CgroupVersion::V2
        } else {
            let v1 = hierarchies::V1::new();
            for c in V1_CONTROLLERS {
                let known = v1.subsystems().iter().any(|s| s.controller_name() == c);
                if !known {
                    return Err(format!("cgroup v1 controller {c} is not mounted"));
                }
            }
            CgroupVersion::V1
        };
        let cg = Cgroup::new_with_specified_controllers(
            hierarchy(version),
            parent,
            Some(controllers(version)),
        )
        .map_err(|e| format!("cannot create cgroup {parent}: {e}"))?;
        let dirs = dirs_of(&cg);
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
        let has_kill = version == CgroupVersion::V2 && dirs[0].join("cgroup.kill").exists();
        let has_memsw = version == CgroupVersion::V1
            && dirs
                .iter()
                .any(|d| d.join("memory.memsw.limit_in_bytes").exists());
        Ok(Self {
            version,
            parent: parent.to_string(),
            has_kill,
            has_memsw,
        })
    }

    /// The relative cgroup path of a workspace.
    pub fn path_of(&self, name: &str) -> String {
        format!("{}/{}", self.parent, name)
    }

    /// Creates the cgroup of a workspace.
    pub fn create(&self, name: &str) -> Result<WorkspaceCgroup, NativeOrchestratorError> {
        let path = self.path_of(name);
        let cg = Cgroup::new_with_specified_controllers(
            hierarchy(self.version),
            &path,
            Some(controllers(self.version)),
        )
        .map_err(|e| cg_err("create", &path, e))?;
        let wc = WorkspaceCgroup {
            dirs: dirs_of(&cg),
            cg,
            path,
            support: self.clone(),
        };
        if self.version == CgroupVersion::V1 {
            // OOM kills must happen (not a paused group waiting forever).
            if let Some(d) = wc.dir_of("memory") {
                let _ = std::fs::write(d.join("memory.oom_control"), "0");
            }
        }
        Ok(wc)
    }

    /// Loads an existing workspace cgroup (for orphan reaping), if it exists.
    pub fn load(&self, name: &str) -> Option<WorkspaceCgroup> {
        let path = self.path_of(name);
        let cg = Cgroup::load_with_specified_controllers(
            hierarchy(self.version),
            &path,
            controllers(self.version),
        );
        let dirs = dirs_of(&cg);
        if !dirs.iter().any(|d| d.is_dir()) {
            return None;
        }
        Some(WorkspaceCgroup {
            dirs,
            cg,
            path,
            support: self.clone(),
        })
    }
}

fn dirs_of(cg: &Cgroup) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = cg
        .subsystems()
        .iter()
        .map(|s| s.to_controller().path().to_path_buf())
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// A workspace's cgroup (one directory on v2, one per controller on v1).
pub(crate) struct WorkspaceCgroup {
    cg: Cgroup,
    dirs: Vec<PathBuf>,
    path: String,
    support: CgroupSupport,
}

impl std::fmt::Debug for WorkspaceCgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceCgroup")
            .field("path", &self.path)
            .field("dirs", &self.dirs)
            .finish()
    }
}

fn read_key(file: &Path, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(file).ok()?;
    s.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

fn read_u64(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

impl WorkspaceCgroup {
    /// The directory of a controller (v1) or the one directory (v2).
    fn dir_of(&self, controller: &str) -> Option<&PathBuf> {
        match self.support.version {
            CgroupVersion::V2 => self.dirs.first(),
            CgroupVersion::V1 => self.dirs.iter().find(|d| {
                d.components().any(|c| {
                    c.as_os_str()
                        .to_str()
                        .is_some_and(|s| s.split(',').any(|p| p == controller))
                })
            }),
        }
    }

    /// The directories (for residue reports).
    pub fn existing_dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().filter(|d| d.is_dir()).cloned().collect()
    }

    /// Opens every `cgroup.procs` for writing, for `pre_exec` to join.
    pub fn attach_fds(&self) -> Result<Vec<OwnedFd>, NativeOrchestratorError> {
        self.dirs
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

    /// Sets the memory limit with swap disabled on top of it.
    pub fn set_memory(&self, bytes: u64) -> Result<(), NativeOrchestratorError> {
        let mem: &MemController = self
            .cg
            .controller_of()
            .ok_or_else(|| cg_err("memory", &self.path, "no memory controller"))?;
        let v = bytes as i64;
        match self.support.version {
            CgroupVersion::V2 => {
                mem.set_limit(v)
                    .map_err(|e| cg_err("memory.max", &self.path, e))?;
                if let Some(d) = self.dir_of("memory") {
                    let swap = d.join("memory.swap.max");
                    if swap.exists() {
                        std::fs::write(&swap, "0")
                            .map_err(|e| NativeOrchestratorError::io("write", swap, e))?;
                    }
                }
            }
            CgroupVersion::V1 => {
                // memsw must stay >= limit: order the writes by direction.
                if self.support.has_memsw {
                    if mem.set_limit(v).is_ok() {
                        mem.set_memswap_limit(v)
                            .map_err(|e| cg_err("memory.memsw.limit_in_bytes", &self.path, e))?;
                    } else {
                        mem.set_memswap_limit(v)
                            .map_err(|e| cg_err("memory.memsw.limit_in_bytes", &self.path, e))?;
                        mem.set_limit(v)
                            .map_err(|e| cg_err("memory.limit_in_bytes", &self.path, e))?;
                    }
                } else {
                    mem.set_limit(v)
                        .map_err(|e| cg_err("memory.limit_in_bytes", &self.path, e))?;
                    let _ = mem.set_swappiness(0);
                }
            }
        }
        Ok(())
    }

    /// Sets pids.max.
    pub fn set_pids(&self, n: u64) -> Result<(), NativeOrchestratorError> {
        let pids: &PidController = self
            .cg
            .controller_of()
            .ok_or_else(|| cg_err("pids", &self.path, "no pids controller"))?;
        pids.set_pid_max(MaxValue::Value(n as i64))
            .map_err(|e| cg_err("pids.max", &self.path, e))
    }

    /// Sets the CPU bandwidth in cores (quota over a 100 ms period).
    pub fn set_cpus(&self, cores: f64) -> Result<(), NativeOrchestratorError> {
        let cpu: &CpuController = self
            .cg
            .controller_of()
            .ok_or_else(|| cg_err("cpu", &self.path, "no cpu controller"))?;
        let period: u64 = 100_000;
        let quota = ((cores * period as f64).round() as i64).max(1_000);
        cpu.set_cfs_quota_and_period(Some(quota), Some(period))
            .map_err(|e| cg_err("cpu quota", &self.path, e))
    }

    /// OOM kills so far in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let Some(d) = self.dir_of("memory") else {
            return 0;
        };
        match self.support.version {
            CgroupVersion::V2 => read_key(&d.join("memory.events"), "oom_kill").unwrap_or(0),
            CgroupVersion::V1 => read_key(&d.join("memory.oom_control"), "oom_kill").unwrap_or(0),
        }
    }

    /// Resets the peak-memory watermark where the kernel allows it. On v2
    /// (Linux 6.12+) the reset holds for the file handle that made it, so
    /// the handle is returned and the peak must be read through it; on older
    /// v2 kernels the peak stays the cgroup's lifetime peak.
    pub fn reset_peak(&self) -> Option<File> {
        let d = self.dir_of("memory")?;
        match self.support.version {
            CgroupVersion::V2 => {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(d.join("memory.peak"))
                    .ok()?;
                f.write_all(b"reset\n").ok()?;
                Some(f)
            }
            CgroupVersion::V1 => {
                let _ = std::fs::write(d.join("memory.max_usage_in_bytes"), "0");
                None
            }
        }
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
        let d = self.dir_of("memory")?;
        match self.support.version {
            CgroupVersion::V2 => read_u64(&d.join("memory.peak")),
            CgroupVersion::V1 => read_u64(&d.join("memory.max_usage_in_bytes")),
        }
    }

    /// Total CPU time consumed in this cgroup.
    pub fn cpu_usage(&self) -> Option<Duration> {
        match self.support.version {
            CgroupVersion::V2 => read_key(&self.dir_of("cpu")?.join("cpu.stat"), "usage_usec")
                .map(Duration::from_micros),
            CgroupVersion::V1 => {
                read_u64(&self.dir_of("cpuacct")?.join("cpuacct.usage")).map(Duration::from_nanos)
            }
        }
    }

    /// Live processes in the cgroup.
    pub fn procs(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .cg
            .procs()
            .into_iter()
            .map(|p: CgroupPid| p.pid as i32)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Kills every process in the cgroup: cgroup.kill on v2, else freeze,
    /// SIGKILL each, thaw. Waits (bounded) until the cgroup is empty.
    pub fn kill_all(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs = self.procs();
            if procs.is_empty() {
                return;
            }
            if self.support.has_kill && self.cg.kill().is_ok() {
                // cgroup.kill is asynchronous; fall through to wait.
            } else {
                let freezer: Option<&FreezerController> = self.cg.controller_of();
                if let Some(f) = freezer {
                    let _ = f.freeze();
                }
                for pid in &procs {
                    // SAFETY: kill(2) on a pid; no memory is touched.
                    unsafe {
                        libc::kill(*pid, libc::SIGKILL);
                    }
                }
                if let Some(f) = freezer {
                    let _ = f.thaw();
                }
            }
            if Instant::now() > deadline {
                tracing::warn!(cgroup = %self.path, ?procs, "processes survive SIGKILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills everything and removes the cgroup directories.
    pub fn remove(&self) -> Result<(), NativeOrchestratorError> {
        self.kill_all();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut busy = None;
            for d in &self.dirs {
                if d.is_dir() {
                    if let Err(e) = std::fs::remove_dir(d) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            busy = Some((d.clone(), e));
                        }
                    }
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

/// Joins the cgroups whose `cgroup.procs` fds are given. Runs in the child
/// between fork and exec: only async-signal-safe calls.
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

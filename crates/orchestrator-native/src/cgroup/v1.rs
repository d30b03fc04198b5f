//! cgroup v1: one hierarchy per controller (memory, pids, cpu, cpuacct,
//! freezer) where `/proc/self/mountinfo` has them, limits in
//! memory.limit_in_bytes / memory.memsw.limit_in_bytes / pids.max /
//! cpu.cfs_quota_us, accounting in memory.oom_control /
//! memory.max_usage_in_bytes / cpuacct.usage; kill by freezing, killing
//! each process, thawing.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{prepare_parent, read_key, read_u64, sorted, write, CgroupVersion, Controllers};
use super::{FileError, Hierarchy, Pid};
use crate::process::signal;

/// The controllers a workspace cgroup needs, in the order of [`Mounts`].
const CONTROLLERS: [&str; 5] = ["memory", "pids", "cpu", "cpuacct", "freezer"];
const MEMORY: usize = 0;
const PIDS: usize = 1;
const CPU: usize = 2;
const CPUACCT: usize = 3;
const FREEZER: usize = 4;

/// Where each of [`CONTROLLERS`] is mounted.
type Mounts = [PathBuf; 5];

/// The mount point of each controller in a mountinfo text (proc(5)): the
/// first `cgroup` mount whose super options name it. `Err` names a
/// controller that is not mounted.
fn mounts(mountinfo: &str) -> Result<Mounts, String> {
    let cgroup_mounts: Vec<(PathBuf, Vec<&str>)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let point = mount.split(' ').nth(4)?;
            let mut fs = fs.trim().split(' ');
            // The type may carry a subtype (`cgroup.<subtype>`).
            let fs_type = fs.next()?.split('.').next()?;
            let super_opts = fs.nth(1)?;
            (fs_type == "cgroup").then(|| (PathBuf::from(point), super_opts.split(',').collect()))
        })
        .collect();
    let find = |c: &str| {
        cgroup_mounts
            .iter()
            .find(|(_, opts)| opts.contains(&c))
            .map(|(point, _)| point.clone())
            .ok_or_else(|| format!("cgroup v1 controller {c} is not mounted"))
    };
    Ok([
        find(CONTROLLERS[MEMORY])?,
        find(CONTROLLERS[PIDS])?,
        find(CONTROLLERS[CPU])?,
        find(CONTROLLERS[CPUACCT])?,
        find(CONTROLLERS[FREEZER])?,
    ])
}

/// The v1 controller hierarchies.
#[derive(Debug)]
pub(super) struct V1 {
    mounts: Mounts,
    /// memory.memsw.* exists (swap accounting).
    has_memsw: bool,
}

impl V1 {
    /// Finds the controllers in `mountinfo` and creates `parent`.
    pub(super) fn detect(mountinfo: &str, parent: &str) -> Result<Self, String> {
        let mut v1 = Self {
            mounts: mounts(mountinfo)?,
            has_memsw: false,
        };
        let dirs = prepare_parent(&v1, parent)?;
        v1.has_memsw = dirs
            .iter()
            .any(|d| d.join("memory.memsw.limit_in_bytes").exists());
        Ok(v1)
    }
}

impl Hierarchy for V1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn cgroup(&self, path: &str) -> Box<dyn Controllers> {
        let each = self.mounts.clone().map(|m| m.join(path));
        Box::new(Cgroup {
            dirs: sorted(each.to_vec()),
            each,
            has_memsw: self.has_memsw,
        })
    }

    fn create(&self, path: &str) -> std::io::Result<Box<dyn Controllers>> {
        let cg = self.cgroup(path);
        for d in cg.dirs() {
            std::fs::create_dir_all(d)?;
        }
        Ok(cg)
    }
}

/// One v1 cgroup: a directory in each controller's hierarchy.
#[derive(Debug)]
struct Cgroup {
    /// Each controller's directory, in the order of [`CONTROLLERS`]
    /// (controllers mounted together share one).
    each: Mounts,
    dirs: Vec<PathBuf>,
    has_memsw: bool,
}

impl Cgroup {
    fn dir(&self, controller: usize) -> &Path {
        &self.each[controller]
    }
}

impl Controllers for Cgroup {
    fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// OOM kills must happen (not a paused group waiting forever).
    fn prepare(&self) {
        let _ = write(self.dir(MEMORY), "memory.oom_control", "0");
    }

    fn set_memory(&self, bytes: u64) -> Result<(), FileError> {
        let mem = self.dir(MEMORY);
        let v = bytes.to_string();
        if self.has_memsw {
            // memsw must stay >= limit: order the writes by direction.
            if write(mem, "memory.limit_in_bytes", &v).is_ok() {
                write(mem, "memory.memsw.limit_in_bytes", &v)
            } else {
                write(mem, "memory.memsw.limit_in_bytes", &v)?;
                write(mem, "memory.limit_in_bytes", &v)
            }
        } else {
            write(mem, "memory.limit_in_bytes", &v)?;
            let _ = write(mem, "memory.swappiness", "0");
            Ok(())
        }
    }

    fn set_pids(&self, n: u64) -> Result<(), FileError> {
        write(self.dir(PIDS), "pids.max", &n.to_string())
    }

    fn set_cpu_quota(&self, quota_us: u64, period_us: u64) -> Result<(), FileError> {
        write(self.dir(CPU), "cpu.cfs_quota_us", &quota_us.to_string())?;
        write(self.dir(CPU), "cpu.cfs_period_us", &period_us.to_string())
    }

    fn oom_kills(&self) -> u64 {
        read_key(&self.dir(MEMORY).join("memory.oom_control"), "oom_kill").unwrap_or(0)
    }

    /// The watermark resets through any handle: nothing to keep.
    fn reset_peak(&self) -> Option<File> {
        let _ = write(self.dir(MEMORY), "memory.max_usage_in_bytes", "0");
        None
    }

    fn peak_memory(&self) -> Option<u64> {
        read_u64(&self.dir(MEMORY).join("memory.max_usage_in_bytes"))
    }

    fn cpu_usage(&self) -> Option<Duration> {
        read_u64(&self.dir(CPUACCT).join("cpuacct.usage")).map(Duration::from_nanos)
    }

    /// Frozen, the processes cannot fork while they are killed one by one.
    fn kill(&self, procs: &[Pid], _whole: bool) {
        let freezer = self.dir(FREEZER);
        let _ = write(freezer, "freezer.state", "FROZEN");
        signal::kill_pids(procs.iter().copied());
        let _ = write(freezer, "freezer.state", "THAWED");
    }
}

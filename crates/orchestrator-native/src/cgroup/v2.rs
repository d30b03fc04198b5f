//! cgroup v2: one directory per cgroup in the unified hierarchy, limits in
//! memory.max / memory.swap.max / pids.max / cpu.max, accounting in
//! memory.events / memory.peak / cpu.stat, `cgroup.kill` to end the tree.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{prepare_parent, read_key, read_u64, write, CgroupVersion, Controllers, FileError};
use super::{Hierarchy, Pid};
use crate::process::signal;

/// The controllers a workspace cgroup needs.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Is `root` a cgroup2 mount (the unified hierarchy)?
pub(super) fn is_unified(root: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(root.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes only into the struct we pass and reads the
    // NUL-terminated path we own.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type == libc::CGROUP2_SUPER_MAGIC
    }
}

/// The unified hierarchy mounted at `root`.
#[derive(Debug)]
pub(super) struct V2 {
    root: PathBuf,
    /// `cgroup.kill` exists (Linux 5.14+).
    has_kill: bool,
}

impl V2 {
    /// Checks that `root` offers the controllers and creates `parent`.
    pub(super) fn detect(root: &Path, parent: &str) -> Result<Self, String> {
        let avail = std::fs::read_to_string(root.join("cgroup.controllers"))
            .map_err(|e| format!("cannot read cgroup.controllers: {e}"))?;
        for c in CONTROLLERS {
            if !avail.split_whitespace().any(|a| a == c) {
                return Err(format!("cgroup v2 controller {c} not available"));
            }
        }
        let mut v2 = Self {
            root: root.to_path_buf(),
            has_kill: false,
        };
        let dirs = prepare_parent(&v2, parent)?;
        v2.has_kill = dirs[0].join("cgroup.kill").exists();
        Ok(v2)
    }
}

/// Enables the controllers for the children of `dir`. One write per
/// controller, failures ignored: one the kernel refuses must not keep the
/// others off (the limits that need it then fail when written).
fn enable_controllers(dir: &Path) {
    for c in CONTROLLERS {
        let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
    }
}

impl Hierarchy for V2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn cgroup(&self, path: &str) -> Box<dyn Controllers> {
        Box::new(Cgroup {
            dirs: [self.root.join(path)],
            has_kill: self.has_kill,
        })
    }

    fn create(&self, path: &str) -> std::io::Result<Box<dyn Controllers>> {
        let mut dir = self.root.clone();
        enable_controllers(&dir);
        let mut parts = path.split('/').peekable();
        while let Some(part) = parts.next() {
            dir.push(part);
            std::fs::create_dir_all(&dir)?;
            if parts.peek().is_some() {
                enable_controllers(&dir);
            }
        }
        Ok(self.cgroup(path))
    }
}

/// The v2 cgroup at `dir`, for tests on a cgroup2 mount without the
/// controllers a workspace needs (the hybrid host's `unified`).
#[cfg(test)]
pub(super) fn cgroup_at(dir: PathBuf) -> Box<dyn Controllers> {
    Box::new(Cgroup {
        dirs: [dir],
        has_kill: false,
    })
}

/// One v2 cgroup.
#[derive(Debug)]
struct Cgroup {
    dirs: [PathBuf; 1],
    has_kill: bool,
}

impl Cgroup {
    fn dir(&self) -> &Path {
        &self.dirs[0]
    }
}

impl Controllers for Cgroup {
    fn unified(&self) -> bool {
        true
    }

    fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn set_memory(&self, bytes: u64) -> Result<(), FileError> {
        write(self.dir(), "memory.max", &bytes.to_string())?;
        // Without swap accounting (no memory.swap.max) there is no swap to
        // turn off.
        if self.dir().join("memory.swap.max").exists() {
            write(self.dir(), "memory.swap.max", "0")?;
        }
        Ok(())
    }

    fn set_pids(&self, n: u64) -> Result<(), FileError> {
        write(self.dir(), "pids.max", &n.to_string())
    }

    fn set_cpu_quota(&self, quota_us: u64, period_us: u64) -> Result<(), FileError> {
        write(self.dir(), "cpu.max", &format!("{quota_us} {period_us}"))
    }

    fn oom_kills(&self) -> u64 {
        read_key(&self.dir().join("memory.events"), "oom_kill").unwrap_or(0)
    }

    fn reset_peak(&self) -> Option<File> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir().join("memory.peak"))
            .ok()?;
        f.write_all(b"reset\n").ok()?;
        Some(f)
    }

    fn peak_memory(&self) -> Option<u64> {
        read_u64(&self.dir().join("memory.peak"))
    }

    fn cpu_usage(&self) -> Option<Duration> {
        read_key(&self.dir().join("cpu.stat"), "usage_usec").map(Duration::from_micros)
    }

    /// `cgroup.kill` where the kernel has it (asynchronous: the caller
    /// waits), else SIGKILL to each process.
    fn kill(&self, procs: &[Pid], whole: bool) {
        if whole && self.has_kill && write(self.dir(), "cgroup.kill", "1").is_ok() {
            return;
        }
        signal::kill_pids(procs.iter().copied());
    }
}

//! The native backend's configuration and its default workspace root.

use std::path::{Path, PathBuf};

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

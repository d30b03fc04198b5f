//! The native backend's configuration: the workspace root, limits, and how
//! workspaces are isolated (mode, network, the sandbox's view and ids).

use std::path::{Path, PathBuf};

use orchestrator_core::{IsolationMode, NetworkMode};

/// Host directories bound read-only at the same path in an isolated
/// workspace (merged-/usr links are recreated as links; missing ones are
/// skipped).
pub const DEFAULT_SYSTEM_BINDS: &[&str] = &["/usr", "/bin", "/lib", "/lib64", "/sbin"];

/// Entries of the host's `/etc` an isolated workspace sees (read-only;
/// missing ones are skipped). `passwd`, `group`, `hostname` and `hosts` are
/// generated; `resolv.conf` (and the host's `hosts`) are added with host
/// networking.
pub const DEFAULT_ETC: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "ca-certificates",
    "nsswitch.conf",
    "localtime",
    "timezone",
    "mime.types",
];

/// The first host uid (and gid) of the default range sandbox users map to
/// when the service runs as root: far above the ids distributions hand out
/// to users and to `/etc/subuid` ranges (which start at 100000).
pub const DEFAULT_SANDBOX_ID_FIRST: u32 = 0x7000_0000;
/// The size of the default range.
pub const DEFAULT_SANDBOX_ID_COUNT: u32 = 65_536;

/// A range of host ids: `first .. first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// The first id.
    pub first: u32,
    /// How many (at least 1).
    pub count: u32,
}

impl Default for IdRange {
    fn default() -> Self {
        Self {
            first: DEFAULT_SANDBOX_ID_FIRST,
            count: DEFAULT_SANDBOX_ID_COUNT,
        }
    }
}

/// Configuration of the native backend.
#[derive(Debug, Clone)]
pub struct NativeConfig {
    /// Where workspace directories are made. Default: `$RUNBOX_WORKSPACE_ROOT`,
    /// else [`default_root`] (a roomy `/dev/shm` tmpfs, else the temp dir).
    pub workspace_root: PathBuf,
    /// Strict limits: a limit that cannot be enforced is an error for every
    /// workspace (as if each `ResourceLimits` had `strict` set). Strict
    /// mode also refuses to fall back to no isolation under `auto`.
    pub strict: bool,
    /// cgroup under which workspace cgroups are made (relative to each
    /// hierarchy's root). Default `runbox`.
    pub cgroup_parent: String,
    /// Use cgroups when writable (default). `false` forces the rlimit
    /// fallback, as on hosts without writable cgroups.
    pub use_cgroups: bool,
    /// How workspaces are isolated: `auto` (default: full where this host
    /// allows it, else none, said so in the report), `full` (or an error
    /// before anything runs) or `none` (host processes).
    pub isolation: IsolationMode,
    /// The network of isolated workspaces: `none` (default: loopback of
    /// their own) or `host`.
    pub network: NetworkMode,
    /// Host directories bound read-only in isolated workspaces
    /// ([`DEFAULT_SYSTEM_BINDS`]).
    pub system_binds: Vec<PathBuf>,
    /// Entries of `/etc` isolated workspaces see ([`DEFAULT_ETC`]).
    pub etc: Vec<String>,
    /// Host ids sandbox users map to when the service runs as root (each
    /// workspace draws one); as non-root the caller's own id is mapped.
    pub sandbox_ids: IdRange,
    /// Size of an isolated workspace's private `/tmp` (and `/dev/shm`).
    /// Default 256 MiB.
    pub tmp_size_bytes: u64,
    /// Inodes of that `/tmp`. Default 65536.
    pub tmp_inodes: u64,
    /// Isolated workspaces kept ready, their sandbox started (at most
    /// [`crate::MAX_WARM_POOL`]). Default 0: off. A workspace with mounts
    /// always gets a fresh sandbox.
    pub warm_pool: usize,
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
            isolation: IsolationMode::Auto,
            network: NetworkMode::None,
            system_binds: DEFAULT_SYSTEM_BINDS.iter().map(PathBuf::from).collect(),
            etc: DEFAULT_ETC.iter().map(|s| s.to_string()).collect(),
            sandbox_ids: IdRange::default(),
            tmp_size_bytes: 256 << 20,
            tmp_inodes: 65_536,
            warm_pool: 0,
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

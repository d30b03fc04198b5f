//! What a run may leave behind: processes (children, in a workspace, in a
//! workspace cgroup), workspace directories, cgroups, namespaces, mounts;
//! and this process's fds and memory.

use std::path::{Path, PathBuf};

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A `kB` field of `/proc/self/status` (`VmRSS:`, `VmHWM:`).
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident set size of this process.
pub fn rss_bytes() -> u64 {
    status_kib("VmRSS:") * 1024
}

/// Bytes as MiB, for the summary.
pub fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// Everything this run may have left behind, described.
pub fn leaks(root: &Path, id_prefix: &str) -> Vec<String> {
    let me = std::process::id();
    let mut out = Vec::new();
    let cg_marker = format!("/{id_prefix}");
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let p = e.path();
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            let Some((comm, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let comm = comm.split_once('(').map(|x| x.1).unwrap_or("?");
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or("?");
            let ppid: u32 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if ppid == me {
                out.push(format!("child process {pid} ({comm}, state {state})"));
                continue;
            }
            if let Ok(cwd) = std::fs::read_link(p.join("cwd")) {
                if cwd.starts_with(root) {
                    out.push(format!("process {pid} ({comm}) in {}", cwd.display()));
                    continue;
                }
            }
            let cgroups = std::fs::read_to_string(p.join("cgroup")).unwrap_or_default();
            if cgroups.contains(&cg_marker) {
                out.push(format!(
                    "process {pid} ({comm}) in a workspace cgroup of this run"
                ));
            }
        }
    }
    match std::fs::read_dir(root) {
        Ok(dir) => {
            for e in dir.flatten() {
                out.push(format!("workspace entry {}", e.path().display()));
            }
        }
        Err(e) => out.push(format!("cannot read the workspace root: {e}")),
    }
    for d in cgroup_dirs(id_prefix) {
        out.push(format!("cgroup {}", d.display()));
    }
    out
}

/// Cgroup directories (v1 hierarchies and v2) whose name starts with
/// `prefix`, anywhere under a `runbox` parent.
fn cgroup_dirs(prefix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), prefix, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    // v2: /sys/fs/cgroup/runbox; v1: /sys/fs/cgroup/<controller>/runbox.
    let base = Path::new("/sys/fs/cgroup");
    walk(&base.join("runbox"), prefix, 2, &mut out);
    for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
        walk(&e.path().join("runbox"), prefix, 2, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// The namespace kinds a sandbox unshares.
const NAMESPACES: &[&str] = &["user", "mnt", "pid", "net", "ipc", "uts", "cgroup"];

/// What the host had before the run: the namespaces its processes are in,
/// and this process's mounts. A sandbox's namespaces must be gone with its
/// processes, and it never mounts anything where the host sees it.
pub struct HostState {
    namespaces: std::collections::BTreeSet<String>,
    mounts: Vec<String>,
}

/// Every namespace some process is in, as `kind:[inode]`, with a process
/// that holds it.
fn namespaces_in_use() -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        for kind in NAMESPACES {
            if let Ok(link) = std::fs::read_link(e.path().join("ns").join(kind)) {
                out.entry(link.to_string_lossy().into_owned())
                    .or_insert_with(|| pid.to_string());
            }
        }
    }
    out
}

/// This process's mount table, without the per-mount ids (which a mount
/// made and removed meanwhile would shift).
fn mounts() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
        .collect();
    v.sort();
    v
}

impl HostState {
    /// The host now.
    pub fn now() -> Self {
        Self {
            namespaces: namespaces_in_use().into_keys().collect(),
            mounts: mounts(),
        }
    }

    /// Namespaces in use now that were not before, and mounts that appeared
    /// or went away.
    pub fn leaks(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (ns, pid) in namespaces_in_use() {
            if !self.namespaces.contains(&ns) {
                out.push(format!("namespace {ns} still in use (by pid {pid})"));
            }
        }
        let now = mounts();
        for m in now.iter().filter(|m| !self.mounts.contains(m)) {
            out.push(format!("mount left behind: {m}"));
        }
        for m in self.mounts.iter().filter(|m| !now.contains(m)) {
            out.push(format!("mount gone: {m}"));
        }
        out
    }
}

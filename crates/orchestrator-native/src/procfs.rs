//! Reading /proc: process status, the members and descendants of a process
//! group, the processes of a workspace directory, who holds a pipe open.

use std::path::Path;

use orchestrator_core::owner::ProcStat;

use crate::process::signal::{Pgid, Pid};

/// All pids with their stat.
fn all_processes() -> Vec<(Pid, ProcStat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid = Pid::new(e.file_name().to_str()?.parse().ok()?)?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        Some((pid, ProcStat::parse(&stat)?))
    })
    .collect()
}

/// Every process in process group `pgid` and every descendant of those
/// (including descendants that moved to another group or session).
pub(crate) fn tree_of_group(pgid: Pgid) -> Vec<Pid> {
    let procs = all_processes();
    let mut set: Vec<Pid> = procs
        .iter()
        .filter(|(_, s)| s.pgid == pgid.get())
        .map(|(p, _)| *p)
        .collect();
    let mut i = 0;
    while i < set.len() {
        let parent = set[i];
        for (p, s) in &procs {
            if s.ppid == parent.get() && !set.contains(p) {
                set.push(*p);
            }
        }
        i += 1;
    }
    set
}

/// The processes of [`tree_of_group`] that still run (zombies are dead):
/// what killing the group did not end.
pub(crate) fn live_tree_of_group(pgid: Pgid) -> Vec<Pid> {
    tree_of_group(pgid)
        .into_iter()
        .filter(|p| ProcStat::read(p.get().unsigned_abs()).is_some_and(|s| !s.is_zombie()))
        .collect()
}

/// Reads a small /proc file into `buf` with as few syscalls as it takes:
/// no `statx` for a size hint (/proc files report 0) and no small probe
/// reads (std's `fs::read` does both).
fn read_small(path: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Read as _;
    buf.clear();
    buf.resize(4096, 0);
    let mut f = std::fs::File::open(path)?;
    let n = f.read(buf)?;
    buf.truncate(n);
    // These files (stat, environ, sysctls) come whole in one read when the
    // buffer is big enough; only a full buffer needs more reads.
    if n == 4096 {
        f.read_to_end(buf)?;
    }
    Ok(())
}

/// The last pid the kernel allocated (`/proc/sys/kernel/ns_last_pid`).
pub(crate) fn last_pid() -> Option<i32> {
    let mut buf = Vec::new();
    read_small("/proc/sys/kernel/ns_last_pid", &mut buf).ok()?;
    std::str::from_utf8(&buf).ok()?.trim().parse().ok()
}

/// Above this many pids allocated since a workspace's first command, a
/// cleanup lists /proc instead of probing each pid in the range (a failed
/// probe costs about a microsecond; listing /proc costs one lookup per
/// process on the machine).
const PROBE_MAX: i32 = 1024;

/// Which pids a search for a workspace's processes considers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PidFloor {
    /// Only pids from this one up (a workspace's first command), unless
    /// the pid counter wrapped since.
    From(Pid),
    /// Every pid.
    Any,
}

/// Live (non-zombie) processes of a workspace directory, among the pids
/// `floor` allows: those whose working directory is `dir` or below, and those
/// whose environment (as it was at their `exec`) has `HOME=<dir>`, which
/// every command gets, so a process that left both its group and the
/// workspace directory (`cd / && setsid ...`) is still found.
///
/// Pids grow until they wrap, so every process forked (directly or not)
/// from a command of a workspace has a pid at least that of the workspace's
/// first command, unless the pid counter wrapped since. When it did not
/// and few pids were allocated since, each pid of the range is probed
/// directly (the common case: a short execution on a machine that forks
/// little costs a handful of failed lookups); otherwise /proc is listed,
/// whole when the counter wrapped. One readlink per candidate, the environ
/// file only when the cwd does not match, the stat file only for matches.
pub(crate) fn processes_in_dir(dir: &Path, floor: PidFloor) -> Vec<Pid> {
    let mut m = Matcher::new(dir);
    let min_pid = match floor {
        PidFloor::From(pid) => Some(pid.get()),
        PidFloor::Any => None,
    };
    let last = min_pid.and_then(|_| last_pid());
    match (min_pid, last) {
        (Some(min_pid), Some(last)) if last >= min_pid && last - min_pid <= PROBE_MAX => (min_pid
            ..=last)
            .filter(|&pid| m.matches(pid))
            .filter_map(Pid::new)
            .collect(),
        _ => {
            // Wrapped (last < min_pid): everything is a candidate.
            let floor = match (min_pid, last) {
                (Some(min_pid), Some(last)) if last >= min_pid => min_pid,
                _ => 0,
            };
            let Ok(rd) = std::fs::read_dir("/proc") else {
                return Vec::new();
            };
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| pid >= floor && m.matches(pid))
                .filter_map(Pid::new)
                .collect()
        }
    }
}

/// Tells whether a pid belongs to a workspace (see [`processes_in_dir`]).
struct Matcher<'a> {
    dir: &'a Path,
    /// `HOME=<dir>\0`.
    home: Vec<u8>,
    me: i32,
    path: String,
    buf: Vec<u8>,
}

impl<'a> Matcher<'a> {
    fn new(dir: &'a Path) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let mut home = b"HOME=".to_vec();
        home.extend_from_slice(dir.as_os_str().as_bytes());
        home.push(0);
        Self {
            dir,
            home,
            me: std::process::id() as i32,
            path: String::with_capacity(32),
            buf: Vec::new(),
        }
    }

    fn proc_file(&mut self, pid: i32, file: &str) -> &str {
        use std::fmt::Write as _;
        self.path.clear();
        let _ = write!(self.path, "/proc/{pid}/{file}");
        &self.path
    }

    fn matches(&mut self, pid: i32) -> bool {
        if pid == self.me {
            return false;
        }
        let in_dir = match std::fs::read_link(self.proc_file(pid, "cwd")) {
            Ok(cwd) => {
                let cwd = cwd.to_string_lossy();
                let deleted = cwd.strip_suffix(" (deleted)");
                let cwd = Path::new(deleted.unwrap_or(&cwd));
                if cwd.starts_with(self.dir) {
                    true
                } else if deleted.is_none()
                    && self
                        .dir
                        .parent()
                        .is_some_and(|root| cwd.starts_with(root) && cwd != root)
                {
                    // In another live workspace of the same root: that
                    // workspace's cleanup finds it by its cwd; skip the
                    // environment read (the costly part of a probe, and
                    // the common case with concurrent executions).
                    return false;
                } else {
                    false
                }
            }
            // No such process (the common case when probing a range).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(_) => false,
        };
        let mut buf = std::mem::take(&mut self.buf);
        let ours = in_dir || {
            let read = read_small(self.proc_file(pid, "environ"), &mut buf);
            let home = &self.home[..];
            // The first variable has no NUL before it.
            read.is_ok()
                && (buf.starts_with(home)
                    || buf
                        .windows(home.len() + 1)
                        .any(|w| w[0] == 0 && w[1..] == *home))
        };
        let live = ours
            && read_small(self.proc_file(pid, "stat"), &mut buf).is_ok()
            && ProcStat::parse(&String::from_utf8_lossy(&buf)).is_some_and(|s| !s.is_zombie());
        self.buf = buf;
        live
    }
}

/// The inode of an open file descriptor (a pipe's identity).
pub(crate) fn fd_inode(fd: i32) -> Option<u64> {
    // SAFETY: fstat(2) writes only into the struct we pass.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some(st.st_ino)
    }
}

/// Does any process other than this one hold one of these pipes open?
/// (Scans every process's fds: for the rare slow path only.)
pub(crate) fn pipes_held_elsewhere(inodes: &[u64]) -> bool {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("pipe:[{i}]")).collect();
    let me = std::process::id().to_string();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return true;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str() else { continue };
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if wanted.iter().any(|w| *w == t) {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path of the scan finds a process by its working directory:
    /// the probed range, the listing of /proc, and the full listing after
    /// a (simulated) pid wrap.
    #[test]
    fn processes_in_dir_finds_by_cwd_on_every_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        let pid = Pid::new(child.id() as i32).unwrap();
        let found_in = |floor| processes_in_dir(dir.path(), floor).contains(&pid);
        let found = |min: i32| found_in(PidFloor::From(Pid::new(min).unwrap()));
        // Probed range: the child is the first pid of it.
        assert!(found(pid.get()), "range probe missed the child");
        // Listing every pid.
        assert!(found_in(PidFloor::Any), "full listing missed the child");
        // A floor above the last pid looks like a wrap: list everything.
        assert!(found(i32::MAX), "the wrap fallback missed the child");
        // A floor just above the child excludes it (range probe).
        assert!(!found(pid.get() + 1) || last_pid().unwrap() < pid.get() + 1);
        // Listing (range too long to probe) with a floor below the child.
        assert!(pid.get() <= PROBE_MAX + 1 || found(pid.get() - PROBE_MAX - 1));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!found(pid.get()), "a reaped child is no longer found");
    }
}

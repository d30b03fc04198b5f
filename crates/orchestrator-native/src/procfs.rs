//! Small /proc helpers: process start times (to tell a live owner from a
//! reused pid), descendants of a process, and killing process trees.

use std::path::Path;

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot).
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|s| s.start_time)
}

pub(crate) struct Stat {
    pub ppid: i32,
    pub pgid: i32,
    pub state: char,
    pub start_time: u64,
}

/// Parses /proc/PID/stat; the command name may contain spaces and ')'.
pub(crate) fn parse_stat(stat: &str) -> Option<Stat> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state).
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// Is this pid alive (not a zombie) with this start time?
pub(crate) fn is_alive(pid: i32, start: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
    {
        Some(s) => s.start_time == start && s.state != 'Z',
        None => false,
    }
}

/// All live pids with their stat.
fn all_processes() -> Vec<(i32, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        Some((pid, parse_stat(&stat)?))
    })
    .collect()
}

/// Every process in process group `pgid` and every descendant of those
/// (including descendants that moved to another group or session).
pub(crate) fn tree_of_group(pgid: i32) -> Vec<i32> {
    let procs = all_processes();
    let mut set: Vec<i32> = procs
        .iter()
        .filter(|(_, s)| s.pgid == pgid)
        .map(|(p, _)| *p)
        .collect();
    let mut i = 0;
    while i < set.len() {
        let parent = set[i];
        for (p, s) in &procs {
            if s.ppid == parent && !set.contains(p) {
                set.push(*p);
            }
        }
        i += 1;
    }
    set
}

/// SIGKILLs process group `pgid` and every descendant of its members.
pub(crate) fn kill_tree(pgid: i32) {
    // Kill the group first so it cannot fork further, then stragglers that
    // left the group; repeat once for children forked in between.
    for _ in 0..2 {
        // SAFETY: kill(2) with a negative pid signals a process group; no
        // memory is touched.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        for pid in tree_of_group(pgid) {
            // SAFETY: as above, for one pid.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// The last pid the kernel allocated (`/proc/sys/kernel/ns_last_pid`).
pub(crate) fn last_pid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Live (non-zombie) processes of a workspace directory, among pids
/// `>= min_pid`: those whose working directory is `dir` or below, and those
/// whose environment (as it was at their `exec`) has `HOME=<dir>`, which
/// every command gets, so a process that left both its group and the
/// workspace directory (`cd / && setsid ...`) is still found.
///
/// Pids grow until they wrap, so every process forked (directly or not)
/// from a command of a workspace has a pid at least that of the workspace's
/// first command, unless the pid counter wrapped since; callers pass
/// `min_pid` only when it did not. One readlink per candidate, the environ
/// file only when the cwd does not match, the stat file only for matches.
pub(crate) fn processes_in_dir(dir: &Path, min_pid: i32) -> Vec<i32> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    let mut home = b"HOME=".to_vec();
    home.extend_from_slice(dir.as_os_str().as_bytes());
    home.push(0);
    let mut path = std::path::PathBuf::from("/proc");
    rd.filter_map(|e| {
        let e = e.ok()?;
        let name = e.file_name();
        let pid: i32 = name.to_str()?.parse().ok()?;
        if pid == me || pid < min_pid {
            return None;
        }
        path.push(&name);
        path.push("cwd");
        let cwd = std::fs::read_link(&path);
        path.set_file_name("environ");
        let in_dir = cwd.is_ok_and(|cwd| {
            let cwd = cwd.to_string_lossy();
            let cwd = cwd.strip_suffix(" (deleted)").unwrap_or(&cwd);
            Path::new(cwd).starts_with(dir)
        });
        let ours = in_dir
            || std::fs::read(&path).is_ok_and(|env| {
                // The first variable has no NUL before it.
                env.starts_with(&home[..])
                    || env
                        .windows(home.len() + 1)
                        .any(|w| w[0] == 0 && w[1..] == home[..])
            });
        path.pop();
        path.pop();
        if !ours {
            return None;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        (parse_stat(&stat)?.state != 'Z').then_some(pid)
    })
    .collect()
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

    #[test]
    fn parses_stat_with_odd_names() {
        let s = "123 (a) b) c) S 1 123 123 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 4242 1 1";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 1);
        assert_eq!(st.pgid, 123);
        assert_eq!(st.start_time, 4242);
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let st = start_time(me).unwrap();
        assert!(is_alive(me, st));
        assert!(!is_alive(me, st + 1));
    }
}

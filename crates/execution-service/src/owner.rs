//! Who owns an execution: a process id plus that process's start time, so a
//! recycled pid is not mistaken for the original owner.
//!
//! The start time is field 22 of `/proc/<pid>/stat` (clock ticks since boot),
//! which changes whenever the pid is reused.

use serde::{Deserialize, Serialize};

/// The process that owns an execution's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerInfo {
    /// Its pid.
    pub pid: u32,
    /// Its start time (`/proc/<pid>/stat` field 22), when readable.
    pub start_time: Option<u64>,
    /// The host it ran on (`/proc/sys/kernel/hostname`), when readable;
    /// records of another host are never judged dead.
    pub host: Option<String>,
}

/// Whether an owner process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It runs (same pid, same start time).
    Alive,
    /// It is gone: no such pid, a zombie, or the pid now belongs to another
    /// process.
    Dead,
    /// Cannot tell (another host, or /proc unreadable).
    Unknown,
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// State and start time from `/proc/<pid>/stat`. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after the last
/// `)`.
fn stat_of(pid: u32) -> std::io::Result<(char, u64)> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed stat");
    let rest = raw.rsplit_once(')').ok_or_else(bad)?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22 -> index 19.
    let state = fields
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(bad)?;
    let start = fields
        .get(19)
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(bad)?;
    Ok((state, start))
}

/// The start time of a process, if it exists.
pub fn process_start_time(pid: u32) -> Option<u64> {
    stat_of(pid).ok().map(|(_, t)| t)
}

impl OwnerInfo {
    /// This process. Read once per process (and again in a forked child,
    /// whose pid differs): every execution records its owner, and reading
    /// two /proc files each time showed in the throughput profile.
    pub fn current() -> Self {
        static CACHE: std::sync::Mutex<Option<OwnerInfo>> = std::sync::Mutex::new(None);
        let pid = std::process::id();
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        match &*cache {
            Some(me) if me.pid == pid => me.clone(),
            _ => {
                let me = Self {
                    pid,
                    start_time: process_start_time(pid),
                    host: hostname(),
                };
                *cache = Some(me.clone());
                me
            }
        }
    }

    /// Is this the current process?
    pub fn is_current(&self) -> bool {
        *self == Self::current()
    }

    /// Does the owner still run?
    pub fn liveness(&self) -> Liveness {
        if let (Some(mine), Some(here)) = (&self.host, hostname()) {
            if *mine != here {
                return Liveness::Unknown;
            }
        }
        match stat_of(self.pid) {
            Ok((state, start)) => {
                if state == 'Z' || state == 'X' {
                    Liveness::Dead
                } else {
                    match self.start_time {
                        Some(t) if t != start => Liveness::Dead,
                        _ => Liveness::Alive,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Liveness::Dead,
            Err(_) => {
                if std::path::Path::new("/proc/self/stat").exists() {
                    // /proc works but this pid's entry is unreadable or gone.
                    Liveness::Dead
                } else {
                    Liveness::Unknown
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_is_alive() {
        let me = OwnerInfo::current();
        assert!(me.start_time.is_some());
        assert_eq!(me.liveness(), Liveness::Alive);
        assert!(me.is_current());
    }

    #[test]
    fn reused_pid_is_dead() {
        let mut me = OwnerInfo::current();
        me.start_time = me.start_time.map(|t| t + 1);
        assert_eq!(me.liveness(), Liveness::Dead);
    }

    #[test]
    fn exited_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let owner = OwnerInfo {
            pid,
            start_time: process_start_time(pid),
            host: hostname(),
        };
        child.wait().unwrap();
        assert_eq!(owner.liveness(), Liveness::Dead);
    }

    #[test]
    fn other_host_is_unknown() {
        let mut me = OwnerInfo::current();
        me.host = Some("surely-not-this-host.invalid".into());
        assert_eq!(me.liveness(), Liveness::Unknown);
    }
}

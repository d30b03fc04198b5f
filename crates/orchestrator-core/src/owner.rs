//! Owner identity and liveness: which process owns a sandbox, and whether it
//! still runs.
//!
//! A sandbox is owned by the process that created it. After a crash, the
//! next process must tell sandboxes whose owner is gone (to be reaped) from
//! those of another live process (to be left alone). A pid alone is not
//! enough, since pids are reused: the owner is the pid plus that process's
//! start time (field 22 of `/proc/PID/stat`, clock ticks since boot), and,
//! where a sandbox outlives the machine's boot or lives on another host
//! (containers), the boot id and the host name.
//!
//! Every backend and the execution service use this one definition, in two
//! encodings: [`Owner::token`] (`PID-START`, for names such as native
//! workspace directories) and [`Owner::labels`] (key/value pairs under a
//! prefix, for container labels and records).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Whether an owner process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// It runs: same pid, same start time, not a zombie.
    Alive,
    /// It is gone: no such pid, a zombie, another process under a reused
    /// pid, or a previous boot of this machine.
    Dead,
    /// Cannot tell: another host, or `/proc` is unreadable.
    Unknown,
}

/// The process that owns a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot, when known.
    pub start_time: Option<u64>,
    /// `/proc/sys/kernel/random/boot_id` of its machine, when known.
    pub boot_id: Option<String>,
    /// The host name of its machine, when known; owners on another host
    /// are never judged dead.
    pub host: Option<String>,
}

/// The fields of `/proc/PID/stat` runbox reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: the state letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Field 4: the parent's pid.
    pub ppid: i32,
    /// Field 5: the process group.
    pub pgid: i32,
    /// Field 22: start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcStat {
    /// Parses the text of `/proc/PID/stat`. The command name (field 2) may
    /// hold spaces and parentheses, so fields are counted after the last
    /// `)`. A truncated or malformed line is `None`, never a panic.
    pub fn parse(stat: &str) -> Option<Self> {
        let rest = stat.rsplit_once(')')?.1;
        let mut f = rest.split_ascii_whitespace();
        // `rest` starts at field 3.
        let state = f.next()?.chars().next()?;
        let ppid = f.next()?.parse().ok()?;
        let pgid = f.next()?.parse().ok()?;
        // Fields 6..=21 lie between the group and the start time.
        let start_time = f.nth(16)?.parse().ok()?;
        Some(Self {
            state,
            ppid,
            pgid,
            start_time,
        })
    }

    /// Reads and parses `/proc/PID/stat`; `None` when there is no such
    /// process or the line cannot be parsed.
    pub fn read(pid: u32) -> Option<Self> {
        read_stat(pid).ok().flatten()
    }

    /// A zombie or a dead task: it no longer runs code.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// `Ok(None)`: the entry exists but cannot be parsed.
fn read_stat(pid: u32) -> std::io::Result<Option<ProcStat>> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(ProcStat::parse(&raw))
}

/// The start time of a live (or zombie) process, if it exists.
pub fn process_start_time(pid: u32) -> Option<u64> {
    ProcStat::read(pid).map(|s| s.start_time)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The label key suffixes of [`Owner::labels`].
const KEY_PID: &str = "pid";
const KEY_START: &str = "start";
const KEY_BOOT: &str = "boot";
const KEY_HOST: &str = "host";

impl Owner {
    /// This process. Read once per process and cached (again in a forked
    /// child, whose pid differs): every sandbox records its owner, and the
    /// /proc reads would otherwise sit on the hot path.
    pub fn current() -> Self {
        static CACHE: Mutex<Option<Owner>> = Mutex::new(None);
        let pid = std::process::id();
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        match &*cache {
            Some(me) if me.pid == pid => me.clone(),
            _ => {
                let me = Self {
                    pid,
                    start_time: process_start_time(pid),
                    boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
                    host: read_trimmed("/proc/sys/kernel/hostname"),
                };
                *cache = Some(me.clone());
                me
            }
        }
    }

    /// The owner identity of another process of this machine, if it exists.
    pub fn of_pid(pid: u32) -> Option<Self> {
        let me = Self::current();
        Some(Self {
            pid,
            start_time: Some(process_start_time(pid)?),
            boot_id: me.boot_id,
            host: me.host,
        })
    }

    /// Is this the current process (same pid and start time)?
    pub fn is_current(&self) -> bool {
        let me = Self::current();
        self.pid == me.pid && (self.start_time.is_none() || self.start_time == me.start_time)
    }

    /// Does the owner still run, seen from this process?
    pub fn liveness(&self) -> Liveness {
        let me = Self::current();
        if let (Some(theirs), Some(ours)) = (&self.host, &me.host) {
            if theirs != ours {
                return Liveness::Unknown;
            }
        }
        if let (Some(theirs), Some(ours)) = (&self.boot_id, &me.boot_id) {
            if theirs != ours {
                return Liveness::Dead;
            }
        }
        match read_stat(self.pid) {
            Ok(Some(stat)) => {
                let same = self.start_time.is_none_or(|t| t == stat.start_time);
                if same && !stat.is_zombie() {
                    Liveness::Alive
                } else {
                    Liveness::Dead
                }
            }
            // A line the kernel would not write: nothing to judge it by.
            Ok(None) => Liveness::Unknown,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Liveness::Dead,
            Err(_) if std::path::Path::new("/proc/self/stat").exists() => Liveness::Dead,
            Err(_) => Liveness::Unknown,
        }
    }

    /// True only when the owner is known to be gone: an owner whose state
    /// cannot be told is treated as alive, so nothing of it is removed.
    pub fn is_dead(&self) -> bool {
        self.liveness() == Liveness::Dead
    }

    /// The compact encoding `PID-START` (lowercase hex, as native
    /// workspace names have always carried it; START `0` when unknown),
    /// safe in file names and identifiers. Boot id and host are left out:
    /// a name lives on one machine's disk.
    pub fn token(&self) -> String {
        format!("{:x}-{:x}", self.pid, self.start_time.unwrap_or(0))
    }

    /// Parses the start of `s` as a [`Owner::token`]: `PID-START`, followed
    /// by the end of `s` or a `-`. Returns the owner (with this machine's
    /// boot id and host, since tokens name local things) and the rest of
    /// `s` after the separator.
    pub fn parse_token(s: &str) -> Option<(Self, &str)> {
        let (pid, rest) = s.split_once('-')?;
        let (start, rest) = match rest.split_once('-') {
            Some((start, rest)) => (start, rest),
            None => (rest, ""),
        };
        let pid = u32::from_str_radix(pid, 16).ok().filter(|p| *p > 0)?;
        let start = u64::from_str_radix(start, 16).ok()?;
        let me = Self::current();
        let owner = Self {
            pid,
            start_time: (start != 0).then_some(start),
            boot_id: me.boot_id,
            host: me.host,
        };
        Some((owner, rest))
    }

    /// The label encoding: `PREFIX.pid`, `PREFIX.start`, `PREFIX.boot` and
    /// `PREFIX.host` (the last three only when known).
    pub fn labels(&self, prefix: &str) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(format!("{prefix}.{KEY_PID}"), self.pid.to_string());
        if let Some(t) = self.start_time {
            m.insert(format!("{prefix}.{KEY_START}"), t.to_string());
        }
        if let Some(b) = &self.boot_id {
            m.insert(format!("{prefix}.{KEY_BOOT}"), b.clone());
        }
        if let Some(h) = &self.host {
            m.insert(format!("{prefix}.{KEY_HOST}"), h.clone());
        }
        m
    }

    /// Reads [`Owner::labels`] back; `None` without a valid pid label.
    pub fn from_labels(prefix: &str, labels: &BTreeMap<String, String>) -> Option<Self> {
        Self::from_label_fn(prefix, |k| labels.get(k).map(String::as_str))
    }

    /// As [`Owner::from_labels`], for any key/value lookup (a
    /// `HashMap`, a record's columns).
    pub fn from_label_fn<'a>(prefix: &str, get: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        let field = |k: &str| {
            get(&format!("{prefix}.{k}"))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        Some(Self {
            pid: field(KEY_PID)?.parse().ok().filter(|p| *p > 0)?,
            start_time: field(KEY_START).and_then(|v| v.parse().ok()),
            boot_id: field(KEY_BOOT).map(str::to_string),
            host: field(KEY_HOST).map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_is_alive() {
        let me = Owner::current();
        assert!(me.start_time.is_some());
        assert_eq!(me.liveness(), Liveness::Alive);
        assert!(me.is_current());
        assert!(!me.is_dead());
    }

    #[test]
    fn reused_pid_is_dead() {
        let mut me = Owner::current();
        me.start_time = me.start_time.map(|t| t + 1);
        assert_eq!(me.liveness(), Liveness::Dead);
        assert!(!me.is_current());
    }

    #[test]
    fn another_boot_is_dead_and_another_host_unknown() {
        let mut other_boot = Owner::current();
        other_boot.boot_id = Some("not-this-boot".into());
        assert_eq!(other_boot.liveness(), Liveness::Dead);
        let mut other_host = Owner::current();
        other_host.host = Some("surely-not-this-host.invalid".into());
        assert_eq!(other_host.liveness(), Liveness::Unknown);
        assert!(!other_host.is_dead());
    }

    #[test]
    fn zombie_and_exited_children_are_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let owner = Owner::of_pid(pid).expect("an unreaped child has a /proc entry");
        // Until it is reaped, the exited child stays a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ProcStat::read(pid).is_some_and(|s| s.is_zombie()) {
            assert!(std::time::Instant::now() < deadline, "child never exited");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(owner.liveness(), Liveness::Dead, "a zombie counts as dead");
        child.wait().unwrap();
        assert_eq!(owner.liveness(), Liveness::Dead);
    }

    #[test]
    fn stat_parsing_never_panics_on_truncated_lines() {
        let full = "123 (a (b) c) S 1 123 123 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 4242 0 0";
        let s = ProcStat::parse(full).unwrap();
        assert_eq!((s.state, s.ppid, s.pgid, s.start_time), ('S', 1, 123, 4242));
        for cut in 0..full.len() {
            let _ = ProcStat::parse(&full[..cut]);
        }
        assert_eq!(ProcStat::parse("12 (x)"), None);
        assert_eq!(ProcStat::parse("12 (x) "), None);
        assert_eq!(ProcStat::parse(""), None);
    }

    #[test]
    fn token_roundtrip() {
        let me = Owner::current();
        let name = format!("ws-{}-rest", me.token());
        let (back, rest) = Owner::parse_token(name.strip_prefix("ws-").unwrap()).unwrap();
        assert_eq!(back.pid, me.pid);
        assert_eq!(back.start_time, me.start_time);
        assert_eq!(rest, "rest");
        // Hex, as the names on disk have always been written.
        let (o, _) = Owner::parse_token("1a2b-ff-9").unwrap();
        assert_eq!((o.pid, o.start_time), (0x1a2b, Some(0xff)));
        assert_eq!(Owner::parse_token("0-5"), None);
        assert_eq!(Owner::parse_token("x-5"), None);
        assert_eq!(Owner::parse_token("5"), None);
        assert!(Owner::parse_token("5-0").unwrap().0.start_time.is_none());
    }

    #[test]
    fn labels_roundtrip() {
        let me = Owner::current();
        let labels = me.labels("io.example.owner");
        assert_eq!(labels["io.example.owner.pid"], me.pid.to_string());
        assert_eq!(Owner::from_labels("io.example.owner", &labels), Some(me));
        assert_eq!(Owner::from_labels("other", &labels), None);
        let mut bad = labels.clone();
        bad.insert("io.example.owner.pid".into(), "0".into());
        assert_eq!(Owner::from_labels("io.example.owner", &bad), None);
    }
}

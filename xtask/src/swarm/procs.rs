//! Finding the cluster's processes in /proc, and signalling them.
//!
//! A process belongs to the cluster when it runs in one of the cluster's
//! network namespaces (the daemons, their containerd, shims, proxies), in a
//! `runbox-swarm-*` cgroup (containers), or when it names `$DIR` on its
//! command line or works in it. Only the first two, and known cluster
//! programs of the third, are ever killed: anything else naming `$DIR` (a
//! user's shell sitting in it) is only reported.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;

use super::{command, net, Layout, PREFIX};

/// Programs that may be killed for naming `$DIR` (their command names as
/// the kernel truncates them, 15 bytes).
const CLUSTER_PROGRAMS: &[&str] = &[
    "dockerd",
    "containerd",
    "containerd-shim",
    "runc",
    "docker-proxy",
    "docker-init",
    "docker",
    "nsenter",
    "unshare",
    "setsid",
    "timeout",
];

/// Why a process counts as the cluster's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// In a `runbox-swarm-*` cgroup: a container's.
    Cgroup,
    /// In a cluster network namespace: a daemon or one of its helpers.
    Netns,
    /// Names `$DIR` on its command line, or works or lives in it.
    Dir,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Why::Cgroup => "in a cluster cgroup",
            Why::Netns => "in a cluster network namespace",
            Why::Dir => "names the cluster directory",
        })
    }
}

/// A process of the cluster.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub comm: String,
    pub cmdline: String,
    /// Why it counts as the cluster's.
    pub why: Why,
    /// Whether teardown may kill it.
    pub killable: bool,
}

impl std::fmt::Display for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut cmd: String = self.cmdline.chars().take(160).collect();
        if cmd.len() < self.cmdline.len() {
            cmd.push_str("...");
        }
        write!(f, "pid {} ({}, {}): {cmd}", self.pid, self.comm, self.why)
    }
}

/// Every live process of the cluster, except this one and its ancestors
/// (whose command lines may well name `$DIR`: `sh -c 'cargo xtask
/// swarm-down; ls /run/runbox-swarm'`). Zombies are left out: they hold
/// nothing, cannot be killed, and on hosts whose init does not reap
/// orphans they stay.
pub fn cluster_processes(layout: &Layout) -> Vec<Proc> {
    let spared = self_and_ancestors();
    let netns: BTreeSet<u64> = net::namespaces()
        .iter()
        .filter_map(|n| std::fs::metadata(Path::new(net::NETNS_DIR).join(n)).ok())
        .map(|m| m.ino())
        .collect();
    let dir = layout.dir_str();
    let mut found = Vec::new();
    for pid in all_pids() {
        if spared.contains(&pid) || state(pid).is_none_or(|s| s == 'Z') {
            continue;
        }
        let base = format!("/proc/{pid}");
        let comm = read(&format!("{base}/comm")).trim().to_string();
        let cmdline = read(&format!("{base}/cmdline")).replace('\0', " ");
        let cmdline = cmdline.trim().to_string();
        let in_netns = std::fs::read_link(format!("{base}/ns/net"))
            .ok()
            .and_then(|l| ns_inode(&l.to_string_lossy()))
            .is_some_and(|i| netns.contains(&i));
        let in_cgroup = read(&format!("{base}/cgroup")).lines().any(|l| {
            l.splitn(3, ':')
                .nth(2)
                .is_some_and(|p| p.split('/').any(|c| c.starts_with(PREFIX)))
        });
        let under = |link: &str| {
            std::fs::read_link(format!("{base}/{link}")).is_ok_and(|p| p.starts_with(&layout.dir))
        };
        let names_dir = mentions(&cmdline, &dir) || under("cwd") || under("exe");
        let (why, killable) = if in_cgroup {
            (Why::Cgroup, true)
        } else if in_netns {
            (Why::Netns, true)
        } else if names_dir {
            (Why::Dir, known(&comm, &cmdline))
        } else {
            continue;
        };
        found.push(Proc {
            pid,
            comm,
            cmdline,
            why,
            killable,
        });
    }
    found
}

/// A cluster program, or a shell running a node's start.sh (whose command
/// name is the script's when run directly).
fn known(comm: &str, cmdline: &str) -> bool {
    let start_sh = comm == "start.sh"
        || (matches!(comm, "sh" | "dash" | "bash") && cmdline.contains("/start.sh"));
    start_sh
        || CLUSTER_PROGRAMS
            .iter()
            .any(|p| comm == *p || (p.starts_with("containerd-shim") && comm.starts_with(p)))
}

/// `dir` as a whole path in `text`: `/run/runbox-swarm/n1` or
/// `unix:///run/runbox-swarm/...`, not `/run/runbox-swarm-other`.
pub fn mentions(text: &str, dir: &str) -> bool {
    text.match_indices(dir).any(|(i, _)| {
        text[i + dir.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
    })
}

fn ns_inode(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn read(path: &str) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The state letter of /proc/PID/stat (`R`, `S`, `Z`...), None when gone.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which may hold spaces and parentheses.
    stat.rsplit_once(") ")?.1.chars().next()
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn self_and_ancestors() -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    let mut pid = std::process::id();
    while pid > 1 && set.insert(pid) {
        match ppid(pid) {
            Some(p) => pid = p,
            None => break,
        }
    }
    set
}

/// Running, as opposed to gone or a zombie.
pub fn alive(pid: u32) -> bool {
    state(pid).is_some_and(|s| s != 'Z')
}

/// Sends `signal` (`TERM`, `KILL`) to the processes; errors (a process
/// gone meanwhile) do not matter, the caller checks what is left.
pub fn signal(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = command("kill")
        .arg("-s")
        .arg(signal)
        .arg("--")
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGKILLs a process group (a child started with `process_group(0)`,
/// whose id is the group's).
pub fn kill_group(pgid: u32) {
    signal_group(pgid, "KILL");
}

/// Sends `signal` to a whole process group.
pub fn signal_group(pgid: u32, signal: &str) {
    let _ = command("kill")
        .arg("-s")
        .arg(signal)
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

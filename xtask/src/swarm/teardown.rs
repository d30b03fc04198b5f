//! swarm-down: stops the cluster's processes, unmounts what its daemons
//! mounted, removes its cgroups, namespaces and directory, then checks that
//! nothing of it is left (and fails naming what is).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::cgroups::{cluster_cgroups, remove_cgroups, thaw};
use super::mounts::{mounts_under, unmount_all};
use super::procs::{self, Why};
use super::{net, secs, Layout};

/// How long daemons get to stop on SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long SIGKILLed processes get to go away.
const KILL_LIMIT: Duration = Duration::from_secs(5);

/// Tears the cluster down, whatever state it is in; succeeds (saying so)
/// when there is nothing to tear down.
pub fn down(layout: &Layout) -> Result<()> {
    let t0 = Instant::now();
    let found = leftovers(layout);
    if found.is_empty() {
        eprintln!(
            "xtask swarm: nothing to tear down (no {}, no cluster namespaces, processes, mounts or cgroups)",
            layout.dir.display()
        );
        return Ok(());
    }
    eprintln!("xtask swarm: tearing down {}", found.summary());
    let mut problems = Vec::new();
    stop_processes(layout);
    unmount_all(layout, &mut problems);
    remove_cgroups(&mut problems);
    for ns in net::namespaces() {
        if let Err(e) = net::delete(&ns) {
            problems.push(format!("deleting namespace {ns}: {e:#}"));
        }
    }
    remove_dir(layout, &mut problems);
    let left = leftovers(layout);
    if !left.is_empty() || !problems.is_empty() {
        bail!(
            "swarm teardown incomplete after {}:\n  left: {}\n  errors: {}",
            secs(t0),
            if left.is_empty() {
                "nothing".into()
            } else {
                left.details().join("\n        ")
            },
            if problems.is_empty() {
                "none".into()
            } else {
                problems.join("\n          ")
            },
        );
    }
    eprintln!("xtask swarm: torn down in {}; nothing left", secs(t0));
    Ok(())
}

/// Fails when a daemon of a cluster in another directory runs in the
/// cluster's namespaces: their names are fixed, so a teardown here would
/// take that cluster down too.
pub fn refuse_foreign(layout: &Layout) -> Result<()> {
    let dir = layout.dir_str();
    let foreign: Vec<String> = procs::cluster_processes(layout)
        .into_iter()
        .filter(|p| {
            p.why == Why::Netns && p.comm == "dockerd" && !procs::mentions(&p.cmdline, &dir)
        })
        .map(|p| p.to_string())
        .collect();
    if !foreign.is_empty() {
        bail!(
            "the cluster's namespaces are in use by a cluster outside {} ({}); \
             run swarm-down with its RUNBOX_SWARM_DIR first",
            layout.dir.display(),
            foreign.join("; ")
        );
    }
    Ok(())
}

/// What of a cluster exists now.
#[derive(Debug, Default)]
pub struct Leftovers {
    namespaces: Vec<String>,
    processes: Vec<procs::Proc>,
    mounts: Vec<PathBuf>,
    cgroups: Vec<PathBuf>,
    dir: Option<PathBuf>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.processes.is_empty()
            && self.mounts.is_empty()
            && self.cgroups.is_empty()
            && self.dir.is_none()
    }

    /// Counts, for the log line.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = [
            (self.namespaces.len(), "network namespaces"),
            (self.processes.len(), "processes"),
            (self.mounts.len(), "mounts"),
            (self.cgroups.len(), "cgroups"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if let Some(d) = &self.dir {
            parts.push(d.display().to_string());
        }
        parts.join(", ")
    }

    /// One line per thing left, for the failure message.
    fn details(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| format!("network namespace {n}"))
            .collect();
        out.extend(self.processes.iter().map(|p| format!("process {p}")));
        out.extend(self.mounts.iter().map(|m| format!("mount {}", m.display())));
        out.extend(
            self.cgroups
                .iter()
                .map(|c| format!("cgroup {}", c.display())),
        );
        out.extend(
            self.dir
                .iter()
                .map(|d| format!("directory {}", d.display())),
        );
        out
    }
}

/// Everything of a cluster that exists now.
pub fn leftovers(layout: &Layout) -> Leftovers {
    Leftovers {
        namespaces: net::namespaces(),
        processes: procs::cluster_processes(layout),
        mounts: mounts_under(&layout.dir),
        cgroups: cluster_cgroups(),
        dir: layout.dir.exists().then(|| layout.dir.clone()),
    }
}

/// Containers first (SIGKILL: they are throwaway, and a daemon stopping
/// with containers running waits out each one's stop grace period), then
/// the daemons (SIGTERM, so they stop their containerd and unmount; SIGKILL
/// after [`TERM_GRACE`]), then whatever is left (containerd, shims).
fn stop_processes(layout: &Layout) {
    let mut containerds = BTreeSet::new();
    let mut killable = |why: Option<Why>| -> Vec<procs::Proc> {
        let found: Vec<procs::Proc> = procs::cluster_processes(layout)
            .into_iter()
            .filter(|p| p.killable && why.is_none_or(|w| p.why == w))
            .collect();
        containerds.extend(
            found
                .iter()
                .filter(|p| p.comm == "containerd")
                .map(|p| p.pid),
        );
        found
    };
    thaw(&cluster_cgroups());
    procs::signal(&pids(&killable(Some(Why::Cgroup))), "KILL");
    let daemons: Vec<u32> = killable(None)
        .iter()
        .filter(|p| p.comm == "dockerd")
        .map(|p| p.pid)
        .collect();
    procs::signal(&daemons, "TERM");
    let deadline = Instant::now() + TERM_GRACE;
    while daemons.iter().any(|&p| procs::alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + KILL_LIMIT;
    loop {
        let rest = pids(&killable(None));
        if rest.is_empty() || Instant::now() > deadline {
            break;
        }
        procs::signal(&rest, "KILL");
        std::thread::sleep(Duration::from_millis(100));
    }
    remove_stack_dumps(&containerds);
}

/// A stopping dockerd that finds its containerd slow kills it, sending
/// SIGUSR1 first, on which containerd writes its goroutines to
/// `$TMPDIR/containerd.PID.stacks.log`, outside `$DIR`: those of the
/// cluster's containerds go with the cluster.
fn remove_stack_dumps(containerds: &BTreeSet<u32>) {
    let dirs = [std::env::temp_dir(), PathBuf::from("/tmp")];
    for pid in containerds {
        for d in &dirs {
            let _ = std::fs::remove_file(d.join(format!("containerd.{pid}.stacks.log")));
        }
    }
}

fn pids(procs: &[procs::Proc]) -> Vec<u32> {
    procs.iter().map(|p| p.pid).collect()
}

/// Removes `$DIR` when swarm-up made it (its marker is there) and nothing
/// is mounted below it any more: a recursive removal would go through a
/// mount into whatever it shows.
fn remove_dir(layout: &Layout, problems: &mut Vec<String>) {
    let dir = &layout.dir;
    if !dir.exists() {
        return;
    }
    if !mounts_under(dir).is_empty() {
        problems.push(format!("{} still has mounts; not removed", dir.display()));
        return;
    }
    let r = if layout.marker().exists() {
        remove_marked(layout)
    } else if layout.is_empty() {
        std::fs::remove_dir(dir)
    } else {
        problems.push(format!(
            "{} was not made by swarm-up (no {}); left alone",
            dir.display(),
            layout.marker().display()
        ));
        return;
    };
    if let Err(e) = r {
        problems.push(format!("removing {}: {e}", dir.display()));
    }
}

/// Removes `$DIR`'s contents, then its marker, then `$DIR`: a removal cut
/// short keeps the marker, so the next teardown still knows the directory.
fn remove_marked(layout: &Layout) -> std::io::Result<()> {
    let marker = layout.marker();
    for e in std::fs::read_dir(&layout.dir)? {
        let path = e?.path();
        if path == marker {
            continue;
        }
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::remove_file(&marker)?;
    std::fs::remove_dir(&layout.dir)
}

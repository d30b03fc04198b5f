//! Cgroups of the cluster: every `runbox-swarm-*` cgroup in every
//! hierarchy (v1 controllers and v2), thawing and removing them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::mounts::unescape;
use super::PREFIX;

/// How long the processes just killed get to leave their cgroups.
const EMPTY_LIMIT: Duration = Duration::from_secs(5);

/// The mount points of every cgroup hierarchy (each v1 controller's and
/// the v2 one, wherever they are mounted).
fn hierarchies() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let point = pre.split(' ').nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(unescape(point)))
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Every cgroup named `runbox-swarm-*` (the outermost of each subtree), in
/// every hierarchy, at any depth: a relative cgroup parent lands below the
/// daemon's own cgroup.
pub fn cluster_cgroups() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            // file_type does not follow symlinks (`cpu,cpuacct` links).
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with(PREFIX) {
                out.push(path);
            } else {
                walk(&path, out);
            }
        }
    }
    let mut out = Vec::new();
    for h in hierarchies() {
        walk(&h, &mut out);
    }
    out
}

/// `dir` and every cgroup below it, children before parents.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(subtree(&e.path()));
        }
    }
    out.push(dir.to_path_buf());
    out
}

/// Thaws frozen (paused) containers, which cannot die of SIGKILL while
/// frozen; errors mean there was nothing to thaw.
pub fn thaw(cgroups: &[PathBuf]) {
    for c in cgroups.iter().flat_map(|c| subtree(c)) {
        let _ = std::fs::write(c.join("freezer.state"), "THAWED");
        let _ = std::fs::write(c.join("cgroup.freeze"), "0");
    }
}

/// Removes the cluster's cgroups, containers' below them first, waiting a
/// little for the processes just killed to leave them.
pub fn remove_cgroups(problems: &mut Vec<String>) {
    let deadline = Instant::now() + EMPTY_LIMIT;
    for top in cluster_cgroups() {
        for c in subtree(&top) {
            loop {
                match std::fs::remove_dir(&c) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() > deadline => {
                        problems.push(format!("removing cgroup {}: {e}", c.display()));
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

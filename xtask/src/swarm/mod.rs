//! The multi-node Docker Swarm test cluster (`cargo xtask swarm-up|swarm-down|swarm-test`):
//! arguments, dispatch, and the layout (paths, names, addresses) every step shares.
//!
//! Each node is a `dockerd` of its own (data-root, exec-root, pidfile, socket,
//! cgroup parent) in a network namespace of its own, wired by a veth pair to a
//! bridge in a further namespace, so the cluster's addresses never reach the
//! host's network. The names below are a contract with the swarm backend's
//! tests (crates/orchestrator-docker, crates/runbox-cli), which read
//! `$DIR/cluster.env` and kill, restart and cut off nodes by these names.

mod cgroups;
mod cluster;
mod image;
mod interrupt;
mod mounts;
mod net;
mod node;
mod procs;
mod teardown;
mod test;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where the cluster lives unless `RUNBOX_SWARM_DIR` says otherwise.
const DEFAULT_DIR: &str = "/run/runbox-swarm";
/// Prefix of every name the cluster gives to host objects (network
/// namespaces, cgroups, hostnames), so teardown and its check find them all.
pub const PREFIX: &str = "runbox-swarm-";
/// Swarm managers: the first nodes, up to three (a quorum surviving one loss).
const MAX_MANAGERS: usize = 3;
/// Node i gets 10.213.0.(10+i); the cap keeps the last octet valid and the
/// cluster within what one machine runs.
const MAX_NODES: usize = 20;
/// The file marking `$DIR` as made by swarm-up: teardown deletes `$DIR`
/// recursively, so it must never take over a directory it did not make.
const MARKER: &str = ".runbox-swarm";

/// Paths of the cluster, all under one directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    /// `$RUNBOX_SWARM_DIR` or [`DEFAULT_DIR`]. Only plain absolute paths are
    /// taken: they go unquoted into start.sh, daemon.json and cluster.env,
    /// and the whole directory is removed on teardown.
    pub fn from_env() -> Result<Self> {
        let dir = std::env::var("RUNBOX_SWARM_DIR")
            .ok()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| DEFAULT_DIR.into());
        let plain = dir
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
        let dir = PathBuf::from(dir.trim_end_matches('/'));
        let dotted = dir
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir));
        if !plain || !dir.is_absolute() || dir.components().count() < 3 || dotted {
            bail!(
                "RUNBOX_SWARM_DIR={} must be an absolute path at least two levels deep, of letters, digits and /._- only",
                dir.display()
            );
        }
        Ok(Self { dir })
    }

    pub fn node(&self, index: usize) -> Node {
        Node {
            index,
            dir: self.dir.join(format!("n{index}")),
        }
    }

    pub fn cluster_env(&self) -> PathBuf {
        self.dir.join("cluster.env")
    }

    pub fn marker(&self) -> PathBuf {
        self.dir.join(MARKER)
    }

    /// An existing empty `$DIR`.
    pub fn is_empty(&self) -> bool {
        std::fs::read_dir(&self.dir).is_ok_and(|mut d| d.next().is_none())
    }

    /// Fails when `$DIR` holds something swarm-up did not make (no marker,
    /// not empty): the teardown would unmount, kill and delete in it.
    pub fn check_ours(&self) -> Result<()> {
        if self.dir.exists() && !self.marker().exists() && !self.is_empty() {
            bail!(
                "{} exists and was not made by swarm-up (no {} in it): not touching it; remove it or set RUNBOX_SWARM_DIR",
                self.dir.display(),
                self.marker().display()
            );
        }
        Ok(())
    }

    /// The `$DIR` string processes' command lines are matched against.
    pub fn dir_str(&self) -> String {
        self.dir.display().to_string()
    }
}

/// One node's names and paths (1-based index).
#[derive(Debug, Clone)]
pub struct Node {
    pub index: usize,
    pub dir: PathBuf,
}

impl Node {
    /// Hostname, network namespace and cgroup parent all carry this name.
    pub fn name(&self) -> String {
        format!("{PREFIX}n{}", self.index)
    }
    pub fn netns(&self) -> String {
        self.name()
    }
    /// The bridge-side veth end, inside the bridge namespace.
    pub fn link(&self) -> String {
        format!("rbsw-n{}", self.index)
    }
    /// Absolute, so every hierarchy has it at its root whatever cgroup the
    /// caller runs in (a relative parent lands below the daemon's own cgroup).
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.name())
    }
    pub fn addr(&self) -> String {
        format!("10.213.0.{}", 10 + self.index)
    }
    pub fn sock(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.sock().display())
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("docker.pid")
    }
    pub fn daemon_json(&self) -> PathBuf {
        self.dir.join("daemon.json")
    }
    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("dockerd.log")
    }
    pub fn start_sh(&self) -> PathBuf {
        self.dir.join("start.sh")
    }
    /// Swarm role: the first [`MAX_MANAGERS`] nodes manage.
    pub fn is_manager(&self) -> bool {
        self.index <= MAX_MANAGERS
    }
}

/// `swarm-up [--nodes N]`.
pub fn swarm_up(args: &[String]) -> Result<()> {
    let nodes = parse_nodes(args, "swarm-up")?;
    let layout = Layout::from_env()?;
    layout.check_ours()?;
    teardown::refuse_foreign(&layout)?;
    // Outside `guarded`: a refusal must not tear the live cluster down.
    cluster::refuse_live(&layout)?;
    interrupt::install()?;
    let managers = guarded(&layout, || cluster::up(&layout, nodes))?;
    println!("export RUNBOX_SWARM_MANAGERS={managers}");
    Ok(())
}

/// `swarm-down`.
pub fn swarm_down(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("swarm-down takes no arguments");
    }
    let layout = Layout::from_env()?;
    layout.check_ours()?;
    teardown::refuse_foreign(&layout)?;
    // Only so that a Ctrl-C cannot cut the teardown short: it is bounded.
    interrupt::install()?;
    teardown::down(&layout)
}

/// `swarm-test [--nodes N]`.
pub fn swarm_test(args: &[String]) -> Result<()> {
    let nodes = parse_nodes(args, "swarm-test")?;
    let layout = Layout::from_env()?;
    layout.check_ours()?;
    teardown::refuse_foreign(&layout)?;
    interrupt::install()?;
    test::swarm_test(&layout, nodes)
}

/// Runs `cmd` against a fresh three-node cluster, torn down afterwards
/// whatever happens (see `test::with_cluster`).
pub fn run_with_cluster(cmd: Command, label: &str) -> Result<()> {
    let layout = Layout::from_env()?;
    layout.check_ours()?;
    teardown::refuse_foreign(&layout)?;
    interrupt::install()?;
    test::with_cluster(&layout, 3, cmd, label)
}

fn parse_nodes(args: &[String], task: &str) -> Result<usize> {
    let mut nodes = 3;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--nodes" => {
                let n = it.next().context("--nodes needs a number")?;
                nodes = n
                    .parse()
                    .with_context(|| format!("--nodes {n:?} is not a number"))?;
            }
            other => bail!("unknown argument {other:?}; usage: cargo xtask {task} [--nodes N]"),
        }
    }
    if !(1..=MAX_NODES).contains(&nodes) {
        bail!("--nodes must be 1 to {MAX_NODES}");
    }
    Ok(nodes)
}

/// Runs `f`, tearing the cluster down if it fails or panics, so that a
/// failed swarm-up leaves nothing behind.
fn guarded<T>(layout: &Layout, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let err = match outcome {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(e)) => e,
        Err(_) => anyhow::anyhow!("swarm-up panicked"),
    };
    eprintln!("xtask swarm: swarm-up failed: {err:#}; tearing down what it made");
    if let Err(d) = teardown::down(layout) {
        return Err(err.context(format!("and the teardown after it failed too: {d:#}")));
    }
    Err(err)
}

/// A command in a process group of its own: a Ctrl-C at the terminal then
/// reaches xtask alone, which stops the work in order and tears down,
/// instead of killing whichever step happened to run.
pub fn command(program: &str) -> Command {
    let mut c = Command::new(program);
    c.process_group(0);
    c
}

/// The docker CLI talking to one node (and nothing the caller's
/// environment points at).
pub fn docker(node: &Node) -> Command {
    let mut c = command("docker");
    c.env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .arg("-H")
        .arg(node.endpoint());
    c
}

/// Runs a command to completion within `limit`, returning its stdout;
/// stops it (and fails) when xtask is interrupted. The error carries its
/// stderr.
pub fn capture(cmd: &mut Command, limit: Duration) -> Result<String> {
    run_captured(cmd, limit, true)
}

/// [`capture`] that an interruption does not stop: for the teardown, which
/// must finish.
pub fn capture_to_end(cmd: &mut Command, limit: Duration) -> Result<String> {
    run_captured(cmd, limit, false)
}

fn run_captured(cmd: &mut Command, limit: Duration, interruptible: bool) -> Result<String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    // Read both pipes while waiting: a child filling one would block.
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .map(|pipe| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        let stop = if interruptible && interrupt::requested() {
            Some("interrupted".to_string())
        } else if Instant::now() > deadline {
            Some(format!("no result within {limit:?}"))
        } else {
            None
        };
        if let Some(why) = stop {
            procs::kill_group(child.id());
            let _ = child.wait();
            bail!("{what}: {why}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let [out, err] = readers.map(|r| r.join().unwrap_or_default());
    if !status.success() {
        bail!("{what} failed ({status}): {}", err.trim());
    }
    Ok(out)
}

/// Writes a file whole or not at all (a reader never sees half of it).
pub fn write_atomic(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))
}

/// `1.2 s`, for the logs.
pub fn secs(since: Instant) -> String {
    format!("{:.1} s", since.elapsed().as_secs_f64())
}

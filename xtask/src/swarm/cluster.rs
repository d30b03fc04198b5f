//! swarm-up's sequence: namespaces, daemons, the test image on every node
//! (image.rs), swarm init/join/promote, endpoint labels, the wait for a Ready cluster,
//! and `$DIR/cluster.env`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use orchestrator_docker::TEST_IMAGE;

use super::{
    capture, docker, image, interrupt, net, node, secs, teardown, write_atomic, Layout, Node,
};

/// The label through which the backend reaches a node's own daemon.
const ENDPOINT_LABEL: &str = "io.runbox.endpoint";
/// How long a formed cluster may take to report every node Ready.
const READY_LIMIT: Duration = Duration::from_secs(60);
const DOCKER_LIMIT: Duration = Duration::from_secs(30);

/// Builds a fresh cluster of `count` nodes (tearing leftovers down first;
/// the caller has checked [`refuse_live`]); returns the managers'
/// endpoints, comma-separated.
pub fn up(layout: &Layout, count: usize) -> Result<String> {
    let t0 = Instant::now();
    crate::ensure_packages(&["busybox-static"])?;
    // start.sh needs timeout and pgrep; teardown needs kill and umount.
    for tool in [
        "dockerd", "docker", "ip", "nsenter", "unshare", "setsid", "timeout", "pgrep", "kill",
        "umount",
    ] {
        capture(
            super::command("sh").args(["-c", &format!("command -v {tool}")]),
            DOCKER_LIMIT,
        )
        .with_context(|| format!("{tool} is needed and is not on PATH"))?;
    }
    let left = teardown::leftovers(layout);
    if !left.is_empty() {
        eprintln!(
            "xtask swarm: leftovers of an earlier cluster ({}); tearing them down first",
            left.summary()
        );
        teardown::down(layout)?;
    }
    make_dir(layout)?;
    let nodes: Vec<Node> = (1..=count).map(|i| layout.node(i)).collect();
    net::create_bridge()?;
    for n in &nodes {
        interrupt::check()?;
        net::create_node(n)?;
        node::write_files(n)?;
    }
    interrupt::check()?;
    node::start_all(&nodes)?;
    interrupt::check()?;
    // The image can mean a slow build (about a second per step here) and
    // needs no swarm: it comes while the swarm forms.
    let (loaded, formed) = std::thread::scope(|s| {
        let loaded = s.spawn(|| image::load(&image::save(layout, &nodes[0])?, &nodes));
        let formed = form(&nodes);
        let loaded = loaded
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("getting the test image panicked")));
        (loaded, formed)
    });
    formed?;
    loaded?;
    let managers = write_env(layout, &nodes)?;
    eprintln!(
        "xtask swarm: {count}-node swarm up in {} ({}); variables in {}",
        secs(t0),
        layout.dir.display(),
        layout.cluster_env().display()
    );
    Ok(managers)
}

/// Fails when a cluster is up: cluster.env (written last) is there and a
/// node's daemon answers. Someone may be testing against it (a test may
/// have just killed one node), so it is left alone rather than torn down;
/// anything less is a leftover.
pub fn refuse_live(layout: &Layout) -> Result<()> {
    let Ok(env) = read_env(layout) else {
        return Ok(());
    };
    let count: usize = env
        .iter()
        .find(|(k, _)| k == "RUNBOX_SWARM_NODE_COUNT")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let answering = (1..=count)
        .filter(|&i| {
            capture(
                docker(&layout.node(i)).args(["version", "--format", "{{.Server.Version}}"]),
                Duration::from_secs(5),
            )
            .is_ok()
        })
        .count();
    if answering > 0 {
        bail!(
            "a swarm test cluster is already up at {} ({answering} of {count} nodes \
             answering) and may be in use; run `cargo xtask swarm-down` first",
            layout.dir.display()
        );
    }
    Ok(())
}

/// Creates `$DIR` (or takes it empty) with its marker, which lets the
/// teardown remove it whole.
fn make_dir(layout: &Layout) -> Result<()> {
    let dir = &layout.dir;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && layout.is_empty() => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    std::fs::write(
        layout.marker(),
        "made by cargo xtask swarm-up; removed with this directory by swarm-down\n",
    )
    .context("writing the marker")
}

fn run(cmd: &mut std::process::Command) -> Result<String> {
    interrupt::check()?;
    capture(cmd, DOCKER_LIMIT).map(|s| s.trim().to_string())
}

/// Init on node 1, joins, promotions, labels, then the wait for Ready.
fn form(nodes: &[Node]) -> Result<()> {
    let t0 = Instant::now();
    let first = &nodes[0];
    let listen = |n: &Node| format!("{}:2377", n.addr());
    run(docker(first)
        .args(["swarm", "init", "--advertise-addr"])
        .arg(first.addr())
        .arg("--listen-addr")
        .arg(listen(first)))?;
    let token = run(docker(first).args(["swarm", "join-token", "-q", "worker"]))?;
    for n in &nodes[1..] {
        run(docker(n)
            .args(["swarm", "join", "--token", &token, "--advertise-addr"])
            .arg(n.addr())
            .arg("--listen-addr")
            .arg(listen(n))
            .arg(listen(first)))
        .with_context(|| format!("joining {}", n.name()))?;
    }
    let mut ids = BTreeMap::new();
    for n in nodes {
        let id = run(docker(n).args(["info", "--format", "{{.Swarm.NodeID}}"]))?;
        if id.is_empty() {
            bail!("{} has no swarm node id after joining", n.name());
        }
        ids.insert(n.index, id);
    }
    let promote: Vec<&String> = nodes[1..]
        .iter()
        .filter(|n| n.is_manager())
        .map(|n| &ids[&n.index])
        .collect();
    if !promote.is_empty() {
        run(docker(first).args(["node", "promote"]).args(promote))?;
    }
    for n in nodes {
        run(docker(first)
            .args(["node", "update", "--label-add"])
            .arg(format!("{ENDPOINT_LABEL}={}", n.endpoint()))
            .arg(&ids[&n.index]))?;
    }
    wait_ready(nodes)?;
    eprintln!("xtask swarm: swarm formed in {}", secs(t0));
    Ok(())
}

/// Waits until every manager sees every node Ready and Active, and the
/// managers as Leader or Reachable.
fn wait_ready(nodes: &[Node]) -> Result<()> {
    let managers: Vec<&Node> = nodes.iter().filter(|n| n.is_manager()).collect();
    let deadline = Instant::now() + READY_LIMIT;
    let mut last = String::new();
    loop {
        interrupt::check()?;
        let mut ok = true;
        for m in &managers {
            match capture(
                docker(m).args([
                    "node",
                    "ls",
                    "--format",
                    "{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}",
                ]),
                DOCKER_LIMIT,
            ) {
                Ok(out) => {
                    if !ready(&out, nodes) {
                        ok = false;
                        last = format!("{} sees:\n{}", m.name(), out.trim());
                    }
                }
                Err(e) => {
                    ok = false;
                    last = format!("{e:#}");
                }
            }
        }
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the swarm was not Ready within {READY_LIMIT:?}; last: {last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// True when `node ls` output shows exactly our nodes, all Ready and
/// Active, managers Leader/Reachable and workers without a manager status.
fn ready(node_ls: &str, nodes: &[Node]) -> bool {
    let rows: BTreeMap<&str, Vec<&str>> = node_ls
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.collect()))
        })
        .collect();
    rows.len() == nodes.len()
        && nodes.iter().all(|n| {
            let Some(f) = rows.get(n.name().as_str()) else {
                return false;
            };
            let role_ok = match f.get(2) {
                Some(&"Leader") | Some(&"Reachable") => n.is_manager(),
                None => !n.is_manager(),
                Some(_) => false,
            };
            f.first() == Some(&"Ready") && f.get(1) == Some(&"Active") && role_ok
        })
}

/// Writes `$DIR/cluster.env` (last, so its presence means a whole
/// cluster); returns the managers' endpoints.
fn write_env(layout: &Layout, nodes: &[Node]) -> Result<String> {
    let managers: Vec<String> = nodes
        .iter()
        .filter(|n| n.is_manager())
        .map(|n| n.endpoint())
        .collect();
    let managers = managers.join(",");
    // The image is the backend's default image for the cluster (every node
    // holds it; see docs/scale-out.md).
    let mut env = format!(
        "RUNBOX_SWARM_MANAGERS={managers}\nRUNBOX_SWARM_IMAGE={TEST_IMAGE}\nRUNBOX_SWARM_NODE_COUNT={}\n",
        nodes.len()
    );
    for n in nodes {
        let i = n.index;
        let vars = [
            ("HOSTNAME", n.name()),
            ("SOCKET", n.endpoint()),
            ("PIDFILE", n.pidfile().display().to_string()),
            ("NETNS", n.netns()),
            ("LINK", n.link()),
            ("START", n.start_sh().display().to_string()),
            ("CGROUP_PARENT", n.cgroup_parent()),
        ];
        for (k, v) in vars {
            env.push_str(&format!("RUNBOX_SWARM_NODE_{i}_{k}={v}\n"));
        }
    }
    write_atomic(&layout.cluster_env(), &env)?;
    Ok(managers)
}

/// The variables of `$DIR/cluster.env`.
pub fn read_env(layout: &Layout) -> Result<Vec<(String, String)>> {
    let path = layout.cluster_env();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

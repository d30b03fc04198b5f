//! The cluster's network: a namespace per node, each with `eth0` wired by a
//! veth pair to the bridge `rbsw0` in the namespace `runbox-swarm-br`.
//!
//! The bridge lives in a namespace of its own rather than on the host so the
//! cluster's 10.213.0.0/24 exists nowhere on the host, and so tests can cut
//! one node off (`ip -n runbox-swarm-br link set rbsw-nI down`) without
//! touching the others.

use std::time::Duration;

use anyhow::{Context, Result};

use super::{capture, capture_to_end, command, Node, PREFIX};

/// The namespace holding the bridge.
pub const BRIDGE_NS: &str = "runbox-swarm-br";
const BRIDGE: &str = "rbsw0";
/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

fn ip(args: &[&str]) -> Result<()> {
    capture(command("ip").args(args), Duration::from_secs(10)).map(drop)
}

/// Creates the bridge namespace with its bridge up.
pub fn create_bridge() -> Result<()> {
    ip(&["netns", "add", BRIDGE_NS])?;
    ip(&["-n", BRIDGE_NS, "link", "set", "lo", "up"])?;
    ip(&["-n", BRIDGE_NS, "link", "add", BRIDGE, "type", "bridge"])?;
    ip(&["-n", BRIDGE_NS, "link", "set", BRIDGE, "up"]).context("creating the cluster's bridge")
}

/// Creates a node's namespace, wired to the bridge, with its address.
pub fn create_node(node: &Node) -> Result<()> {
    let ns = node.netns();
    let link = node.link();
    let addr = format!("{}/24", node.addr());
    ip(&["netns", "add", &ns])?;
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    // Made inside the bridge namespace with the peer sent straight into
    // the node's: neither end ever exists on the host, where `eth0` is taken.
    ip(&[
        "-n", BRIDGE_NS, "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ])?;
    ip(&[
        "-n", BRIDGE_NS, "link", "set", &link, "master", BRIDGE, "up",
    ])?;
    ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])
        .with_context(|| format!("wiring {ns} to the bridge"))
}

/// The cluster's named network namespaces that exist now.
pub fn namespaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    names.sort();
    names
}

/// Deletes a named namespace (its veth ends go with it); not stopped by
/// SIGINT/SIGTERM, being part of the teardown.
pub fn delete(name: &str) -> Result<()> {
    capture_to_end(
        command("ip").args(["netns", "delete", name]),
        Duration::from_secs(10),
    )
    .map(drop)
}

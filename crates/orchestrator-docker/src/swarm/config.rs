//! [`SwarmConfig`]: the managers to ask, how each node's daemon is reached,
//! the deadlines of a swarm workspace's life, and where they come from
//! (settings, the environment, the test cluster's file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orchestrator_core::{BackendOptions, Error, IsolationMode, NetworkMode, Result};

use crate::config::DockerConfig;

/// The node label naming a node's daemon endpoint unless configured
/// otherwise (`docker node update --label-add io.runbox.endpoint=... NODE`).
pub const ENDPOINT_LABEL: &str = "io.runbox.endpoint";
/// The spec label holding placement constraints, `;`-separated Swarm
/// constraint expressions (`node.hostname==n2;node.labels.disk==ssd`).
pub const LABEL_CONSTRAINTS: &str = "io.runbox.swarm.constraints";
/// Label on a swarm workspace's service and container naming the backend.
pub const LABEL_BACKEND: &str = "io.runbox.backend";
/// The file `cargo xtask swarm-up` writes, read by [`SwarmConfig::from_env`]
/// when the environment names no managers.
pub const CLUSTER_FILE: &str = "/run/runbox-swarm/cluster.env";

/// Configuration of a [`crate::SwarmOrchestrator`].
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// How containers are made and reached: image, labels, network mode,
    /// `/tmp` caps, isolation asked for and the request and transfer
    /// deadlines, as for the docker backend. Its `host` is the manager when
    /// [`SwarmConfig::managers`] is empty.
    pub docker: DockerConfig,
    /// Manager daemons, tried in turn (failover): `unix://...`, `tcp://...`.
    pub managers: Vec<String>,
    /// Node daemon endpoints by node hostname or node id; a node not named
    /// here is reached through its [`SwarmConfig::endpoint_label`].
    pub nodes: BTreeMap<String, String>,
    /// The node label that names a node's endpoint.
    pub endpoint_label: String,
    /// How long a new workspace may take until its task runs.
    pub start_timeout: Duration,
    /// How long cleanup waits for the container to be gone from its node.
    pub remove_timeout: Duration,
    /// How long a manager request is retried across managers (leader
    /// elections take about 11 s).
    pub failover_timeout: Duration,
    /// How often the managers are asked whether the nodes of live
    /// workspaces are still ready.
    pub node_check_interval: Duration,
    /// The stop grace period of a workspace's container (its init ends it
    /// on SIGTERM; a short grace keeps `service rm` short).
    pub stop_grace: Duration,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            docker: DockerConfig::default(),
            managers: Vec::new(),
            nodes: BTreeMap::new(),
            endpoint_label: ENDPOINT_LABEL.to_string(),
            start_timeout: Duration::from_secs(60),
            remove_timeout: Duration::from_secs(30),
            failover_timeout: Duration::from_secs(30),
            node_check_interval: Duration::from_secs(1),
            stop_grace: Duration::from_secs(1),
        }
    }
}

impl SwarmConfig {
    /// The defaults (see the field docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults, adjusted from the environment: the docker settings
    /// of [`DockerConfig::from_env`], `RUNBOX_SWARM_MANAGERS` (comma
    /// separated endpoints), `RUNBOX_SWARM_NODES` (`NODE=ENDPOINT,...`),
    /// `RUNBOX_SWARM_IMAGE` (default image). When no managers are named,
    /// the file `RUNBOX_SWARM_FILE` (default [`CLUSTER_FILE`], written by
    /// `cargo xtask swarm-up`) supplies those keys if it exists; else the
    /// manager is the docker host (`DOCKER_HOST` or the local socket).
    pub fn from_env() -> Self {
        let mut c = Self {
            docker: DockerConfig::from_env(),
            ..Self::default()
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        if env("RUNBOX_SWARM_MANAGERS").is_none() {
            let file =
                env("RUNBOX_SWARM_FILE").map_or_else(|| PathBuf::from(CLUSTER_FILE), PathBuf::from);
            values = read_env_file(&file);
        }
        for k in [
            "RUNBOX_SWARM_MANAGERS",
            "RUNBOX_SWARM_NODES",
            "RUNBOX_SWARM_IMAGE",
        ] {
            if let Some(v) = env(k) {
                values.insert(k.to_string(), v);
            }
        }
        if let Some(m) = values.get("RUNBOX_SWARM_MANAGERS") {
            c.managers = split_list(m);
        }
        if let Some(n) = values.get("RUNBOX_SWARM_NODES") {
            // A malformed entry is reported by the registry factory
            // (`config_from_options`); here it names no node.
            c.nodes = parse_nodes(n).unwrap_or_default();
        }
        if let Some(i) = values.get("RUNBOX_SWARM_IMAGE") {
            c.docker.default_image = Some(i.clone());
        }
        c
    }

    /// Sets the manager endpoints.
    pub fn managers<S: Into<String>>(mut self, managers: impl IntoIterator<Item = S>) -> Self {
        self.managers = managers.into_iter().map(Into::into).collect();
        self
    }
    /// Names the daemon endpoint of a node (by hostname or id).
    pub fn node(mut self, node: impl Into<String>, endpoint: impl Into<String>) -> Self {
        self.nodes.insert(node.into(), endpoint.into());
        self
    }
    /// Sets the node label naming endpoints.
    pub fn endpoint_label(mut self, label: impl Into<String>) -> Self {
        self.endpoint_label = label.into();
        self
    }
    /// Sets the docker settings (image, network, deadlines, ...).
    pub fn docker(mut self, docker: DockerConfig) -> Self {
        self.docker = docker;
        self
    }
    /// Sets how long a workspace may take until its task runs.
    pub fn start_timeout(mut self, d: Duration) -> Self {
        self.start_timeout = d;
        self
    }
    /// Sets how often node readiness is checked.
    pub fn node_check_interval(mut self, d: Duration) -> Self {
        self.node_check_interval = d;
        self
    }
    /// Sets how long manager requests are retried across managers.
    pub fn failover_timeout(mut self, d: Duration) -> Self {
        self.failover_timeout = d;
        self
    }

    /// The managers to ask: the configured ones, else the docker host.
    pub(crate) fn manager_endpoints(&self) -> Vec<String> {
        if self.managers.is_empty() {
            vec![self.docker.host_description()]
        } else {
            self.managers.clone()
        }
    }

    /// The docker settings with `host` set to `endpoint`.
    pub(crate) fn docker_at(&self, endpoint: &str) -> DockerConfig {
        self.docker.clone().host(endpoint)
    }
}

/// `a, b,c` → `[a, b, c]` (empty parts dropped).
fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// `NODE=ENDPOINT,...` → the map; an entry without `=` is InvalidInput.
pub(crate) fn parse_nodes(s: &str) -> Result<BTreeMap<String, String>> {
    let mut nodes = BTreeMap::new();
    for part in split_list(s) {
        let Some((node, endpoint)) = part.split_once('=') else {
            return Err(Error::invalid(format!(
                "swarm node endpoint {part:?} is not NODE=ENDPOINT"
            )));
        };
        let (node, endpoint) = (node.trim(), endpoint.trim());
        if node.is_empty() || endpoint.is_empty() {
            return Err(Error::invalid(format!(
                "swarm node endpoint {part:?} is not NODE=ENDPOINT"
            )));
        }
        nodes.insert(node.to_string(), endpoint.to_string());
    }
    Ok(nodes)
}

/// `KEY=VALUE` lines of a file (`export ` prefixes, blanks and `#`
/// comments allowed); nothing when it cannot be read.
fn read_env_file(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

/// The registry's settings: `managers` (comma separated), `nodes`
/// (`NODE=ENDPOINT,...`), `endpoint_label`, `network` (`none` or `host`)
/// and `isolation` (`auto`, `full`, `none`: containers are always
/// isolated).
pub(crate) const SETTINGS: &[&str] = &[
    "managers",
    "nodes",
    "endpoint_label",
    "network",
    "isolation",
];

/// [`SwarmConfig::from_env`], then the registry's options (`image`, the
/// [`SETTINGS`]); a warm pool or an unknown setting is InvalidInput.
pub(crate) fn config_from_options(options: &BackendOptions) -> Result<SwarmConfig> {
    let name = super::BACKEND_NAME;
    options.check(name, SETTINGS, false)?;
    let mut config = SwarmConfig::from_env();
    if let Ok(n) = std::env::var("RUNBOX_SWARM_NODES") {
        parse_nodes(&n)?;
    }
    if let Some(image) = &options.image {
        config.docker = config.docker.default_image(image.clone());
    }
    let s = &options.settings;
    if let Some(m) = s.get("managers") {
        config.managers = split_list(m);
    }
    if let Some(n) = s.get("nodes") {
        config.nodes = parse_nodes(n)?;
    }
    if let Some(l) = s.get("endpoint_label") {
        config.endpoint_label = l.clone();
    }
    if let Some(n) = s.get("network") {
        let n: NetworkMode = n
            .parse()
            .map_err(|e| Error::invalid(format!("backend {name}: {e}")))?;
        config.docker = config.docker.network_mode(n.as_str());
    }
    if let Some(m) = s.get("isolation") {
        let m: IsolationMode = m
            .parse()
            .map_err(|e| Error::invalid(format!("backend {name}: {e}")))?;
        config.docker = config.docker.isolation(m);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_maps_parse_and_reject_malformed_entries() {
        let m = parse_nodes("n1=unix:///a.sock, n2 = tcp://10.0.0.2:2376").expect("parse");
        assert_eq!(m["n1"], "unix:///a.sock");
        assert_eq!(m["n2"], "tcp://10.0.0.2:2376");
        for bad in ["n1", "=unix:///a", "n1="] {
            assert!(
                matches!(parse_nodes(bad), Err(Error::InvalidInput(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn settings_override_and_unknown_ones_are_refused() {
        let c = config_from_options(
            &BackendOptions::new()
                .setting("managers", "unix:///m1.sock,unix:///m2.sock")
                .setting("nodes", "a=unix:///a.sock")
                .setting("network", "host"),
        )
        .expect("config");
        assert_eq!(c.managers, ["unix:///m1.sock", "unix:///m2.sock"]);
        assert_eq!(c.manager_endpoints(), c.managers);
        assert_eq!(c.nodes["a"], "unix:///a.sock");
        assert_eq!(c.docker.network_mode, "host");
        assert!(matches!(
            config_from_options(&BackendOptions::new().setting("host", "x")),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            config_from_options(&BackendOptions::new().pool_size(2)),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn the_cluster_file_is_read_as_key_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("cluster.env");
        std::fs::write(
            &f,
            "# test cluster\nexport RUNBOX_SWARM_MANAGERS=unix:///x.sock,unix:///y.sock\nRUNBOX_SWARM_IMAGE=\"img:1\"\n",
        )
        .expect("write");
        let v = read_env_file(&f);
        assert_eq!(v["RUNBOX_SWARM_MANAGERS"], "unix:///x.sock,unix:///y.sock");
        assert_eq!(v["RUNBOX_SWARM_IMAGE"], "img:1");
        assert!(read_env_file(&dir.path().join("missing")).is_empty());
    }
}

//! The swarm's nodes as this backend sees them: their readiness, the
//! daemon endpoint of each (configured by hostname or id, else the node's
//! endpoint label) and a negotiated client per endpoint.

use std::collections::HashMap;
use std::sync::Mutex;

use bollard::models::{Node, NodeState};
use bollard::query_parameters::ListNodesOptions;
use bollard::Docker;

use super::config::SwarmConfig;
use super::manager::Managers;
use crate::client::negotiated;
use crate::container::lock;
use crate::error::DockerOrchestratorError as E;

/// One node, as the managers list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node's id.
    pub id: String,
    /// Its hostname.
    pub hostname: String,
    /// Whether the managers see it ready.
    pub ready: bool,
    /// Whether the managers see it down or disconnected (not merely
    /// `unknown`, which every node is for a while after a leader change).
    pub down: bool,
    /// Its state (`ready`, `down`, `unknown`, `disconnected`) and message.
    pub state: String,
    /// Whether it takes new tasks (`active`, not `pause` or `drain`).
    pub active: bool,
    /// Whether it is drained (its tasks are shut down; paused keeps them).
    pub drained: bool,
    /// The endpoint its node label names, if it has one.
    pub label_endpoint: Option<String>,
}

impl NodeView {
    pub(crate) fn of(node: &Node, endpoint_label: &str) -> Self {
        let state = node.status.as_ref().and_then(|s| s.state);
        let message = node
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .filter(|m| !m.is_empty());
        let spec = node.spec.as_ref();
        Self {
            id: node.id.clone().unwrap_or_default(),
            hostname: node
                .description
                .as_ref()
                .and_then(|d| d.hostname.clone())
                .unwrap_or_default(),
            ready: state == Some(NodeState::READY),
            down: matches!(state, Some(NodeState::DOWN | NodeState::DISCONNECTED)),
            state: match (state, message) {
                (Some(s), Some(m)) => format!("{s} ({m})"),
                (Some(s), None) => s.to_string(),
                (None, _) => "unknown".into(),
            },
            active: spec
                .and_then(|s| s.availability)
                .is_none_or(|a| a == bollard::models::NodeSpecAvailabilityEnum::ACTIVE),
            drained: spec.and_then(|s| s.availability)
                == Some(bollard::models::NodeSpecAvailabilityEnum::DRAIN),
            label_endpoint: spec
                .and_then(|s| s.labels.as_ref())
                .and_then(|l| l.get(endpoint_label).cloned())
                .filter(|e| !e.trim().is_empty()),
        }
    }

    /// `HOSTNAME (ID)`, for messages.
    pub fn name(&self) -> String {
        let short: String = self.id.chars().take(12).collect();
        if self.hostname.is_empty() {
            short
        } else {
            format!("{} ({short})", self.hostname)
        }
    }
}

/// How node daemons are reached.
#[derive(Debug)]
pub(crate) struct Endpoints {
    config: SwarmConfig,
    clients: Mutex<HashMap<String, Docker>>,
}

impl Endpoints {
    pub fn new(config: &SwarmConfig) -> Self {
        Self {
            config: config.clone(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoint of `node`: configured by id, then by hostname, then
    /// its endpoint label; NoEndpoint (Unavailable) naming the node and
    /// the two ways to set one otherwise.
    pub fn endpoint_of(&self, node: &NodeView) -> Result<String, E> {
        let configured = self
            .config
            .nodes
            .get(&node.id)
            .or_else(|| self.config.nodes.get(&node.hostname));
        if let Some(e) = configured.or(node.label_endpoint.as_ref()) {
            return Ok(e.clone());
        }
        Err(E::NoEndpoint {
            node: node.name(),
            hint: format!(
                "name it in the configuration (RUNBOX_SWARM_NODES={}=unix:///... or tcp://...) \
                 or label the node (docker node update --label-add {}=ENDPOINT {})",
                if node.hostname.is_empty() {
                    &node.id
                } else {
                    &node.hostname
                },
                self.config.endpoint_label,
                node.id
            ),
        })
    }

    /// A negotiated client of `endpoint` (negotiated once, then shared).
    pub async fn client(&self, endpoint: &str) -> Result<Docker, E> {
        if let Some(c) = lock(&self.clients).get(endpoint) {
            return Ok(c.clone());
        }
        let c = negotiated(
            &self.config.docker_at(endpoint),
            self.config.docker.request_timeout,
        )
        .await?;
        lock(&self.clients).insert(endpoint.to_string(), c.clone());
        Ok(c)
    }
}

/// Every node of the swarm.
pub(crate) async fn list(managers: &Managers, endpoint_label: &str) -> Result<Vec<NodeView>, E> {
    let nodes = managers
        .call("list nodes", |d| async move {
            d.list_nodes(None::<ListNodesOptions>).await
        })
        .await?;
    Ok(nodes
        .iter()
        .map(|n| NodeView::of(n, endpoint_label))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{NodeDescription, NodeSpec, NodeStatus};

    fn node(id: &str, host: &str, state: NodeState, label: Option<&str>) -> NodeView {
        let n = Node {
            id: Some(id.into()),
            description: Some(NodeDescription {
                hostname: Some(host.into()),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: Some(state),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                labels: label
                    .map(|l| HashMap::from([("io.runbox.endpoint".to_string(), l.to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        };
        NodeView::of(&n, "io.runbox.endpoint")
    }

    #[test]
    fn endpoints_come_from_the_id_the_hostname_then_the_label() {
        let config = SwarmConfig::new()
            .node("id-a", "unix:///by-id.sock")
            .node("host-b", "unix:///by-host.sock");
        let e = Endpoints::new(&config);
        let a = node(
            "id-a",
            "host-a",
            NodeState::READY,
            Some("unix:///label-a.sock"),
        );
        let b = node("id-b", "host-b", NodeState::READY, None);
        let c = node(
            "id-c",
            "host-c",
            NodeState::DOWN,
            Some("unix:///label-c.sock"),
        );
        assert_eq!(e.endpoint_of(&a).expect("a"), "unix:///by-id.sock");
        assert_eq!(e.endpoint_of(&b).expect("b"), "unix:///by-host.sock");
        assert_eq!(e.endpoint_of(&c).expect("c"), "unix:///label-c.sock");
        assert!(a.ready && !c.ready && c.down && !a.down, "{a:?} {c:?}");
        let u = node("id-u", "host-u", NodeState::UNKNOWN, None);
        assert!(!u.ready && !u.down, "unknown is not down: {u:?}");
        let d = node("id-d", "host-d", NodeState::READY, None);
        let err = e.endpoint_of(&d).expect_err("no endpoint");
        let msg = err.to_string();
        assert!(
            msg.contains("host-d") && msg.contains("RUNBOX_SWARM_NODES"),
            "{msg}"
        );
        assert!(matches!(
            orchestrator_core::Error::from(err),
            orchestrator_core::Error::Unavailable { .. }
        ));
    }
}

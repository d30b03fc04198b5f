//! The node watcher: while a backend holds workspaces, it asks the
//! managers every `node_check_interval` whether their nodes are still
//! ready, and marks the workspaces of a node that is not (down,
//! disconnected, drained, gone; `unknown` after a leader change and a
//! paused node are not losses) as lost, for good: the swarm shuts such a
//! task down when its node returns.

use std::collections::HashMap;
use std::sync::Weak;

use super::{nodes, Shared};
use crate::container::lock;

/// Runs until the backend is gone.
pub(crate) async fn run(shared: Weak<Shared>) {
    loop {
        let Some(interval) = shared.upgrade().map(|s| s.config.node_check_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(s) = shared.upgrade() else {
            return;
        };
        check(&s).await;
    }
}

/// One round: the managers' view of the watched nodes, and the losses.
async fn check(s: &Shared) {
    if lock(&s.placements).is_empty() {
        return;
    }
    // A short budget: a slow round must not delay the next by a failover.
    let listed = s
        .managers
        .call_within(
            "list nodes",
            s.config.docker.request_timeout,
            |d| async move {
                d.list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
                    .await
            },
        )
        .await;
    let nodes = match listed {
        Ok(n) => n,
        Err(e) => {
            // No manager can tell: the node daemons' own answers decide.
            tracing::debug!(error = %e, "node watcher: no manager answered");
            return;
        }
    };
    let views: HashMap<String, nodes::NodeView> = nodes
        .iter()
        .map(|n| nodes::NodeView::of(n, &s.config.endpoint_label))
        .map(|v| (v.id.clone(), v))
        .collect();
    for (id, p) in lock(&s.placements).iter() {
        if p.lost.borrow().is_some() {
            continue;
        }
        let reason = match views.get(&p.node_id) {
            None => Some(format!("node {} left the swarm", p.node_id)),
            // `unknown` follows every leader change for a while: not a loss.
            Some(v) if v.down => Some(format!(
                "the swarm managers report node {} {}",
                v.name(),
                v.state
            )),
            Some(v) if v.drained => Some(format!(
                "node {} is drained: the swarm shuts its tasks down",
                v.name()
            )),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            tracing::warn!(workspace = %id, %reason, "swarm workspace lost");
            let _ = p.lost.send(Some(reason));
        }
    }
}

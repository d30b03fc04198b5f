//! Where a workspace's container lives when it is not on the backend's own
//! daemon (a swarm task's node), and whether that node has been lost: the
//! exec, archive and limit code reaches the container through its route.

use std::future::Future;

use bollard::Docker;
use tokio::sync::watch;

use crate::error::DockerOrchestratorError as E;

/// The daemon of the node that runs a workspace's container.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// A negotiated client of the node's daemon.
    pub docker: Docker,
    /// The node daemon's address, for messages.
    pub host: String,
    /// The node's hostname (its id when it has none), for messages.
    pub node: String,
    /// Turns `Some(reason)` once the node is known lost; never back.
    pub lost: watch::Receiver<Option<String>>,
}

impl Route {
    /// NodeLost once the node is known lost.
    pub fn check(&self) -> Result<(), E> {
        match &*self.lost.borrow() {
            Some(reason) => Err(E::NodeLost {
                node: self.node.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Runs `fut` unless the node is lost first: a command or transfer on
    /// a node cut off from the swarm ends with NodeLost instead of waiting
    /// for a daemon that may never answer.
    pub async fn unless_lost<T>(&self, fut: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        self.check()?;
        let mut lost = self.lost.clone();
        let lost_reason = async move {
            // The guard must not live across the await below.
            let reported = lost.wait_for(Option::is_some).await.map(|r| r.clone());
            match reported {
                Ok(reason) => reason.unwrap_or_default(),
                // The swarm backend is gone: nothing will report a loss.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            r = fut => r,
            reason = lost_reason => Err(E::NodeLost {
                node: self.node.clone(),
                reason,
            }),
        }
    }
}

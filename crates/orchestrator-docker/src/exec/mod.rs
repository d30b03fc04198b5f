//! Running commands through `docker exec`.
//!
//! Docker cannot kill an exec. Every command runs under
//! [`scripts::WRAPPER`] as the leader of its own session (runc makes each
//! exec a session leader); to end it, a second exec running
//! [`scripts::KILL_SESSION`] kills every process of that session inside the
//! container. When even that exec cannot start (a fork bomb at the pids
//! limit), the pids limit is raised for the moment of the kill.
//!
//! `plan` resolves a command, `stream` runs it (its output kept in the
//! core's [`orchestrator_core::exec::OutputCapture`]), `status` turns what
//! it saw into an [`orchestrator_core::ExecOutput`]; `helper` runs runbox's
//! own short scripts, `kill` ends sessions, and
//! `foreground` is `run_command`. This file holds what they share: how to
//! reach the container.

mod foreground;
mod helper;
mod kill;
mod plan;
mod status;
mod stream;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;

use crate::container::lock;
use crate::error::DockerOrchestratorError as E;
use crate::limits;
use crate::route::Route;
#[cfg(doc)]
use crate::scripts;
use crate::workspace::Ws;
use crate::DockerOrchestrator;

pub(crate) use helper::helper;
pub(crate) use kill::kill_all;
pub(crate) use status::finish;
pub(crate) use stream::run;

/// What the exec engine needs to reach one container.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub docker: Docker,
    pub host: String,
    pub container: String,
    pub request_timeout: Duration,
    /// The container's pids limit in force (with the reserve), if any.
    pub pids_limit: Option<i64>,
    /// OOM kills of the container's memory cgroup seen so far.
    pub oom_seen: Arc<Mutex<u64>>,
    /// The swarm node's route, whose loss ends long calls.
    pub route: Option<Route>,
}

impl Ctx {
    /// Runs a long call (a command, a transfer) unless the workspace's node
    /// is lost first.
    pub async fn unless_lost<T>(
        &self,
        fut: impl std::future::Future<Output = std::result::Result<T, E>>,
    ) -> std::result::Result<T, E> {
        match &self.route {
            Some(route) => route.unless_lost(fut).await,
            None => fut.await,
        }
    }
}

impl DockerOrchestrator {
    /// How the exec engine reaches the container of `ws`, with the limits
    /// in force now.
    pub(crate) async fn ctx(&self, ws: &Ws) -> std::result::Result<Ctx, E> {
        let limits = lock(&ws.limits).clone();
        let (docker, host) = match &ws.route {
            Some(route) => {
                route.check()?;
                (route.docker.clone(), route.host.clone())
            }
            None => (self.docker().await?, self.host.clone()),
        };
        Ok(Ctx {
            docker,
            host,
            route: ws.route.clone(),
            container: ws.container.clone(),
            request_timeout: self.config.request_timeout,
            pids_limit: limits::cgroup_fields(&limits).pids_limit,
            oom_seen: ws.oom_seen.clone(),
        })
    }
}

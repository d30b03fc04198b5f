//! Execution records: what was asked ([`ExecutionRequest`]), and what became
//! of it ([`ExecutionRecord`] with its validated [`ExecutionState`] machine).
//!
//! The parts live by concern: [`ExecutionId`] (id), the [`ExecutionState`]
//! machine (state), what was asked (request), how it ended and how its
//! limits and isolation were enforced (summary), serde for the core types a
//! record holds (limits_serde, mount_serde, path_serde, owner_serde), and
//! the record itself with its transitions (here).

use std::time::{SystemTime, UNIX_EPOCH};

use orchestrator_core::owner::Owner;
use orchestrator_core::WorkspaceId;
use serde::{Deserialize, Serialize};

use crate::service::DOCKER_BACKEND;

mod id;
mod limits_serde;
mod mount_serde;
mod owner_serde;
mod path_serde;
mod request;
mod state;
mod summary;

pub use id::ExecutionId;
pub use request::{BackendPreference, ExecutionRequest, FileTransfer};
pub use state::{ExecutionState, InvalidTransition};
pub use summary::{IsolationSummary, LimitSummary, ResultSummary};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One execution: its request and everything that happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// Its id.
    pub id: ExecutionId,
    /// Current state.
    pub state: ExecutionState,
    /// What was asked.
    pub request: ExecutionRequest,
    /// Name of the backend that holds (or held) the sandbox, as the service
    /// names it.
    pub backend: Option<String>,
    /// The sandbox (workspace or container) id.
    pub sandbox_id: Option<String>,
    /// The background process started by `start`, if any.
    pub process_id: Option<String>,
    /// The sandbox was torn down (cleanup succeeded).
    pub sandbox_released: bool,
    /// How the command ended, when known.
    pub result: Option<ResultSummary>,
    /// How each limit is enforced.
    pub limits_applied: Vec<LimitSummary>,
    /// How the sandbox is isolated, as its backend reported right after
    /// creating it; `None` before that (and in records written before
    /// isolation was reported).
    #[serde(default)]
    pub isolation: Option<IsolationSummary>,
    /// Why it failed or was cancelled (or a teardown problem).
    pub error: Option<String>,
    /// The process that started it (for crash recovery).
    #[serde(default, with = "owner_serde")]
    pub owner: Option<Owner>,
    /// When it was submitted (ms since the epoch).
    pub created_at_ms: u64,
    /// When `start` began.
    pub started_at_ms: Option<u64>,
    /// When it reached a terminal state.
    pub finished_at_ms: Option<u64>,
    /// Last change.
    pub updated_at_ms: u64,
    /// Optimistic-concurrency version: bumped by the store on every update.
    pub version: u64,
}

impl ExecutionRecord {
    /// A pending record for a request.
    pub fn new(id: ExecutionId, request: ExecutionRequest) -> Self {
        let now = now_ms();
        Self {
            id,
            state: ExecutionState::Pending,
            request,
            backend: None,
            sandbox_id: None,
            process_id: None,
            sandbox_released: false,
            result: None,
            limits_applied: Vec::new(),
            isolation: None,
            error: None,
            owner: None,
            created_at_ms: now,
            started_at_ms: None,
            finished_at_ms: None,
            updated_at_ms: now,
            version: 0,
        }
    }

    /// Moves to `next`, or fails without changing anything when the
    /// transition is illegal. Sets the timestamps.
    pub fn transition(&mut self, next: ExecutionState) -> Result<(), InvalidTransition> {
        if !self.state.can_transition_to(next) {
            return Err(InvalidTransition {
                from: self.state,
                to: next,
            });
        }
        let now = now_ms();
        self.state = next;
        self.updated_at_ms = now;
        if next == ExecutionState::Starting {
            self.started_at_ms = Some(now);
        }
        if next.is_terminal() {
            self.finished_at_ms = Some(now);
        }
        Ok(())
    }

    /// Whether the sandbox is on the docker orchestrator (the backend named
    /// [`DOCKER_BACKEND`]).
    pub fn used_docker(&self) -> bool {
        self.backend.as_deref() == Some(DOCKER_BACKEND)
    }

    /// The sandbox id as a [`WorkspaceId`].
    pub fn sandbox(&self) -> Option<WorkspaceId> {
        self.sandbox_id
            .as_deref()
            .and_then(|s| WorkspaceId::new(s).ok())
    }

    /// Checks the record's internal consistency; `Err` describes the first
    /// violation. (Used by tests and by the stores when loading.)
    pub fn check_invariants(&self) -> Result<(), String> {
        let s = self.state;
        if s == ExecutionState::Running && self.sandbox_id.is_none() {
            return Err(format!("{}: running without a sandbox", self.id));
        }
        if s == ExecutionState::Running && self.sandbox_released {
            return Err(format!("{}: running with a released sandbox", self.id));
        }
        if s == ExecutionState::Pending
            && (self.sandbox_id.is_some() || self.backend.is_some() || self.started_at_ms.is_some())
        {
            return Err(format!("{}: pending but already provisioned", self.id));
        }
        if s == ExecutionState::Completed && self.sandbox_id.is_some() && !self.sandbox_released {
            return Err(format!(
                "{}: completed but its sandbox was not released",
                self.id
            ));
        }
        if s.is_terminal() != self.finished_at_ms.is_some() {
            return Err(format!("{}: finished_at does not match state {s}", self.id));
        }
        if s.is_active() && self.backend.is_none() {
            return Err(format!("{}: {s} without a backend", self.id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! The [`ExecutionState`] machine: states and legal transitions.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The life of an execution.
///
/// ```text
/// pending ──► starting ──► running ──► completed
///    │            │           ├──────► failed
///    │            ├──► failed └──────► cancelled
///    └──► cancelled ◄──┘
/// ```
/// Terminal states (completed, failed, cancelled) have no way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Submitted, nothing provisioned.
    Pending,
    /// A sandbox is being provisioned.
    Starting,
    /// The sandbox exists (and its command, if any, was started).
    Running,
    /// Torn down after the run; see the record's result.
    Completed,
    /// The service could not run it (backend error, strict limit, crash of
    /// the owning process); see the record's error.
    Failed,
    /// Cancelled by a caller (or its future was dropped).
    Cancelled,
}

impl ExecutionState {
    /// Every state.
    pub const ALL: [ExecutionState; 6] = [
        ExecutionState::Pending,
        ExecutionState::Starting,
        ExecutionState::Running,
        ExecutionState::Completed,
        ExecutionState::Failed,
        ExecutionState::Cancelled,
    ];

    /// Stable name ("pending", ...).
    pub fn name(self) -> &'static str {
        match self {
            ExecutionState::Pending => "pending",
            ExecutionState::Starting => "starting",
            ExecutionState::Running => "running",
            ExecutionState::Completed => "completed",
            ExecutionState::Failed => "failed",
            ExecutionState::Cancelled => "cancelled",
        }
    }

    /// Parses a [`ExecutionState::name`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.name() == s)
    }

    /// Completed, failed or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionState::Completed | ExecutionState::Failed | ExecutionState::Cancelled
        )
    }

    /// Starting or running: a sandbox may exist and someone owns it.
    pub fn is_active(self) -> bool {
        matches!(self, ExecutionState::Starting | ExecutionState::Running)
    }

    /// Is `self → next` a legal transition?
    pub fn can_transition_to(self, next: ExecutionState) -> bool {
        use ExecutionState::*;
        matches!(
            (self, next),
            (Pending, Starting)
                | (Pending, Cancelled)
                | (Starting, Running)
                | (Starting, Failed)
                | (Starting, Cancelled)
                | (Running, Completed)
                | (Running, Failed)
                | (Running, Cancelled)
        )
    }
}

impl fmt::Display for ExecutionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An illegal state transition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition {from} -> {to}")]
pub struct InvalidTransition {
    /// The current state.
    pub from: ExecutionState,
    /// The state asked for.
    pub to: ExecutionState,
}

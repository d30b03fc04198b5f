//! What the record keeps of a run: [`ResultSummary`] and [`LimitSummary`].

use orchestrator_core::{ExecOutput, LimitReport, Mechanism};
use serde::{Deserialize, Serialize};

/// How the command ended, as stored in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultSummary {
    /// [`orchestrator_core::ExitStatus::name`] ("exited", "timed_out", ...).
    pub status: String,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal, when one ended it.
    pub signal: Option<i32>,
    /// Wall time in milliseconds.
    pub wall_ms: u64,
    /// CPU time in milliseconds, where known.
    pub cpu_ms: Option<u64>,
    /// Peak memory in bytes, where known.
    pub peak_memory: Option<u64>,
    /// Bytes of stdout captured.
    pub stdout_bytes: u64,
    /// Bytes of stderr captured.
    pub stderr_bytes: u64,
    /// stdout was cut at the cap.
    pub stdout_truncated: bool,
    /// stderr was cut at the cap.
    pub stderr_truncated: bool,
}

impl ResultSummary {
    /// Summarises an [`ExecOutput`].
    pub fn from_output(out: &ExecOutput) -> Self {
        Self {
            status: out.status.name().to_string(),
            exit_code: out.status.code(),
            signal: out.status.signal(),
            wall_ms: out.wall_time.as_millis() as u64,
            cpu_ms: out.cpu_time.map(|d| d.as_millis() as u64),
            peak_memory: out.peak_memory,
            stdout_bytes: out.stdout.len() as u64,
            stderr_bytes: out.stderr.len() as u64,
            stdout_truncated: out.stdout_truncated,
            stderr_truncated: out.stderr_truncated,
        }
    }

    /// Did the command exit with code 0?
    pub fn success(&self) -> bool {
        self.status == "exited" && self.exit_code == Some(0)
    }
}

/// How one limit was enforced, as stored in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSummary {
    /// [`orchestrator_core::LimitKind::name`].
    pub kind: String,
    /// The requested value, printed.
    pub requested: String,
    /// [`orchestrator_core::Mechanism::name`], or `None` when unenforced.
    pub enforced_by: Option<String>,
    /// The backend's note.
    pub note: Option<String>,
}

impl LimitSummary {
    /// One summary per entry of a [`LimitReport`].
    pub fn from_report(report: &LimitReport) -> Vec<Self> {
        report
            .entries
            .iter()
            .map(|e| Self {
                kind: e.kind.name().to_string(),
                requested: e.requested.to_string(),
                enforced_by: e.enforced_by.as_ref().map(|m| m.name().to_string()),
                note: e.note.clone(),
            })
            .collect()
    }

    /// The mechanism that enforces it, by its stored name (`None` when
    /// unenforced).
    pub fn mechanism(&self) -> Option<Mechanism> {
        self.enforced_by.as_deref().map(Mechanism::from_name)
    }
}

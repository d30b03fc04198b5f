//! What the record keeps of a run: [`ResultSummary`], [`LimitSummary`] and
//! [`IsolationSummary`].

use orchestrator_core::{
    ExecOutput, IsolationLevel, IsolationMode, IsolationReport, LimitReport, Mechanism,
    NetworkMode, UnknownMode,
};
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

/// How the sandbox was isolated, as stored in the record: the backend's
/// [`IsolationReport`] with each value by its stable name (so a record
/// written by a newer runbox, with a name this one does not know, still
/// loads; [`Self::report`] says which name it does not know).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationSummary {
    /// [`IsolationMode::as_str`] of the mode asked for.
    pub requested: String,
    /// [`IsolationLevel::as_str`] of the level in force.
    pub level: String,
    /// [`NetworkMode::as_str`] of the network the commands see.
    pub network: String,
    /// [`Mechanism::name`] of each mechanism in force, in the backend's
    /// order.
    pub enforced_by: Vec<String>,
    /// The backend's note (why not, or how).
    pub note: Option<String>,
}

impl IsolationSummary {
    /// Summarises an [`IsolationReport`].
    pub fn from_report(report: &IsolationReport) -> Self {
        Self {
            requested: report.requested.as_str().to_string(),
            level: report.level.as_str().to_string(),
            network: report.network.as_str().to_string(),
            enforced_by: report
                .enforced_by
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
            note: report.note.clone(),
        }
    }

    /// The report again, or the first stored name this runbox does not
    /// know.
    pub fn report(&self) -> Result<IsolationReport, UnknownMode> {
        Ok(IsolationReport {
            requested: self.requested.parse::<IsolationMode>()?,
            level: self.level.parse::<IsolationLevel>()?,
            network: self.network.parse::<NetworkMode>()?,
            enforced_by: self
                .enforced_by
                .iter()
                .map(|m| Mechanism::from_name(m.clone()))
                .collect(),
            note: self.note.clone(),
        })
    }

    /// Whether `auto` was asked and the sandbox ran without isolation (see
    /// [`IsolationReport::fell_back`]).
    pub fn fell_back(&self) -> bool {
        self.requested == IsolationMode::Auto.as_str()
            && self.level == IsolationLevel::None.as_str()
    }
}

//! [`RunResult`]: the one result object of a command, for `runbox run
//! --json` and for the API alike, and the state objects around it.

use std::collections::BTreeMap;

use base64::Engine as _;
use execution_service::{ExecutionRecord, ExecutionResult, ExecutionState};
use orchestrator_core::{
    ExecOutput, ExitStatus, IsolationReport, LimitReport, LimitValue, ResourceLimits,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::model::Encoding;

/// How one requested limit was enforced.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LimitResult {
    /// The value asked for: bytes, cores, a count or milliseconds.
    #[schema(value_type = f64)]
    pub requested: serde_json::Value,
    /// The mechanism enforcing it, or null when nothing does.
    pub enforced_by: Option<String>,
    /// The backend's note.
    pub note: Option<String>,
}

/// How the sandbox was isolated, as the backend reported it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct IsolationResult {
    /// The mode asked for.
    pub requested: String,
    /// The level in force ("full" or "none").
    pub level: String,
    /// The network ("none" or "host").
    pub network: String,
    /// Each mechanism in force.
    pub enforced_by: Vec<String>,
    /// Why there is less than asked, where there is.
    pub note: Option<String>,
}

impl IsolationResult {
    /// The report as JSON fields.
    pub fn new(r: &IsolationReport) -> Self {
        Self {
            requested: r.requested.as_str().into(),
            level: r.level.as_str().into(),
            network: r.network.as_str().into(),
            enforced_by: r.enforced_by.iter().map(|m| m.name().to_string()).collect(),
            note: r.note.clone(),
        }
    }
}

/// A collected path: its bytes (a directory as a tar archive), or why it
/// could not be had.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CollectedFile {
    /// The content in base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// `{"code", "detail"}` of the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
}

/// The result of a command.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RunResult {
    /// How it ended: exited, signaled, timed_out, memory_limit_exceeded,
    /// output_limit_exceeded, failed_to_start.
    pub status: String,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// Standard output (text, or base64 when asked).
    pub stdout: String,
    /// Standard error (text, or base64 when asked).
    pub stderr: String,
    /// stdout was cut at the output cap.
    pub stdout_truncated: bool,
    /// stderr was cut at the output cap.
    pub stderr_truncated: bool,
    /// Wall time in milliseconds.
    pub wall_time_ms: Option<u64>,
    /// CPU time in milliseconds, where known.
    pub cpu_time_ms: Option<u64>,
    /// Peak memory in bytes, where known.
    pub peak_memory_bytes: Option<u64>,
    /// The backend that ran it.
    pub backend: Option<String>,
    /// The (removed) sandbox.
    pub workspace_id: Option<String>,
    /// The execution record.
    pub execution_id: Option<String>,
    /// One entry per requested limit.
    pub limits: BTreeMap<String, LimitResult>,
    /// The isolation report.
    pub isolation: Option<IsolationResult>,
    /// The OS's message when the command could not start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The collected paths (API only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<BTreeMap<String, CollectedFile>>,
}

/// `requested` of a limit: bytes, cores, counts, milliseconds.
pub fn limit_value(v: &LimitValue) -> serde_json::Value {
    match v {
        LimitValue::Bytes(b) => serde_json::json!(b),
        LimitValue::Cpus(c) => serde_json::json!(c),
        LimitValue::Count(n) => serde_json::json!(n),
        LimitValue::Duration(d) => serde_json::json!(d.as_millis() as u64),
    }
}

/// One entry per requested limit, with how the backend enforced it.
pub fn limit_results(
    requested: &ResourceLimits,
    report: &LimitReport,
) -> BTreeMap<String, LimitResult> {
    requested
        .requested()
        .into_iter()
        .map(|(kind, value)| {
            let entry = report.get(kind);
            let r = LimitResult {
                requested: limit_value(&value),
                enforced_by: entry
                    .and_then(|e| e.enforced_by.as_ref())
                    .map(|m| m.name().to_string()),
                note: entry
                    .map(|e| e.note.clone())
                    .unwrap_or_else(|| Some("the backend did not report this limit".into())),
            };
            (kind.name().to_string(), r)
        })
        .collect()
}

fn encode(bytes: &[u8], lossy: std::borrow::Cow<'_, str>, enc: Encoding) -> String {
    match enc {
        Encoding::Text => lossy.into_owned(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

/// A limit's requested value as the record printed it ("1048576 bytes",
/// "0.5 cores", "60s") back as the number the live answer gives.
fn requested_number(printed: &str) -> serde_json::Value {
    let t = printed.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let Ok(n) = num.parse::<f64>() else {
        return serde_json::Value::String(printed.to_string());
    };
    let ms = match unit.trim() {
        "s" => n * 1000.0,
        "ms" => n,
        _ => n,
    };
    if ms.fract() == 0.0 && ms >= 0.0 && ms < u64::MAX as f64 {
        serde_json::json!(ms as u64)
    } else {
        serde_json::json!(ms)
    }
}

impl RunResult {
    /// The result of a command's output in a sandbox (an exec, or the body
    /// of [`RunResult::of_execution`]).
    pub fn of_output(o: &ExecOutput, enc: Encoding) -> Self {
        let error = match &o.status {
            ExitStatus::FailedToStart { message, .. } => Some(message.clone()),
            _ => None,
        };
        Self {
            status: o.status.name().into(),
            exit_code: o.status.code(),
            signal: o.status.signal(),
            stdout: encode(&o.stdout, o.stdout_str(), enc),
            stderr: encode(&o.stderr, o.stderr_str(), enc),
            stdout_truncated: o.stdout_truncated,
            stderr_truncated: o.stderr_truncated,
            wall_time_ms: Some(o.wall_time.as_millis() as u64),
            cpu_time_ms: o.cpu_time.map(|d| d.as_millis() as u64),
            peak_memory_bytes: o.peak_memory,
            backend: None,
            workspace_id: None,
            execution_id: None,
            limits: BTreeMap::new(),
            isolation: None,
            error,
            files: None,
        }
    }

    /// The result of a finished execution, `limits` being what was asked.
    pub fn of_execution(limits: &ResourceLimits, r: &ExecutionResult, enc: Encoding) -> Self {
        Self {
            backend: Some(r.backend.clone()),
            workspace_id: Some(r.workspace_id.as_str().into()),
            execution_id: Some(r.execution_id.as_str().into()),
            limits: limit_results(limits, &r.limit_report),
            isolation: Some(IsolationResult::new(&r.isolation)),
            ..Self::of_output(&r.output, enc)
        }
    }

    /// The bytes of output and collected files this result holds.
    pub fn held_bytes(&self) -> usize {
        self.stdout.len()
            + self.stderr.len()
            + self
                .files
                .iter()
                .flatten()
                .map(|(k, f)| k.len() + f.base64.as_ref().map_or(0, String::len))
                .sum::<usize>()
    }

    /// What a record alone tells of a run whose full result this server
    /// no longer holds (it ran before a restart): status and figures, no
    /// output.
    pub fn of_record(rec: &ExecutionRecord) -> Option<Self> {
        let s = rec.result.as_ref()?;
        let limits = rec
            .limits_applied
            .iter()
            .map(|l| {
                (
                    l.kind.clone(),
                    LimitResult {
                        requested: requested_number(&l.requested),
                        enforced_by: l.enforced_by.clone(),
                        note: l.note.clone(),
                    },
                )
            })
            .collect();
        Some(Self {
            status: s.status.clone(),
            exit_code: s.exit_code,
            signal: s.signal,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: s.stdout_truncated,
            stderr_truncated: s.stderr_truncated,
            wall_time_ms: Some(s.wall_ms),
            cpu_time_ms: s.cpu_ms,
            peak_memory_bytes: s.peak_memory,
            backend: rec.backend.clone(),
            workspace_id: rec.sandbox_id.clone(),
            execution_id: Some(rec.id.as_str().into()),
            limits,
            isolation: rec.isolation.as_ref().map(|i| IsolationResult {
                requested: i.requested.clone(),
                level: i.level.clone(),
                network: i.network.clone(),
                enforced_by: i.enforced_by.clone(),
                note: i.note.clone(),
            }),
            error: rec.error.clone(),
            files: None,
        })
    }
}

/// The life of a run, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunPhase {
    /// Waiting for a slot.
    Queued,
    /// Executing.
    Running,
    /// Ended with a result.
    Completed,
    /// Cancelled by its caller, a disconnect or a shutdown.
    Cancelled,
    /// The service could not run it.
    Failed,
}

impl RunPhase {
    /// The API phase of a record state.
    pub fn of(state: ExecutionState) -> Self {
        match state {
            ExecutionState::Pending => RunPhase::Queued,
            ExecutionState::Starting | ExecutionState::Running => RunPhase::Running,
            ExecutionState::Completed => RunPhase::Completed,
            ExecutionState::Cancelled => RunPhase::Cancelled,
            ExecutionState::Failed => RunPhase::Failed,
        }
    }
    /// Completed, cancelled or failed.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunPhase::Queued | RunPhase::Running)
    }
}

/// `GET /v1/runs/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunView {
    /// The run.
    pub execution_id: String,
    /// Where it is.
    pub state: RunPhase,
    /// Its result, once it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// Why it failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RunView {
    /// What a record alone tells of a run.
    pub fn of_record(rec: &ExecutionRecord) -> Self {
        Self {
            execution_id: rec.id.to_string(),
            state: RunPhase::of(rec.state),
            result: RunResult::of_record(rec),
            error: rec.error.clone(),
        }
    }
}

/// `GET /v1/runs`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunList {
    /// Newest first.
    pub runs: Vec<RunView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_values_from_records_are_numbers_again() {
        assert_eq!(
            requested_number("1048576 bytes"),
            serde_json::json!(1048576)
        );
        assert_eq!(requested_number("0.5 cpus"), serde_json::json!(0.5));
        assert_eq!(requested_number("64"), serde_json::json!(64));
        assert_eq!(requested_number("60000ms"), serde_json::json!(60000));
        assert_eq!(requested_number("odd"), serde_json::json!("odd"));
    }
}

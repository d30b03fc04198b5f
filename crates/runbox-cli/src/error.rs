//! [`CliError`]: a failure of runbox itself, printed as one line on stderr
//! (naming the flag when one is to blame) with its exit code.

use std::fmt;

use execution_service::ServiceError;
use orchestrator_core::{Error as CoreError, LimitKind};

/// Exit code when runbox itself failed (bad flag, invalid limit, backend
/// unavailable, strict limit not enforceable, ...).
pub const EXIT_RUNBOX: u8 = 125;

/// A failure of runbox itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// The flag to blame (`--memory`), if any.
    pub flag: Option<String>,
    /// Stable kind, for `--json` ("invalid_flag", "unavailable", ...).
    pub kind: &'static str,
    /// What went wrong, one line.
    pub message: String,
    /// The exit code.
    pub code: u8,
}

impl CliError {
    /// A bad value of a flag.
    pub fn flag(flag: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            flag: Some(flag.into()),
            kind: "invalid_flag",
            message: one_line(&message.into()),
            code: EXIT_RUNBOX,
        }
    }

    /// A failure of a given kind, blamed on no flag.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            flag: None,
            kind,
            message: one_line(&message.into()),
            code: EXIT_RUNBOX,
        }
    }

    /// Blames a flag.
    pub fn on(mut self, flag: impl Into<String>) -> Self {
        self.flag = Some(flag.into());
        self
    }

    /// Sets the exit code.
    pub fn code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.flag {
            Some(flag) => write!(f, "runbox: {flag}: {}", self.message),
            None => write!(f, "runbox: {}", self.message),
        }
    }
}

/// Folds a message onto one line.
pub fn one_line(s: &str) -> String {
    let parts: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    parts.join("; ")
}

/// A core error's message without the "invalid input: " prefix.
pub fn core_message(e: &CoreError) -> String {
    match e {
        CoreError::InvalidInput(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The flag that sets a limit: flag names live here, not in the core.
pub fn limit_flag(kind: LimitKind) -> &'static str {
    match kind {
        LimitKind::Memory => "--memory",
        LimitKind::Cpus => "--cpus",
        LimitKind::Pids => "--pids",
        LimitKind::WallTimeout => "--timeout",
        LimitKind::CpuTime => "--cpu-time",
        LimitKind::FileSize => "--file-size",
        LimitKind::OpenFiles => "--open-files",
        LimitKind::OutputBytes => "--output-limit",
        // A limit kind this CLI has no flag for: blame the strict switch
        // that made it an error.
        _ => "--strict",
    }
}

/// The full chain of an error, `a: b: c`, skipping repeats.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cur = s.source();
    }
    out
}

/// Maps a service failure of `runbox run` to a one-line error, blaming the
/// flag whose value caused it where that is known.
pub fn from_service(e: &ServiceError, backend: &str) -> CliError {
    let kind = e.kind();
    match e {
        ServiceError::Orchestrator {
            operation, source, ..
        } => {
            let flag = match (*operation, source) {
                (_, CoreError::LimitNotEnforceable { limit, .. }) => {
                    Some(limit_flag(*limit).to_string())
                }
                (_, CoreError::NotFound { what: "image", .. }) => Some("--image".to_string()),
                ("copy_to", _) => Some("--copy-in".to_string()),
                ("copy_from", _) => Some("--copy-out".to_string()),
                // The backend could not say how (or whether) it isolates
                // the sandbox it made.
                ("isolation", _) => Some("--isolation".to_string()),
                ("create", _) | ("create_workspace", _) => Some("--backend".to_string()),
                // A missing working directory is the --workdir flag's fault.
                (_, CoreError::NotFound { what, .. }) if what.contains("directory") => {
                    Some("--workdir".to_string())
                }
                (_, CoreError::Unavailable { .. }) => Some("--backend".to_string()),
                _ => None,
            };
            let message = match source {
                CoreError::LimitNotEnforceable { limit, reason } => format!(
                    "the {limit} limit cannot be enforced by backend {backend} (--strict): {reason}"
                ),
                CoreError::Backend { .. } => format!("{operation} failed: {}", chain(source)),
                other => format!("{operation} failed: {}", core_message(other)),
            };
            let mut err = CliError::new(kind, message);
            err.flag = flag;
            err
        }
        ServiceError::InvalidRequest(core) => CliError::new("invalid_input", core_message(core)),
        ServiceError::UnknownBackend { .. } => CliError::new(kind, e.to_string()).on("--backend"),
        other => CliError::new(kind, chain(other)),
    }
}

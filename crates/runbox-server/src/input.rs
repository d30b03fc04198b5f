//! From what a client sent to the service's typed inputs: the command, its
//! bytes, and limits checked against the server's caps (with the defaults
//! that keep every run bounded).

use std::time::Duration;

use base64::Engine as _;
use orchestrator_core::{LimitKind, LimitValue, ResourceLimits, SandboxPath};

use crate::config::Caps;
use crate::model::{Content, Limits};
use crate::problem::ApiError;

/// The argv of `argv` or `shell` (exactly one), checked: a program name,
/// no NUL byte.
pub fn command(
    argv: &Option<Vec<String>>,
    shell: &Option<String>,
) -> Result<Vec<String>, ApiError> {
    let v = match (argv, shell) {
        (Some(a), None) => a.clone(),
        (None, Some(s)) => vec!["sh".into(), "-c".into(), s.clone()],
        (Some(_), Some(_)) => return Err(ApiError::invalid("give `argv` or `shell`, not both")),
        (None, None) => {
            return Err(ApiError::invalid(
                "a command is required: `argv` or `shell`",
            ))
        }
    };
    if v.first().is_none_or(|p| p.is_empty()) {
        return Err(ApiError::invalid("`argv` needs a program name first"));
    }
    if v.iter().any(|a| a.contains('\0')) {
        return Err(ApiError::invalid("the command contains a NUL byte"));
    }
    Ok(v)
}

/// The bytes of a `{"text"}` or `{"base64"}` object; `what` names it in
/// errors.
pub fn bytes(text: &Option<String>, b64: &Option<String>, what: &str) -> Result<Vec<u8>, ApiError> {
    match (text, b64) {
        (Some(t), None) => Ok(t.clone().into_bytes()),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.as_bytes())
            .map_err(|e| ApiError::invalid(format!("{what}: `base64` is not valid base64: {e}"))),
        _ => Err(ApiError::invalid(format!(
            "{what}: give exactly one of `text` and `base64`"
        ))),
    }
}

/// [`bytes`] of a [`Content`].
pub fn content(c: &Content, what: &str) -> Result<Vec<u8>, ApiError> {
    bytes(&c.text, &c.base64, what)
}

/// A sandbox path as the API takes it.
pub fn sandbox_path(p: &str) -> Result<SandboxPath, ApiError> {
    SandboxPath::new(p).map_err(ApiError::from)
}

fn over(name: &str, given: impl std::fmt::Display, cap: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!(
        "limits.{name} = {given} is above this server's cap of {cap}"
    ))
}

/// The limits of a request, each within its cap. A run (`bounded`) that
/// gives no timeout or output cap gets the server's defaults; a sandbox's
/// limits are checked only (its execs get the timeout default).
pub fn limits(
    given: Option<&Limits>,
    strict: bool,
    caps: &Caps,
    bounded: bool,
) -> Result<ResourceLimits, ApiError> {
    let l = given.cloned().unwrap_or_default();
    let mut asked: Vec<(LimitKind, LimitValue)> = Vec::new();
    let mut set = |kind: LimitKind, v: LimitValue| -> Result<(), ApiError> {
        asked.push((kind, v));
        Ok(())
    };
    let count = |name: &str, v: Option<u64>, cap: u64| -> Result<Option<u64>, ApiError> {
        match v {
            Some(v) if v > cap => Err(over(name, v, cap)),
            v => Ok(v),
        }
    };
    if let Some(m) = count("memory_bytes", l.memory_bytes, caps.memory_bytes)? {
        set(LimitKind::Memory, LimitValue::Bytes(m))?;
    }
    if let Some(c) = l.cpus {
        if !c.is_finite() || c > caps.cpus {
            return Err(over("cpus", c, caps.cpus));
        }
        set(LimitKind::Cpus, LimitValue::Cpus(c))?;
    }
    if let Some(p) = count("pids", l.pids, caps.pids)? {
        set(LimitKind::Pids, LimitValue::Count(p))?;
    }
    let timeout = count("timeout_ms", l.timeout_ms, caps.timeout_ms)?
        .or(bounded.then_some(caps.default_timeout_ms));
    if let Some(t) = timeout {
        set(
            LimitKind::WallTimeout,
            LimitValue::Duration(Duration::from_millis(t)),
        )?;
    }
    if let Some(t) = count("cpu_time_ms", l.cpu_time_ms, caps.cpu_time_ms)? {
        set(
            LimitKind::CpuTime,
            LimitValue::Duration(Duration::from_millis(t)),
        )?;
    }
    if let Some(f) = count("file_size_bytes", l.file_size_bytes, caps.file_size_bytes)? {
        set(LimitKind::FileSize, LimitValue::Bytes(f))?;
    }
    if let Some(n) = count("open_files", l.open_files, caps.open_files)? {
        set(LimitKind::OpenFiles, LimitValue::Count(n))?;
    }
    let output = count("output_bytes", l.output_bytes, caps.output_bytes)?
        .or(bounded.then_some(caps.default_output_bytes));
    if let Some(o) = output {
        set(LimitKind::OutputBytes, LimitValue::Bytes(o))?;
    }
    let mut b = ResourceLimits::builder().strict(strict);
    for (kind, v) in asked {
        b = b
            .limit(kind, v)
            .map_err(|e| ApiError::invalid(format!("limits.{}: {e}", kind.name())))?;
    }
    b.build()
        .map_err(|e| ApiError::invalid(format!("limits: {e}")))
}

/// An exec's timeout: given (within the cap) or the default.
pub fn exec_timeout(given: Option<u64>, caps: &Caps) -> Result<Duration, ApiError> {
    match given {
        Some(t) if t > caps.timeout_ms => Err(over("timeout_ms", t, caps.timeout_ms)),
        Some(0) => Err(ApiError::invalid("timeout_ms must be above 0")),
        Some(t) => Ok(Duration::from_millis(t)),
        None => Ok(Duration::from_millis(caps.default_timeout_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_get_default_bounds_and_caps_hold() {
        let caps = Caps::default();
        let l = limits(None, false, &caps, true).unwrap();
        assert_eq!(
            l.wall_timeout(),
            Some(Duration::from_millis(caps.default_timeout_ms))
        );
        assert_eq!(l.output_bytes(), Some(caps.default_output_bytes));
        assert!(limits(None, false, &caps, false).unwrap().is_empty());
        let too_much = Limits {
            memory_bytes: Some(caps.memory_bytes + 1),
            ..Limits::default()
        };
        let e = limits(Some(&too_much), false, &caps, true).unwrap_err();
        assert_eq!(e.code, "invalid_input");
        assert!(e.detail.contains("memory_bytes"), "{}", e.detail);
        let bad = Limits {
            cpus: Some(f64::NAN),
            ..Limits::default()
        };
        assert!(limits(Some(&bad), false, &caps, true).is_err());
        let zero = Limits {
            memory_bytes: Some(0),
            ..Limits::default()
        };
        assert_eq!(
            limits(Some(&zero), false, &caps, true).unwrap_err().code,
            "invalid_input"
        );
    }

    #[test]
    fn commands_and_bytes() {
        assert_eq!(
            command(&None, &Some("echo hi".into())).unwrap()[2],
            "echo hi"
        );
        assert!(command(&None, &None).is_err());
        assert!(command(&Some(vec![]), &None).is_err());
        assert!(command(&Some(vec!["a\0".into()]), &None).is_err());
        assert!(command(&Some(vec!["a".into()]), &Some("b".into())).is_err());
        assert_eq!(bytes(&None, &Some("aGk=".into()), "stdin").unwrap(), b"hi");
        assert!(bytes(&None, &Some("***".into()), "stdin").is_err());
        assert!(bytes(&Some("a".into()), &Some("aGk=".into()), "stdin").is_err());
    }
}

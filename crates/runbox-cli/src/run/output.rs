//! What a run shows: the command's output passed through live, the `--json`
//! object of a result or of runbox's own failure, and the exit code for how
//! the command ended.

use std::io::Write;
use std::sync::Arc;

use execution_service::ExecutionResult;
use orchestrator_core::{
    ExitStatus, IsolationReport, OutputSink, ResourceLimits, StartFailure, Stream,
};
use serde_json::{json, Value};

use crate::cli::RunArgs;
use crate::error::{from_service, CliError, EXIT_RUNBOX};

/// Passes output through; a stdout closed by the reader (`| head`) is
/// signalled on `closed`, and `run` then stops the command as SIGPIPE
/// would.
pub fn sink(closed: Arc<tokio::sync::Notify>) -> OutputSink {
    OutputSink::new(move |stream, bytes| match stream {
        Stream::Stdout => {
            let mut o = std::io::stdout().lock();
            let r = o.write_all(bytes).and_then(|()| o.flush());
            if r.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
                closed.notify_one();
            }
        }
        Stream::Stderr => {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(bytes);
            let _ = e.flush();
        }
    })
}

/// The `isolation` object of `--json`: the backend's report.
#[cfg(test)]
fn isolation_json(r: &IsolationReport) -> Value {
    serde_json::to_value(runbox_server::IsolationResult::new(r)).unwrap_or(Value::Null)
}

/// The `--json` object of a finished run: the API's result object (one
/// schema for both).
pub fn result_json(limits: &ResourceLimits, r: &ExecutionResult) -> Value {
    serde_json::to_value(runbox_server::RunResult::of_execution(
        limits,
        r,
        runbox_server::Encoding::Text,
    ))
    .unwrap_or(Value::Null)
}

/// The one line on stderr when `auto` could not isolate, or `None`.
pub(crate) fn fallback_line(r: &IsolationReport) -> Option<String> {
    r.fell_back().then(|| {
        format!(
            "runbox: isolation auto fell back to none: {}",
            crate::error::one_line(r.note.as_deref().unwrap_or("the backend gave no reason"))
        )
    })
}

/// The `--json` object when runbox itself failed: the same fields (null or
/// empty), `status` "error" and an `error` object.
pub fn error_json(e: &CliError, backend: Option<&str>) -> Value {
    json!({
        "status": "error",
        "exit_code": null,
        "signal": null,
        "stdout": "",
        "stderr": "",
        "stdout_truncated": false,
        "stderr_truncated": false,
        "wall_time_ms": null,
        "cpu_time_ms": null,
        "peak_memory_bytes": null,
        "backend": backend,
        "workspace_id": null,
        "execution_id": null,
        "limits": {},
        "isolation": null,
        "error": {
            "kind": e.kind,
            "flag": e.flag,
            "message": e.message,
        },
    })
}

/// Prints a JSON value as one line on stdout.
pub fn print_json(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, v);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// The exit code for how a command ended.
///
/// - `Exited(c)`: `c`
/// - `Signaled(n)`: 128 + n
/// - `TimedOut`: 124
/// - `MemoryLimitExceeded`, `OutputLimitExceeded`: 137 (runbox ends the
///   command with SIGKILL)
/// - `FailedToStart`: 127 when not found, else 126
pub fn exit_code(status: &ExitStatus) -> u8 {
    match status {
        ExitStatus::Exited(c) => (*c & 0xff) as u8,
        ExitStatus::Signaled(n) => (128 + (*n & 0x7f)) as u8,
        ExitStatus::TimedOut => 124,
        ExitStatus::MemoryLimitExceeded | ExitStatus::OutputLimitExceeded => 137,
        ExitStatus::FailedToStart {
            reason: StartFailure::NotFound,
            ..
        } => 127,
        ExitStatus::FailedToStart { .. } => 126,
        _ => EXIT_RUNBOX,
    }
}

/// Shows a finished run (its `--json` object, or the copy-out failures and
/// a failed start on stderr after the passed-through output); returns the
/// exit code.
pub fn report(args: &RunArgs, requested: &ResourceLimits, result: &ExecutionResult) -> u8 {
    let mut code = exit_code(&result.output.status);
    // A copy-out that failed is runbox's failure (125), but the command's
    // result is still reported.
    let copy_errors: Vec<CliError> = result
        .copy_out_errors
        .iter()
        .map(|(f, e)| {
            let mut err = from_service(e, &args.backend);
            err.message = format!("{} -> {}: {}", f.sandbox, f.host.display(), err.message);
            err.on("--copy-out")
        })
        .collect();
    if !copy_errors.is_empty() {
        code = EXIT_RUNBOX;
    }
    // Said whatever the output mode: running without isolation is what
    // the caller must not miss.
    if let Some(line) = fallback_line(&result.isolation) {
        eprintln!("{line}");
    }
    if args.json {
        let mut v = result_json(requested, result);
        if let (Some(first), Some(obj)) = (copy_errors.first(), v.as_object_mut()) {
            obj.insert(
                "error".into(),
                json!({"kind": "copy_out", "flag": "--copy-out", "message": first.message}),
            );
        }
        print_json(&v);
    } else {
        for e in &copy_errors {
            eprintln!("{e}");
        }
        let _ = std::io::stdout().flush();
        if let ExitStatus::FailedToStart { message, .. } = &result.output.status {
            eprintln!(
                "runbox: cannot run {:?}: {}",
                args.command.first().map(String::as_str).unwrap_or(""),
                crate::error::one_line(message)
            );
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::{IsolationMode, Mechanism, NetworkMode};

    #[test]
    fn isolation_objects_and_the_fallback_line() {
        let full = IsolationReport::full(
            IsolationMode::Full,
            NetworkMode::Host,
            vec![
                Mechanism::named("user-namespace"),
                Mechanism::named("seccomp"),
            ],
        );
        assert_eq!(
            isolation_json(&full),
            json!({"requested": "full", "level": "full", "network": "host",
                   "enforced_by": ["user-namespace", "seccomp"], "note": null})
        );
        assert_eq!(fallback_line(&full), None);
        let fell = IsolationReport::none(IsolationMode::Auto, "no user\nnamespaces");
        assert_eq!(isolation_json(&fell)["level"], "none");
        assert_eq!(isolation_json(&fell)["network"], "host");
        assert_eq!(
            fallback_line(&fell).as_deref(),
            Some("runbox: isolation auto fell back to none: no user; namespaces")
        );
        let asked = IsolationReport::none(IsolationMode::None, "asked");
        assert_eq!(fallback_line(&asked), None);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&ExitStatus::Exited(0)), 0);
        assert_eq!(exit_code(&ExitStatus::Exited(3)), 3);
        assert_eq!(exit_code(&ExitStatus::Signaled(9)), 137);
        assert_eq!(exit_code(&ExitStatus::Signaled(15)), 143);
        assert_eq!(exit_code(&ExitStatus::TimedOut), 124);
        assert_eq!(exit_code(&ExitStatus::MemoryLimitExceeded), 137);
        assert_eq!(exit_code(&ExitStatus::OutputLimitExceeded), 137);
        let f = |reason| ExitStatus::FailedToStart {
            reason,
            message: "x".into(),
        };
        assert_eq!(exit_code(&f(StartFailure::NotFound)), 127);
        assert_eq!(exit_code(&f(StartFailure::PermissionDenied)), 126);
        assert_eq!(exit_code(&f(StartFailure::Other)), 126);
    }
}

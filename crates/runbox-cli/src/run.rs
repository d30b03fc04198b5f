//! `runbox run`: build an [`ExecutionRequest`] from the flags, execute it
//! through the [`ExecutionService`] (recorded in the SQLite store), pass the
//! output through live or print one JSON object, and exit with the code the
//! command's end calls for.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use execution_service::{
    BackendPreference, ExecutionRequest, ExecutionResult, ExecutionService, SqliteStore,
};
use orchestrator_core::{
    registry, ExitStatus, LimitReport, LimitValue, Orchestrator, OutputSink, ResourceLimits,
    StartFailure, Stream,
};
use orchestrator_docker::{DockerConfig, DockerOrchestrator, PullEvent, PullProgress};
use serde_json::{json, Map, Value};

use crate::cli::RunArgs;
use crate::error::{core_message, from_service, CliError, EXIT_RUNBOX};
use crate::parse;

/// How long a backend may take to say whether it is available.
pub const AVAILABILITY_DEADLINE: Duration = Duration::from_secs(3);

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

/// Parses the limit flags, each checked on its own so the error names it.
fn limits(args: &RunArgs) -> Result<ResourceLimits, CliError> {
    fn check(flag: &str, l: ResourceLimits) -> Result<ResourceLimits, CliError> {
        l.validate()
            .map_err(|e| CliError::flag(flag, core_message(&e)))?;
        Ok(l)
    }
    fn val<T>(
        flag: &str,
        v: &Option<String>,
        p: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, CliError> {
        v.as_deref()
            .map(|s| p(s).map_err(|m| CliError::flag(flag, m)))
            .transpose()
    }
    let d = ResourceLimits::default;
    let mut out = ResourceLimits {
        strict: args.strict,
        ..ResourceLimits::default()
    };
    if let Some(b) = val("--memory", &args.memory, parse::size)? {
        out.memory_bytes = check(
            "--memory",
            ResourceLimits {
                memory_bytes: Some(b),
                ..d()
            },
        )?
        .memory_bytes;
    }
    if let Some(c) = val("--cpus", &args.cpus, parse::cpus)? {
        out.cpus = check(
            "--cpus",
            ResourceLimits {
                cpus: Some(c),
                ..d()
            },
        )?
        .cpus;
    }
    if let Some(n) = val("--pids", &args.pids, parse::count)? {
        out.pids = check(
            "--pids",
            ResourceLimits {
                pids: Some(n),
                ..d()
            },
        )?
        .pids;
    }
    if let Some(t) = val("--timeout", &args.timeout, parse::duration)? {
        out.wall_timeout = check(
            "--timeout",
            ResourceLimits {
                wall_timeout: Some(t),
                ..d()
            },
        )?
        .wall_timeout;
    }
    if let Some(t) = val("--cpu-time", &args.cpu_time, parse::duration)? {
        out.cpu_time = check(
            "--cpu-time",
            ResourceLimits {
                cpu_time: Some(t),
                ..d()
            },
        )?
        .cpu_time;
    }
    if let Some(b) = val("--file-size", &args.file_size, parse::size)? {
        out.file_size_bytes = check(
            "--file-size",
            ResourceLimits {
                file_size_bytes: Some(b),
                ..d()
            },
        )?
        .file_size_bytes;
    }
    if let Some(n) = val("--open-files", &args.open_files, parse::count)? {
        out.open_files = check(
            "--open-files",
            ResourceLimits {
                open_files: Some(n),
                ..d()
            },
        )?
        .open_files;
    }
    if let Some(b) = val("--output-limit", &args.output_limit, parse::size)? {
        out.output_bytes = check(
            "--output-limit",
            ResourceLimits {
                output_bytes: Some(b),
                ..d()
            },
        )?
        .output_bytes;
    }
    out.validate()
        .map_err(|e| CliError::new("invalid_input", core_message(&e)))?;
    Ok(out)
}

/// Builds the request (without the output sink) from the flags.
fn request(args: &RunArgs) -> Result<ExecutionRequest, CliError> {
    if args.command.first().is_none_or(|c| c.is_empty()) {
        return Err(CliError::new(
            "invalid_flag",
            "no command given: usage `runbox run [OPTIONS] -- COMMAND [ARGS...]`",
        ));
    }
    if args.command.iter().any(|a| a.contains('\0')) {
        return Err(CliError::new(
            "invalid_flag",
            "the command contains a NUL byte",
        ));
    }
    let mut req = ExecutionRequest::new(args.command.clone())
        .limits(limits(args)?)
        .backend(BackendPreference::Named(args.backend.clone()));
    for spec in &args.env {
        let (k, v) = parse::env(spec).map_err(|m| CliError::flag("--env", m))?;
        req = req.env(k, v);
    }
    for spec in &args.copy_in {
        let (host, sandbox) = parse::copy_in(spec).map_err(|m| CliError::flag("--copy-in", m))?;
        req = req.file_in(host, sandbox);
    }
    for spec in &args.copy_out {
        let (sandbox, host) = parse::copy_out(spec).map_err(|m| CliError::flag("--copy-out", m))?;
        req = req.file_out(sandbox, host);
    }
    if let Some(w) = &args.workdir {
        orchestrator_core::paths::sandbox_relative(w)
            .map_err(|e| CliError::flag("--workdir", core_message(&e)))?;
        req = req.workdir(w.clone());
    }
    if let Some(image) = &args.image {
        if image.trim().is_empty() {
            return Err(CliError::flag("--image", "the image name is empty"));
        }
        if args.backend == "native" {
            return Err(CliError::flag(
                "--image",
                "the native backend does not use images (add --backend docker)",
            ));
        }
        req = req.image(image.clone());
    }
    if let Some(src) = &args.stdin {
        req = req.stdin(read_stdin(src)?);
    }
    req.validate()
        .map_err(|e| CliError::new("invalid_input", core_message(&e)))?;
    Ok(req)
}

/// The most `--stdin` runbox reads (it is handed to the command whole).
pub const MAX_STDIN: u64 = 256 << 20;

fn read_stdin(src: &str) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    let read = if src == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_STDIN + 1)
            .read_to_end(&mut buf)
            .map_err(|e| CliError::flag("--stdin", format!("cannot read runbox's stdin: {e}")))
    } else {
        std::fs::File::open(src)
            .and_then(|f| f.take(MAX_STDIN + 1).read_to_end(&mut buf))
            .map_err(|e| CliError::flag("--stdin", format!("cannot read {src:?}: {e}")))
    };
    read?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(CliError::flag(
            "--stdin",
            format!("{src:?} is larger than {} MiB", MAX_STDIN >> 20),
        ));
    }
    Ok(buf)
}

/// Renders docker image pulls as a progress bar on stderr (hidden when
/// stderr is not a terminal).
#[derive(Default)]
struct PullBar {
    state: Mutex<PullState>,
}

#[derive(Default)]
struct PullState {
    bar: Option<indicatif::ProgressBar>,
    layers: std::collections::BTreeMap<String, (u64, u64)>,
}

impl PullBar {
    fn on_event(&self, ev: &PullEvent) {
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let bar = st.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} pulling {msg} {wide_bar} {bytes}/{total_bytes}",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_message(format!("{}: {}", ev.image, ev.status));
        if let (Some(layer), Some(cur)) = (&ev.layer, ev.current) {
            let total = ev.total.unwrap_or(0);
            st.layers.insert(layer.clone(), (cur, total));
            let (c, t) = st
                .layers
                .values()
                .fold((0u64, 0u64), |(a, b), (c, t)| (a + c, b + t));
            if let Some(bar) = &st.bar {
                bar.set_length(t);
                bar.set_position(c);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut st) = self.state.lock() {
            if let Some(bar) = st.bar.take() {
                bar.finish_and_clear();
            }
        }
    }
}

/// The backend instance for `--backend NAME`.
fn backend(name: &str, pulls: &Arc<PullBar>) -> Result<Arc<dyn Orchestrator>, CliError> {
    if registry::find(name).is_none() {
        return Err(CliError::flag(
            "--backend",
            format!(
                "unknown backend {name:?} (registered: {})",
                registry::names().join(", ")
            ),
        ));
    }
    let made = if name == "docker" {
        let p = pulls.clone();
        let config =
            DockerConfig::from_env().pull_progress(PullProgress::new(move |ev| p.on_event(ev)));
        DockerOrchestrator::new(config).map(|d| Arc::new(d) as Arc<dyn Orchestrator>)
    } else {
        registry::create(name)
    };
    made.map_err(|e| {
        CliError::new(e.kind(), format!("cannot create backend {name}: {e}")).on("--backend")
    })
}

/// Whether a backend can serve requests, asked within a deadline (no answer
/// in time counts as unavailable).
pub async fn availability(orch: &dyn Orchestrator) -> orchestrator_core::Availability {
    match tokio::time::timeout(AVAILABILITY_DEADLINE, orch.is_available()).await {
        Ok(a) => a,
        Err(_) => orchestrator_core::Availability::no(format!(
            "no answer within {} s",
            AVAILABILITY_DEADLINE.as_secs()
        )),
    }
}

/// Checks that a backend can serve requests; the reason when it cannot.
pub async fn check_available(orch: &dyn Orchestrator) -> Result<(), String> {
    let a = availability(orch).await;
    if a.available {
        Ok(())
    } else {
        Err(a.reason.unwrap_or_else(|| "no reason given".into()))
    }
}

/// Opens (creating) the SQLite store under the state directory.
pub fn open_store(dir: &Path) -> Result<SqliteStore, CliError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            CliError::new("state_dir", format!("cannot create {}: {e}", dir.display()))
                .on("--state-dir")
        })?;
    let db = dir.join(crate::DB_FILE);
    SqliteStore::open(&db).map_err(|e| {
        CliError::new("state_dir", format!("cannot open {}: {e}", db.display())).on("--state-dir")
    })
}

/// Passes output through; a stdout closed by the reader (`| head`) is
/// signalled on `closed`, and `run` then stops the command as SIGPIPE
/// would.
fn sink(closed: Arc<tokio::sync::Notify>) -> OutputSink {
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

/// `requested` of a limit in JSON: bytes, cores, counts, milliseconds.
pub(crate) fn limit_value(v: &LimitValue) -> Value {
    match v {
        LimitValue::Bytes(b) => json!(b),
        LimitValue::Cpus(c) => json!(c),
        LimitValue::Count(n) => json!(n),
        LimitValue::Duration(d) => json!(d.as_millis() as u64),
    }
}

/// One entry per requested limit.
fn limits_json(requested: &ResourceLimits, report: &LimitReport) -> Value {
    let mut m = Map::new();
    for (kind, value) in requested.requested() {
        let entry = report.get(kind);
        m.insert(
            kind.name().to_string(),
            json!({
                "requested": limit_value(&value),
                "enforced_by": entry.and_then(|e| e.enforced_by).map(|m| m.name()),
                "note": entry
                    .map(|e| e.note.clone())
                    .unwrap_or_else(|| Some("the backend did not report this limit".into())),
            }),
        );
    }
    Value::Object(m)
}

/// The `--json` object of a finished run.
pub fn result_json(limits: &ResourceLimits, r: &ExecutionResult) -> Value {
    let o = &r.output;
    let error = match &o.status {
        ExitStatus::FailedToStart { message, .. } => Some(message.clone()),
        _ => None,
    };
    let mut v = json!({
        "status": o.status.name(),
        "exit_code": o.status.code(),
        "signal": o.status.signal(),
        "stdout": o.stdout_str(),
        "stderr": o.stderr_str(),
        "stdout_truncated": o.stdout_truncated,
        "stderr_truncated": o.stderr_truncated,
        "wall_time_ms": o.wall_time.as_millis() as u64,
        "cpu_time_ms": o.cpu_time.map(|d| d.as_millis() as u64),
        "peak_memory_bytes": o.peak_memory,
        "backend": r.backend,
        "workspace_id": r.workspace_id.as_str(),
        "execution_id": r.execution_id.as_str(),
        "limits": limits_json(limits, &r.limit_report),
    });
    // Only a command that could not start carries the OS's message.
    if let (Some(e), Some(obj)) = (error, v.as_object_mut()) {
        obj.insert("error".into(), json!(e));
    }
    v
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

/// Runs `runbox run`; returns the exit code. Errors are runbox's own.
pub async fn run(
    args: RunArgs,
    state_dir: Result<std::path::PathBuf, CliError>,
) -> Result<u8, CliError> {
    // Reading `--stdin -` may block on a terminal: a Ctrl-C there still
    // ends runbox the default way, as nothing is provisioned yet.
    let req = request(&args)?;
    let mut signals = crate::signals::Terminations::install();
    let requested_limits = req.limits.clone();
    let pulls = Arc::new(PullBar::default());
    let orch = backend(&args.backend, &pulls)?;
    let store = open_store(&state_dir?)?;
    if let Err(reason) = check_available(orch.as_ref()).await {
        return Err(CliError::new(
            "unavailable",
            format!("backend {} is unavailable: {reason}", args.backend),
        )
        .on("--backend"));
    }
    let builder = ExecutionService::builder().store(store);
    let builder = if args.backend == "docker" {
        builder.docker_orchestrator(orch)
    } else {
        builder.orchestrator(orch)
    };
    let service = builder
        .build()
        .map_err(|e| from_service(&e, &args.backend))?;
    let stdout_closed = Arc::new(tokio::sync::Notify::new());
    let req = if args.json {
        req
    } else {
        req.output(sink(stdout_closed.clone()))
    };

    let outcome = tokio::select! {
        r = service.execute(req) => Some(r),
        _ = stdout_closed.notified() => {
            // Like a shell pipeline: the reader went away, the command ends.
            let _ = tokio::time::timeout(Duration::from_secs(15), service.wait_for_cleanups()).await;
            return Ok(128 + 13);
        }
        sig = signals.received() => {
            pulls.finish();
            // Dropping the execute future tears its sandbox down on a
            // spawned task; wait for it (bounded).
            let _ = tokio::time::timeout(Duration::from_secs(15), service.wait_for_cleanups()).await;
            let e = CliError::new("interrupted", format!("interrupted by signal {sig}; the sandbox was removed"))
                .code((128 + sig) as u8);
            return Err(e);
        }
    };
    pulls.finish();
    let result = match outcome {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            let mut err = from_service(&e, &args.backend);
            // A missing image is the image flag's fault.
            if let Some(image) = &args.image {
                if err.flag.as_deref() == Some("--backend") && err.message.contains(image.as_str())
                {
                    err.flag = Some("--image".into());
                }
            }
            return Err(err);
        }
        None => {
            return Err(CliError::new(
                "internal",
                "execution ended without a result",
            ))
        }
    };
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
        code = crate::error::EXIT_RUNBOX;
    }
    if args.json {
        let mut v = result_json(&requested_limits, &result);
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
    tracing::info!(execution = %result.execution_id, status = %result.output.status, code, "done");
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

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

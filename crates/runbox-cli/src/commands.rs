//! `runbox backends`, `list`, `show` and `gc`.

use std::path::Path;

use execution_service::{
    ExecutionId, ExecutionRecord, ExecutionService, ExecutionStore, IsolationSummary, ListFilter,
    RecoveredExecution, RecoveryReport, SqliteStore, DEFAULT_BACKEND,
};
use orchestrator_core::{registry, BackendOptions, Capabilities};
use serde_json::{json, Value};

use crate::error::CliError;
use crate::run::{availability, check_available, open_store, print_json};

/// Exit code of `list`/`show`/`gc` when what was asked for does not exist or
/// recovery met errors.
pub const EXIT_FAILED: u8 = 1;

fn capabilities_text(c: &Capabilities) -> String {
    let mut v = Vec::new();
    for (on, name) in [
        (c.copy, "copy"),
        (c.background, "background"),
        (c.direct_access, "direct-access"),
        (c.network_isolation, "network-isolation"),
        (c.isolation, "isolation"),
        (c.mounts, "mounts"),
        (c.oom_detection, "oom-detection"),
    ] {
        if on {
            v.push(name.to_string());
        }
    }
    let limits: Vec<&str> = c.limits.iter().map(|k| k.name()).collect();
    format!(
        "{}; limits: {}",
        if v.is_empty() {
            "-".into()
        } else {
            v.join(", ")
        },
        if limits.is_empty() {
            "none".into()
        } else {
            limits.join(", ")
        }
    )
}

/// Whether new workspaces get full isolation; why not is the backend's
/// availability reason, printed above it.
fn backend_isolation_text(c: &Capabilities, has_reason: bool) -> &'static str {
    match (c.isolation, has_reason) {
        (true, _) => "full",
        (false, true) => "none (full isolation is not available: see the reason above)",
        (false, false) => "none (this backend does not isolate)",
    }
}

/// `runbox backends [--json]`.
pub async fn backends(json_out: bool) -> Result<u8, CliError> {
    let mut tasks = Vec::new();
    for reg in registry::backends() {
        tasks.push(tokio::spawn(async move {
            let made =
                tokio::task::spawn_blocking(move || (reg.factory)(&BackendOptions::new())).await;
            let (available, reason, caps) = match made {
                Ok(Ok(o)) => {
                    let caps = o.capabilities();
                    let a = availability(o.as_ref()).await;
                    (a.is_available(), a.reason().map(str::to_string), Some(caps))
                }
                Ok(Err(e)) => (false, Some(format!("cannot create it: {e}")), None),
                Err(e) => (false, Some(format!("cannot create it: {e}")), None),
            };
            (reg.name, reg.description, available, reason, caps)
        }));
    }
    let mut rows = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => rows.push(r),
            Err(e) => {
                return Err(CliError::new(
                    "internal",
                    format!("backend check failed: {e}"),
                ))
            }
        }
    }
    if json_out {
        let list: Vec<Value> = rows
            .iter()
            .map(|(name, desc, available, reason, caps)| {
                json!({
                    "name": name,
                    "description": desc,
                    "default": *name == DEFAULT_BACKEND,
                    "available": available,
                    "reason": reason,
                    // Full isolation for new workspaces; when false, the
                    // reason says why (null: the backend could not be
                    // created).
                    "isolation": caps.as_ref().map(|c| c.isolation),
                    "capabilities": caps.as_ref().map(runbox_server::capabilities_json),
                })
            })
            .collect();
        print_json(&json!({ "backends": list }));
    } else {
        for (name, desc, available, reason, caps) in &rows {
            let default = if *name == DEFAULT_BACKEND {
                " (default)"
            } else {
                ""
            };
            let state = if *available {
                "available"
            } else {
                "unavailable"
            };
            println!("{name}{default}: {state} — {desc}");
            if let Some(r) = reason {
                println!(
                    "    {}: {}",
                    if *available { "note" } else { "reason" },
                    crate::error::one_line(r)
                );
            }
            if let Some(c) = caps {
                println!("    can: {}", capabilities_text(c));
                println!(
                    "    isolation: {}",
                    backend_isolation_text(c, reason.is_some())
                );
            }
        }
    }
    Ok(0)
}

/// Opens the store for reading: `None` when nothing was ever recorded there.
fn read_store(dir: &Path) -> Result<Option<SqliteStore>, CliError> {
    if !dir.join(crate::DB_FILE).exists() {
        return Ok(None);
    }
    open_store(dir).map(Some)
}

fn store_err(e: impl std::fmt::Display) -> CliError {
    CliError::new("store", format!("execution store: {e}"))
}

fn record_json(r: &ExecutionRecord, full: bool) -> Value {
    let result = r.result.as_ref().map(|s| {
        json!({
            "status": s.status,
            "exit_code": s.exit_code,
            "signal": s.signal,
            "wall_time_ms": s.wall_ms,
            "cpu_time_ms": s.cpu_ms,
            "peak_memory_bytes": s.peak_memory,
            "stdout_bytes": s.stdout_bytes,
            "stderr_bytes": s.stderr_bytes,
            "stdout_truncated": s.stdout_truncated,
            "stderr_truncated": s.stderr_truncated,
        })
    });
    let mut v = json!({
        "execution_id": r.id.as_str(),
        "state": r.state.name(),
        "command": r.request.command,
        "backend": r.backend,
        "workspace_id": r.sandbox_id,
        "sandbox_released": r.sandbox_released,
        "result": result,
        "error": r.error,
        "owner_pid": r.owner.as_ref().map(|o| o.pid),
        "created_at_ms": r.created_at_ms,
        "started_at_ms": r.started_at_ms,
        "finished_at_ms": r.finished_at_ms,
    });
    if full {
        // `requested` as numbers, the same as `run --json` prints them
        // (from the stored request), with what the backend reported.
        let limits: serde_json::Map<String, Value> = r
            .request
            .limits
            .requested()
            .into_iter()
            .map(|(kind, value)| {
                let applied = r.limits_applied.iter().find(|l| l.kind == kind.name());
                (
                    kind.name().to_string(),
                    json!({
                        "requested": runbox_server::limit_value(&value),
                        "enforced_by": applied.and_then(|l| l.enforced_by.clone()),
                        "note": applied.and_then(|l| l.note.clone()),
                    }),
                )
            })
            .collect();
        let req = &r.request;
        if let Value::Object(m) = &mut v {
            m.insert("limits".into(), Value::Object(limits));
            m.insert(
                "isolation".into(),
                r.isolation.as_ref().map_or(Value::Null, isolation_json),
            );
            m.insert(
                "mounts".into(),
                json!(req
                    .mounts
                    .iter()
                    .map(|m| json!({
                        "host": m.host().display().to_string(),
                        "sandbox": m.sandbox().to_string(),
                        "read_only": m.is_read_only(),
                    }))
                    .collect::<Vec<_>>()),
            );
            m.insert("env".into(), json!(req.env));
            m.insert("image".into(), json!(req.image));
            m.insert(
                "workdir".into(),
                json!(req.workdir.as_ref().map(|w| w.to_string())),
            );
            m.insert(
                "copy_in".into(),
                json!(req
                    .files_in
                    .iter()
                    .map(|f| json!({"host": f.host.display().to_string(), "sandbox": f.sandbox.to_string()}))
                    .collect::<Vec<_>>()),
            );
            m.insert(
                "copy_out".into(),
                json!(req
                    .files_out
                    .iter()
                    .map(|f| json!({"sandbox": f.sandbox.to_string(), "host": f.host.display().to_string()}))
                    .collect::<Vec<_>>()),
            );
            m.insert(
                "stdin_bytes".into(),
                json!(req.stdin.as_ref().map(Vec::len)),
            );
        }
    }
    v
}

/// A recorded isolation summary in the shape of `run --json`'s
/// `isolation` object.
fn isolation_json(s: &IsolationSummary) -> Value {
    json!({
        "requested": s.requested,
        "level": s.level,
        "network": s.network,
        "enforced_by": s.enforced_by,
        "note": s.note,
    })
}

/// `full (requested auto, network none; by user-namespace, seccomp)`.
fn isolation_text(s: &IsolationSummary) -> String {
    let by = if s.enforced_by.is_empty() {
        String::new()
    } else {
        format!("; by {}", s.enforced_by.join(", "))
    };
    let note = s
        .note
        .as_deref()
        .map(|n| format!(": {}", crate::error::one_line(n)))
        .unwrap_or_default();
    format!(
        "{} (requested {}, network {}{by}){note}",
        s.level, s.requested, s.network
    )
}

fn outcome_text(r: &ExecutionRecord) -> String {
    match (&r.result, &r.error) {
        (Some(s), _) => match (s.exit_code, s.signal) {
            (Some(c), _) => format!("{} {c}", s.status),
            (None, Some(sig)) => format!("{} {sig}", s.status),
            _ => s.status.clone(),
        },
        (None, Some(_)) => "-".into(),
        (None, None) => "-".into(),
    }
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `runbox list [--json]`.
pub async fn list(dir: &Path, json_out: bool) -> Result<u8, CliError> {
    let records = match read_store(dir)? {
        None => Vec::new(),
        Some(store) => store.list(&ListFilter::all()).await.map_err(store_err)?,
    };
    if json_out {
        let v: Vec<Value> = records.iter().map(|r| record_json(r, false)).collect();
        print_json(&json!({ "executions": v }));
        return Ok(0);
    }
    if records.is_empty() {
        println!("no executions recorded in {}", dir.display());
        return Ok(0);
    }
    println!(
        "{:<32} {:<10} {:<8} {:<24} COMMAND",
        "ID", "STATE", "BACKEND", "RESULT"
    );
    for r in &records {
        println!(
            "{:<32} {:<10} {:<8} {:<24} {}",
            r.id.as_str(),
            r.state.name(),
            r.backend.as_deref().unwrap_or("-"),
            outcome_text(r),
            shell_words(&r.request.command)
        );
    }
    Ok(0)
}

/// `runbox show ID [--json]`.
pub async fn show(dir: &Path, id: &str, json_out: bool) -> Result<u8, CliError> {
    let eid = ExecutionId::new(id).map_err(|e| {
        CliError::new(
            "invalid_flag",
            format!(
                "invalid execution id {id:?}: {}",
                crate::error::core_message(&e)
            ),
        )
    })?;
    let rec = match read_store(dir)? {
        None => None,
        Some(store) => store.get(&eid).await.map_err(store_err)?,
    };
    let Some(r) = rec else {
        return Err(CliError::new(
            "not_found",
            format!("no execution {id} recorded in {}", dir.display()),
        )
        .code(EXIT_FAILED));
    };
    if json_out {
        print_json(&record_json(&r, true));
        return Ok(0);
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    println!("execution:  {}", r.id);
    println!("state:      {}", r.state);
    println!("command:    {}", shell_words(&r.request.command));
    println!("backend:    {}", opt(r.backend.clone()));
    println!(
        "workspace:  {}{}",
        opt(r.sandbox_id.clone()),
        if r.sandbox_released { " (removed)" } else { "" }
    );
    if let Some(s) = &r.result {
        println!("result:     {}", outcome_text(&r));
        println!("wall time:  {} ms", s.wall_ms);
        if let Some(c) = s.cpu_ms {
            println!("cpu time:   {c} ms");
        }
        if let Some(m) = s.peak_memory {
            println!("peak mem:   {m} bytes");
        }
        println!(
            "output:     {} bytes stdout{}, {} bytes stderr{}",
            s.stdout_bytes,
            if s.stdout_truncated {
                " (truncated)"
            } else {
                ""
            },
            s.stderr_bytes,
            if s.stderr_truncated {
                " (truncated)"
            } else {
                ""
            }
        );
    }
    if let Some(i) = &r.isolation {
        println!("isolation:  {}", isolation_text(i));
    }
    for m in &r.request.mounts {
        println!(
            "mount:      {} -> {} ({})",
            m.host().display(),
            m.sandbox(),
            if m.is_read_only() { "ro" } else { "rw" }
        );
    }
    for l in &r.limits_applied {
        println!(
            "limit:      {} = {}: {}{}",
            l.kind,
            l.requested,
            l.enforced_by.as_deref().unwrap_or("NOT ENFORCED"),
            l.note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    if let Some(e) = &r.error {
        println!("error:      {}", crate::error::one_line(e));
    }
    if let Some(o) = &r.owner {
        println!("owner pid:  {}", o.pid);
    }
    Ok(0)
}

fn recovered_json(r: &RecoveredExecution) -> Value {
    json!({
        "execution_id": r.id.as_str(),
        "previous_state": r.previous_state.name(),
        "backend": r.backend,
        "workspace_id": r.sandbox_id,
        "owner_pid": r.owner_pid,
        "cleaned": r.cleaned,
    })
}

fn recovered_text(verb: &str, r: &RecoveredExecution) -> String {
    format!(
        "{verb} {} (was {}{}{}{}): sandbox {}",
        r.id,
        r.previous_state,
        r.backend
            .as_deref()
            .map(|b| format!(", backend {b}"))
            .unwrap_or_default(),
        r.sandbox_id
            .as_deref()
            .map(|s| format!(", workspace {s}"))
            .unwrap_or_default(),
        r.owner_pid
            .map(|p| format!(", runbox pid {p} gone"))
            .unwrap_or_default(),
        if r.cleaned { "removed" } else { "NOT removed" }
    )
}

/// `runbox gc [--json]`: the service's recovery, on every registered
/// backend that is available (the others are reported as skipped).
pub async fn gc(dir: &Path, json_out: bool) -> Result<u8, CliError> {
    let store = open_store(dir)?;
    let mut builder = ExecutionService::builder().store(store);
    let mut skipped: Vec<(String, String)> = Vec::new();
    for reg in registry::backends() {
        match registry::create(reg.name) {
            Ok(b) => match check_available(b.as_ref()).await {
                Ok(()) => builder = builder.backend_named(reg.name, b),
                Err(r) => skipped.push((reg.name.into(), r)),
            },
            Err(e) => skipped.push((reg.name.into(), e.to_string())),
        }
    }
    let service = builder
        .build()
        .map_err(|e| CliError::new(e.kind(), e.to_string()))?;
    let report: RecoveryReport = service
        .recover()
        .await
        .map_err(|e| CliError::new(e.kind(), e.to_string()))?;
    let code = if report.errors.is_empty() {
        0
    } else {
        EXIT_FAILED
    };
    if json_out {
        print_json(&json!({
            "recovered": report.recovered.iter().map(recovered_json).collect::<Vec<_>>(),
            "released": report.released.iter().map(recovered_json).collect::<Vec<_>>(),
            "skipped_live": report.skipped_live.iter().map(|i| i.as_str()).collect::<Vec<_>>(),
            "reaped": report.reaped.iter().map(|(b, items)| json!({"backend": b, "items": items})).collect::<Vec<_>>(),
            "skipped_backends": skipped.iter().map(|(b, r)| json!({"backend": b, "reason": r})).collect::<Vec<_>>(),
            "errors": report.errors,
        }));
        return Ok(code);
    }
    for r in &report.recovered {
        println!("{}", recovered_text("recovered", r));
    }
    for r in &report.released {
        println!("{}", recovered_text("released", r));
    }
    for (backend, items) in &report.reaped {
        for i in items {
            println!("reaped ({backend}): {i}");
        }
    }
    for id in &report.skipped_live {
        println!("left alone {id}: its runbox process is still running");
    }
    for (b, r) in &skipped {
        println!("skipped backend {b}: {}", crate::error::one_line(r));
    }
    for e in &report.errors {
        eprintln!("runbox: gc: {}", crate::error::one_line(e));
    }
    if report.is_clean() {
        println!("nothing to clean up");
    }
    Ok(code)
}

//! The native lifecycle figures: host processes (isolation none) and the
//! isolated sandbox (isolation full), each plain and with limits, against
//! the bare spawn, and the isolating tools (bwrap, unshare) measured in the
//! same interleaved run; then throughput and memory.

use std::path::PathBuf;
use std::time::Duration;

use execution_service::ExecutionService;
use orchestrator_core::{IsolationLevel, IsolationMode, Orchestrator, ResourceLimits};

use super::{against, also_against, figure, memory, throughput, Figure};
use crate::timed::ms;
use crate::timed::native::{bare_spawn, host_dirs, isolation_of, lifecycle, service};
use crate::timed::tools::{Tool, BWRAP, UNSHARE};
use crate::{BoxError, Opts};

/// The isolated lifecycle figures' name (the throughput figure names it).
const ISOLATED: &str = "native lifecycle, isolation full (create, copy in, run, copy out, cleanup)";

/// The native lifecycle figures against the bare spawn: isolation none
/// (plain, with limits, host files on another filesystem; the figures
/// earlier targets were set on), isolation full (plain, with limits; also
/// against bwrap and unshare), the tools themselves; then throughput and
/// the memory per live workspace.
pub async fn figures(o: &Opts, figures: &mut Vec<Figure>) -> Result<(), BoxError> {
    let n = if o.quick { 30 } else { 400 };
    let warm = if o.quick { 5 } else { 30 };
    let (scratch, tmp) = host_dirs()?;
    let dir = scratch.path();
    // Host processes, as before isolation existed: set explicitly, since
    // the backend's default (auto) now isolates where it can.
    let (host, _) = service(IsolationMode::None)?;
    expect_level(&host, dir, IsolationLevel::None).await?;
    let isolated = isolated_service(dir).await?;
    let tools = [usable(&BWRAP).await, usable(&UNSHARE).await];
    for (tool, found) in &tools {
        if let Err(why) = found {
            eprintln!("runbox-bench: no {} baseline: {why}", tool.label);
        }
    }
    if let Err(why) = &isolated {
        eprintln!("runbox-bench: no isolated figures: {why}");
    }
    let limits = ResourceLimits::builder()
        .memory_bytes(256 << 20)
        .pids(64)
        .wall_timeout(Duration::from_secs(30))
        .build()?;

    for i in 0..warm {
        bare_spawn().await?;
        lifecycle(&host, dir, i, None).await?;
        if let Ok(iso) = &isolated {
            lifecycle(iso, dir, i, None).await?;
        }
        for (tool, found) in &tools {
            if let Ok(p) = found {
                tool.run(p).await?;
            }
        }
    }
    // Interleave the series so drift hits all of them alike.
    let (mut base, mut plain, mut limited, mut on_tmp) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut iso_plain, mut iso_limited) = (Vec::new(), Vec::new());
    let mut by_tool = vec![Vec::new(); tools.len()];
    for i in 0..n {
        base.push(ms(bare_spawn().await?));
        plain.push(ms(lifecycle(&host, dir, i, None).await?));
        limited.push(ms(lifecycle(&host, dir, i, Some(&limits)).await?));
        if let Some(t) = &tmp {
            on_tmp.push(ms(lifecycle(&host, t.path(), i, None).await?));
        }
        if let Ok(iso) = &isolated {
            iso_plain.push(ms(lifecycle(iso, dir, i, None).await?));
            iso_limited.push(ms(lifecycle(iso, dir, i, Some(&limits)).await?));
        }
        for ((tool, found), series) in tools.iter().zip(&mut by_tool) {
            if let Ok(p) = found {
                series.push(ms(tool.run(p).await?));
            }
        }
    }

    let base = figure("baseline: spawn+wait /bin/true (tokio)", "ms", base);
    let host_note = format!(
        "isolation none (host processes); host files in {}",
        dir.display()
    );
    let mut f = against(
        figure(
            "native lifecycle, isolation none (create, copy in, run /bin/true, copy out, cleanup)",
            "ms",
            plain,
        ),
        &base,
    );
    f.note = Some(host_note.clone());
    figures.push(f);
    let mut f = against(
        figure(
            "native lifecycle, isolation none, memory+pids+timeout limits",
            "ms",
            limited,
        ),
        &base,
    );
    f.note = Some(host_note);
    figures.push(f);
    if let Some(t) = &tmp {
        let mut f = against(
            figure(
                "native lifecycle, isolation none, host files in $TMPDIR (another filesystem)",
                "ms",
                on_tmp,
            ),
            &base,
        );
        f.note = Some(format!(
            "isolation none; host files in {}",
            t.path().display()
        ));
        figures.push(f);
    }

    let tool_figures: Vec<Figure> = tools
        .iter()
        .zip(by_tool)
        .map(|((tool, found), series)| tool_figure(tool, found, series, &base))
        .collect();
    let isolated_figures = [
        (ISOLATED.to_string(), iso_plain),
        (
            "native lifecycle, isolation full, memory+pids+timeout limits".to_string(),
            iso_limited,
        ),
    ];
    for (name, series) in isolated_figures {
        let f = match &isolated {
            Ok(_) => {
                let mut f = against(figure(&name, "ms", series), &base);
                for (tool, t) in tools.iter().map(|(t, _)| t).zip(&tool_figures) {
                    if !t.samples.is_empty() {
                        f = also_against(f, tool.label, t);
                    }
                }
                f.note = Some(format!(
                    "isolation full (sandbox init per workspace); host files in {}",
                    dir.display()
                ));
                f
            }
            Err(why) => skipped(&name, why),
        };
        figures.push(f);
    }

    let base_p50 = base.p50;
    let base_name = base.name.clone();
    figures.push(base);
    figures.extend(tool_figures);

    let isolated = isolated.ok();
    figures
        .extend(throughput::figures(o, &host, isolated.as_ref(), dir, base_p50, &base_name).await?);
    figures.push(memory::per_live_workspace(o, &host).await?);
    Ok(())
}

/// A service whose workspaces are isolated (`full`), checked on one
/// lifecycle; `Err` with the reason when this host cannot isolate.
async fn isolated_service(
    dir: &std::path::Path,
) -> Result<Result<ExecutionService, String>, BoxError> {
    let (iso, native) = service(IsolationMode::Full)?;
    let avail = native.is_available().await;
    if !avail.is_available() {
        return Ok(Err(format!(
            "full isolation unavailable here: {}",
            avail.reason().unwrap_or_default()
        )));
    }
    expect_level(&iso, dir, IsolationLevel::Full).await?;
    Ok(Ok(iso))
}

/// Fails unless a lifecycle on `service` runs at isolation `level`, so no
/// figure measures another path than the one it is named after.
async fn expect_level(
    service: &ExecutionService,
    dir: &std::path::Path,
    level: IsolationLevel,
) -> Result<(), BoxError> {
    let report = isolation_of(service, dir).await?;
    if report.level != level {
        return Err(format!(
            "expected isolation level {level}, the backend reported {} ({})",
            report.level,
            report.note.unwrap_or_default()
        )
        .into());
    }
    Ok(())
}

/// The tool's path when it is installed and runs here, else why not.
async fn usable(tool: &Tool) -> (Tool, Result<PathBuf, String>) {
    let Some(path) = tool.find() else {
        return (
            tool.clone(),
            Err(format!(
                "{} not installed (Debian package {}; `cargo xtask bench` installs it)",
                tool.label, tool.package
            )),
        );
    };
    match tool.run(&path).await {
        Ok(_) => (tool.clone(), Ok(path)),
        Err(e) => (tool.clone(), Err(format!("cannot run here: {e}"))),
    }
}

/// A tool's figure against the bare spawn, or why it was not measured.
fn tool_figure(
    tool: &Tool,
    found: &Result<PathBuf, String>,
    series: Vec<f64>,
    base: &Figure,
) -> Figure {
    let name = format!("baseline: {} /bin/true (new namespaces)", tool.label);
    match found {
        Ok(_) => {
            let mut f = against(figure(&name, "ms", series), base);
            f.note = Some(tool.command_line());
            f
        }
        Err(why) => skipped(&name, why),
    }
}

/// A figure that could not be measured, saying why (in the table and the
/// JSON, where a missing row would go unnoticed).
fn skipped(name: &str, why: &str) -> Figure {
    let mut f = figure(name, "ms", Vec::new());
    f.note = Some(format!("skipped: {why}"));
    f
}

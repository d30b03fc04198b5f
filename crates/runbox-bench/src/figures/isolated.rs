//! The isolation phase: the native lifecycle in a sandbox (isolation full,
//! plain, with limits, and with limits from a warm pool), bwrap and unshare
//! running `/bin/true`, and a
//! bare-spawn series, interleaved; the isolated lifecycle against the bare
//! spawn and against each tool; throughput at isolation full.

use std::path::{Path, PathBuf};

use execution_service::ExecutionService;
use orchestrator_core::{IsolationLevel, IsolationMode, Orchestrator, ResourceLimits};

use super::native::{expect_level, rounds};
use super::{against, also_against, figure, throughput, Figure};
use crate::timed::native::{bare_spawn, lifecycle, service, service_with_pool};
use crate::timed::tools::{Tool, BWRAP, UNSHARE};
use crate::timed::{cpu_ms, ms};
use crate::{BoxError, Opts};

/// What the isolation phase measured.
pub struct Isolated {
    /// The isolated lifecycles (or why they are missing).
    pub lifecycles: Vec<Figure>,
    /// The phase's bare spawn, then each tool (or why it is missing).
    pub baselines: Vec<Figure>,
    /// Throughput at isolation full.
    pub rates: Vec<Figure>,
}

/// The warm pool of the pooled figure.
const POOL: usize = 4;

/// The isolation phase, copying from and to `dir`.
pub async fn figures(o: &Opts, dir: &Path, limits: &ResourceLimits) -> Result<Isolated, BoxError> {
    let isolated = isolated_service(dir).await?;
    let pooled = match &isolated {
        Ok(_) => {
            let (svc, native) = service_with_pool(IsolationMode::Full, POOL)?;
            native.warm_up().await?;
            Some((svc, native))
        }
        Err(_) => None,
    };
    if let Err(why) = &isolated {
        eprintln!("runbox-bench: no isolated figures: {why}");
    }
    let mut tools = Vec::new();
    for tool in [BWRAP, UNSHARE] {
        let found = usable(&tool).await;
        if let Err(why) = &found {
            eprintln!("runbox-bench: no {} baseline: {why}", tool.label);
        }
        tools.push((tool, found));
    }

    let (n, warm) = rounds(o);
    for i in 0..warm {
        bare_spawn().await?;
        if let Ok(iso) = &isolated {
            lifecycle(iso, dir, i, None).await?;
        }
        if let Some((svc, _)) = &pooled {
            lifecycle(svc, dir, i, Some(limits)).await?;
        }
        for (tool, found) in &tools {
            if let Ok(p) = found {
                tool.run(p).await?;
            }
        }
    }
    // Interleaved, as in the host phase.
    let (mut base, mut plain, mut limited) = (Vec::new(), Vec::new(), Vec::new());
    let mut pooled_limited = Vec::new();
    // CPU time of this process (the service's) per bare spawn and per
    // pooled, limited lifecycle (refills included, as they happen).
    let (mut base_cpu, mut pooled_cpu) = (Vec::new(), Vec::new());
    let mut by_tool = vec![Vec::new(); tools.len()];
    for i in 0..n {
        let c0 = cpu_ms().0;
        base.push(ms(bare_spawn().await?));
        base_cpu.push(cpu_ms().0 - c0);
        if let Ok(iso) = &isolated {
            plain.push(ms(lifecycle(iso, dir, i, None).await?));
            limited.push(ms(lifecycle(iso, dir, i, Some(limits)).await?));
        }
        if let Some((svc, native)) = &pooled {
            let c0 = cpu_ms().0;
            pooled_limited.push(ms(lifecycle(svc, dir, i, Some(limits)).await?));
            // Paced: the refill its cleanup started finishes, untimed, before
            // the next series (as a service between requests).
            native.warm_up().await?;
            pooled_cpu.push(cpu_ms().0 - c0);
        }
        for ((tool, found), series) in tools.iter().zip(&mut by_tool) {
            if let Ok(p) = found {
                series.push(ms(tool.run(p).await?));
            }
        }
    }

    // Back to back: each lifecycle right after the last, the pool's
    // refills competing with them.
    let mut back_to_back = Vec::new();
    if let Some((svc, native)) = &pooled {
        native.warm_up().await?;
        for i in 0..n {
            back_to_back.push(ms(lifecycle(svc, dir, i, Some(limits)).await?));
        }
    }
    let mut base = figure(
        "baseline: spawn+wait /bin/true (tokio), isolation phase",
        "ms",
        base,
    );
    base.note = Some("the same bare spawn, interleaved with the isolated series".into());
    let tool_figures: Vec<Figure> = tools
        .iter()
        .zip(by_tool)
        .map(|((tool, found), series)| tool_figure(tool, found, series, &base))
        .collect();
    let mut lifecycles = Vec::new();
    for (name, series) in [
        (
            "native lifecycle, isolation full (create, copy in, run, copy out, cleanup)",
            plain,
        ),
        (
            "native lifecycle, isolation full, memory+pids+timeout limits",
            limited,
        ),
        (
            "native lifecycle, isolation full, memory+pids+timeout limits, warm pool of 4",
            pooled_limited,
        ),
        (
            "native lifecycle, isolation full, memory+pids+timeout limits, warm pool of 4, \
             back to back",
            back_to_back,
        ),
    ] {
        lifecycles.push(match &isolated {
            Ok(_) => {
                let mut f = against(figure(name, "ms", series), &base);
                for ((tool, _), t) in tools.iter().zip(&tool_figures) {
                    if !t.samples.is_empty() {
                        f = also_against(f, tool.label, t);
                    }
                }
                f.note = Some(format!(
                    "isolation full (a sandbox init per workspace); host files in {}",
                    dir.display()
                ));
                if let (true, Some((_, native))) = (name.contains("warm pool"), &pooled) {
                    let s = native.pool_stats();
                    let pacing = match name.contains("back to back") {
                        true => "back to back: the refills compete with the lifecycles",
                        false => "paced: the pool refilled, untimed, after each lifecycle",
                    };
                    f.note = Some(format!(
                        "{}; {pacing}; pool: {} from the pool, {} made fresh, {} refill failures",
                        f.note.unwrap_or_default(),
                        s.hits,
                        s.misses,
                        s.refill_failures
                    ));
                }
                f
            }
            Err(why) => skipped(name, why),
        });
    }
    if pooled.is_some() {
        let mut cpu_base = figure(
            "CPU time per bare spawn, in the spawning process",
            "ms",
            base_cpu,
        );
        cpu_base.note = Some("getrusage(RUSAGE_SELF) around each spawn + wait".into());
        let mut cpu = against(
            figure(
                "CPU time per execution in the service process, isolation full, \
                 memory+pids+timeout limits, warm pool of 4",
                "ms",
                pooled_cpu,
            ),
            &cpu_base,
        );
        cpu.note = Some(
            "getrusage(RUSAGE_SELF) around each lifecycle: the service's threads, \
             the pool's refills included; the sandbox processes are not this process"
                .into(),
        );
        lifecycles.push(cpu_base);
        lifecycles.push(cpu);
    }
    let mut rates = Vec::new();
    if let Ok(iso) = &isolated {
        rates.extend(throughput::figures(o, iso, "full", &[4], dir, &base, None).await?);
        rates.extend(
            throughput::figures(
                o,
                iso,
                "full, memory+pids+timeout limits",
                &[4],
                dir,
                &base,
                Some(limits),
            )
            .await?,
        );
    }
    if let Some((svc, _)) = &pooled {
        rates.extend(
            throughput::figures(
                o,
                svc,
                "full, memory+pids+timeout limits, warm pool of 4",
                &[4],
                dir,
                &base,
                Some(limits),
            )
            .await?,
        );
    }
    let mut baselines = vec![base];
    baselines.extend(tool_figures);
    Ok(Isolated {
        lifecycles,
        baselines,
        rates,
    })
}

/// A service whose workspaces are isolated (`full`), checked on one
/// lifecycle; `Err` with the reason when this host cannot isolate.
async fn isolated_service(dir: &Path) -> Result<Result<ExecutionService, String>, BoxError> {
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

/// The tool's path when it is installed and runs here, else why not.
async fn usable(tool: &Tool) -> Result<PathBuf, String> {
    let Some(path) = tool.find() else {
        return Err(format!(
            "{} not installed (Debian package {}; `cargo xtask bench` installs it)",
            tool.label, tool.package
        ));
    };
    match tool.run(&path).await {
        Ok(_) => Ok(path),
        Err(e) => Err(format!("cannot run here: {e}")),
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

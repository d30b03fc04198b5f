//! `--breakdown`: per-step medians of the native lifecycle, straight on the
//! backend (wall and CPU time per step, against the bare spawn), at
//! isolation none or `RUNBOX_BENCH_ISOLATION`.

use std::time::Instant;

use orchestrator_core::{CommandSpec, Orchestrator, SandboxPath, WorkspaceSpec};

use crate::figures::figure;
use crate::timed::native::{bare_spawn, host_dirs, profiling_isolation, service_with_pool};
use crate::timed::{cpu_ms, ms};
use crate::BoxError;

/// Per-step medians of the native lifecycle, straight on the backend (for
/// profiling; `--breakdown`).
pub async fn native() -> Result<(), BoxError> {
    let isolation = profiling_isolation()?;
    // RUNBOX_BENCH_POOL=N: a warm pool of N (refilled, untimed, between
    // iterations); RUNBOX_BENCH_LIMITS=1: memory + pids + timeout limits.
    let pool: usize = std::env::var("RUNBOX_BENCH_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let limited = std::env::var("RUNBOX_BENCH_LIMITS").is_ok_and(|v| v == "1");
    let (_, native) = service_with_pool(isolation, pool)?;
    let spec = match limited {
        true => WorkspaceSpec::new().limits(crate::figures::native::limits()?),
        false => WorkspaceSpec::new(),
    };
    println!("isolation {isolation}, pool {pool}, limits {limited}:");
    let (scratch, _) = host_dirs()?;
    let dir = scratch.path();
    let n = 1000;
    let names = [
        "create",
        "copy_to",
        "run",
        "copy_from",
        "cleanup",
        "total",
        "bare spawn",
    ];
    // Wall time and CPU time (this process, children excluded) per step.
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut cpu = vec![0.0f64; names.len()];
    let cmd = CommandSpec::new(["/bin/true"]).build()?;
    let input = SandboxPath::new("in")?;
    for i in 0..n {
        if pool > 0 {
            native.warm_up().await?;
        }
        let mut marks = Vec::with_capacity(6);
        let mark = || (Instant::now(), cpu_ms().0);
        marks.push(mark());
        let id = native.create_workspace(&spec).await?;
        marks.push(mark());
        native.copy_to(&id, &dir.join("input.txt"), &input).await?;
        marks.push(mark());
        native.run_command(&id, &cmd).await?;
        marks.push(mark());
        let out = dir.join(format!("o{i}"));
        native.copy_from(&id, &input, &out).await?;
        marks.push(mark());
        native.cleanup(&id).await?;
        marks.push(mark());
        let _ = std::fs::remove_file(out);
        let (b0, c0) = mark();
        bare_spawn().await?;
        let (b1, c1) = mark();
        for k in 0..5 {
            wall[k].push(ms(marks[k + 1].0 - marks[k].0));
            cpu[k] += marks[k + 1].1 - marks[k].1;
        }
        wall[5].push(ms(marks[5].0 - marks[0].0));
        cpu[5] += marks[5].1 - marks[0].1;
        wall[6].push(ms(b1 - b0));
        cpu[6] += c1 - c0;
    }
    for (k, name) in names.iter().enumerate() {
        let f = figure(name, "ms", std::mem::take(&mut wall[k]));
        println!(
            "{name:>12}: p50 {:.3} ms  p90 {:.3} ms  cpu {:.3} ms",
            f.p50,
            f.p90,
            cpu[k] / n as f64
        );
    }
    Ok(())
}

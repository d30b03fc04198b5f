//! `--cpu`: throughput and CPU cost per execution of the bare spawn, the
//! service lifecycle and the same steps straight on the backend (for
//! profiling throughput; RUNBOX_BENCH_N, _C, _MODE and _ISOLATION pick the
//! run).

use orchestrator_core::{CommandSpec, Orchestrator, SandboxPath, WorkspaceSpec};

use crate::timed::native::{bare_spawn, host_dirs, lifecycle, profiling_isolation, service};
use crate::timed::{cpu_ms, on_tasks};
use crate::BoxError;

/// Throughput and CPU cost per execution at concurrency 4, bare spawn against
/// the service lifecycle (`--cpu`; for profiling throughput).
pub async fn cost() -> Result<(), BoxError> {
    let n = std::env::var("RUNBOX_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let c = std::env::var("RUNBOX_BENCH_C")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let (dir, _) = host_dirs()?;
    // Isolation none unless RUNBOX_BENCH_ISOLATION says otherwise: the
    // backend's default (auto) isolates where it can.
    let isolation = profiling_isolation()?;
    let (service, native) = service(isolation)?;
    println!("isolation {isolation}:");
    // 0: bare spawn, 1: the service's lifecycle, 2: the same steps straight
    // on the backend (the difference is the service's own cost).
    // RUNBOX_BENCH_MODE=0|1|2 runs one mode only (to profile it).
    let modes: Vec<usize> = match std::env::var("RUNBOX_BENCH_MODE") {
        Ok(m) => vec![m.parse()?; 2],
        Err(_) => vec![0, 1, 2, 0, 1, 2],
    };
    for mode in modes {
        let (s0, c0) = cpu_ms();
        let (service, native, base) = (service.clone(), native.clone(), dir.path().to_path_buf());
        let took = on_tasks(c, n, move |i| {
            let (service, native, dir) = (service.clone(), native.clone(), base.clone());
            async move {
                match mode {
                    0 => {
                        bare_spawn().await?;
                    }
                    1 => {
                        lifecycle(&service, &dir, i, None).await?;
                    }
                    _ => {
                        let id = native.create_workspace(&WorkspaceSpec::new()).await?;
                        native
                            .copy_to(&id, &dir.join("input.txt"), &SandboxPath::new("input.txt")?)
                            .await?;
                        native
                            .run_command(&id, &CommandSpec::new(["/bin/true"]).build()?)
                            .await?;
                        let out = dir.join(format!("out-{i}.txt"));
                        native
                            .copy_from(&id, &SandboxPath::new("input.txt")?, &out)
                            .await?;
                        native.cleanup(&id).await?;
                        let _ = std::fs::remove_file(out);
                    }
                }
                Ok(())
            }
        })
        .await?;
        let wall = took.as_secs_f64();
        let (s1, c1) = cpu_ms();
        println!(
            "{:>10} c={c}: {:.0} exec/s, cpu/exec: self {:.3} ms, children {:.3} ms",
            ["bare", "service", "backend"][mode],
            n as f64 / wall,
            (s1 - s0) / n as f64,
            (c1 - c0) / n as f64
        );
    }
    Ok(())
}

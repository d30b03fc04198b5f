//! The native figures: lifecycle latency and throughput.

use std::time::Duration;

use execution_service::{ExecutionService, MemoryStore};
use orchestrator_core::ResourceLimits;

use super::{against, figure, memory, Figure};
use crate::timed::ms;
use crate::timed::native::{bare_spawn, host_dirs, lifecycle, throughput};
use crate::{BoxError, Opts};

/// The native lifecycle (plain, with limits, host files on another
/// filesystem) against the bare spawn, throughput at concurrency 1 to 16
/// against the bare spawn's single-core rate, and the memory per live
/// workspace.
pub async fn figures(o: &Opts, figures: &mut Vec<Figure>) -> Result<(), BoxError> {
    let n = if o.quick { 30 } else { 400 };
    let warm = if o.quick { 5 } else { 30 };
    let (scratch, tmp) = host_dirs()?;
    let dir = scratch.path();
    let service = ExecutionService::new(MemoryStore::new())?;
    let limits = ResourceLimits::builder()
        .memory_bytes(256 << 20)
        .pids(64)
        .wall_timeout(Duration::from_secs(30))
        .build()?;

    for i in 0..warm {
        bare_spawn().await?;
        lifecycle(&service, dir, i, None).await?;
    }
    // Interleave the series so drift hits all of them alike.
    let (mut base, mut plain, mut limited, mut on_tmp) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        base.push(ms(bare_spawn().await?));
        plain.push(ms(lifecycle(&service, dir, i, None).await?));
        limited.push(ms(lifecycle(&service, dir, i, Some(&limits)).await?));
        if let Some(t) = &tmp {
            on_tmp.push(ms(lifecycle(&service, t.path(), i, None).await?));
        }
    }
    let base = figure("baseline: spawn+wait /bin/true (tokio)", "ms", base);
    let mut f = against(
        figure(
            "native lifecycle (create, copy in, run /bin/true, copy out, cleanup)",
            "ms",
            plain,
        ),
        &base,
    );
    f.note = Some(format!("host files in {}", scratch.path().display()));
    figures.push(f);
    figures.push(against(
        figure(
            "native lifecycle with memory+pids+timeout limits",
            "ms",
            limited,
        ),
        &base,
    ));
    if let Some(t) = &tmp {
        let mut f = against(
            figure(
                "native lifecycle, host files in $TMPDIR (another filesystem)",
                "ms",
                on_tmp,
            ),
            &base,
        );
        f.note = Some(format!("host files in {}", t.path().display()));
        figures.push(f);
    }
    let base_rate = 1000.0 / base.p50;
    let base_rate_name = format!("{} (single-core rate, exec/s)", base.name);
    figures.push(base);

    // Enough executions per level that a level runs for about a second.
    let per_level = if o.quick { 40 } else { 2000 };
    let repeats = if o.quick { 1 } else { 3 };
    for c in [1usize, 2, 4, 8, 16] {
        let mut rates = Vec::new();
        for _ in 0..repeats {
            rates.push(throughput(&service, dir, c, per_level).await?);
        }
        let mut f = figure(
            &format!("native throughput, concurrency {c}"),
            "exec/s",
            rates,
        );
        f.baseline = Some(base_rate_name.clone());
        f.ratio = Some(f.p50 / base_rate);
        figures.push(f);
    }
    figures.push(memory::per_live_workspace(o, &service).await?);
    Ok(())
}

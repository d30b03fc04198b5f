//! The native figures, in two phases: first host processes (isolation
//! none: lifecycle plain, with limits, host files on another filesystem,
//! then throughput and memory; the figures earlier targets were set on,
//! measured as they were), then the isolated sandbox and the isolating
//! tools ([`super::isolated`]).

use std::path::Path;
use std::time::Duration;

use execution_service::ExecutionService;
use orchestrator_core::{IsolationLevel, IsolationMode, ResourceLimits};

use super::{against, figure, isolated, memory, throughput, Figure};
use crate::timed::ms;
use crate::timed::native::{bare_spawn, host_dirs, isolation_of, lifecycle, service};
use crate::{BoxError, Opts};

/// The lifecycles' limits: memory and pids (a cgroup per workspace) and a
/// wall timeout.
pub fn limits() -> Result<ResourceLimits, BoxError> {
    Ok(ResourceLimits::builder()
        .memory_bytes(256 << 20)
        .pids(64)
        .wall_timeout(Duration::from_secs(30))
        .build()?)
}

/// Rounds of each interleaved series, and untimed warm-up rounds.
pub fn rounds(o: &Opts) -> (usize, usize) {
    if o.quick {
        (30, 5)
    } else {
        (400, 30)
    }
}

/// Every native figure: the host-process phase, then the isolation phase.
///
/// The phases are apart because runs that make namespaces (bwrap, unshare,
/// the isolated sandbox) slow the host cgroup path measured between them:
/// their network namespaces are torn down asynchronously by the kernel,
/// and the lifecycle with limits, interleaved with them, went from ~2.3x to
/// 5-10x the bare spawn on this machine. Each phase has its own bare-spawn
/// series, interleaved with its figures.
pub async fn figures(o: &Opts, figures: &mut Vec<Figure>) -> Result<(), BoxError> {
    let (scratch, tmp) = host_dirs()?;
    let dir = scratch.path();
    let limits = limits()?;
    // Host processes, as before isolation existed: set explicitly, since
    // the backend's default (auto) now isolates where it can.
    let (host, _) = service(IsolationMode::None)?;
    expect_level(&host, dir, IsolationLevel::None).await?;

    let (lifecycles, base) =
        host_lifecycles(o, &host, dir, tmp.as_ref().map(|t| t.path()), &limits).await?;
    let host_rates =
        throughput::figures(o, &host, "none", &[1, 2, 4, 8, 16], dir, &base, None).await?;
    let mem = memory::per_live_workspace(o, &host).await?;

    let iso = isolated::figures(o, dir, &limits).await?;
    let cli = super::cli::figures(o).await?;
    let server = super::server::figures(o).await?;

    figures.extend(lifecycles);
    figures.extend(iso.lifecycles);
    figures.push(base);
    figures.extend(iso.baselines);
    figures.extend(host_rates);
    figures.extend(iso.rates);
    figures.push(mem);
    figures.extend(cli);
    figures.extend(server);
    Ok(())
}

/// The host-process lifecycles (plain, with limits, host files in `tmp`)
/// interleaved with the bare spawn; the figures and the baseline.
async fn host_lifecycles(
    o: &Opts,
    host: &ExecutionService,
    dir: &Path,
    tmp: Option<&Path>,
    limits: &ResourceLimits,
) -> Result<(Vec<Figure>, Figure), BoxError> {
    let (n, warm) = rounds(o);
    for i in 0..warm {
        bare_spawn().await?;
        lifecycle(host, dir, i, None).await?;
    }
    // Interleave the series so drift hits all of them alike.
    let (mut base, mut plain, mut limited, mut on_tmp) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        base.push(ms(bare_spawn().await?));
        plain.push(ms(lifecycle(host, dir, i, None).await?));
        limited.push(ms(lifecycle(host, dir, i, Some(limits)).await?));
        if let Some(t) = tmp {
            on_tmp.push(ms(lifecycle(host, t, i, None).await?));
        }
    }
    let base = figure("baseline: spawn+wait /bin/true (tokio)", "ms", base);
    let note = format!(
        "isolation none (host processes); host files in {}",
        dir.display()
    );
    let mut out = Vec::new();
    let mut f = against(
        figure(
            "native lifecycle, isolation none (create, copy in, run /bin/true, copy out, cleanup)",
            "ms",
            plain,
        ),
        &base,
    );
    f.note = Some(note.clone());
    out.push(f);
    let mut f = against(
        figure(
            "native lifecycle, isolation none, memory+pids+timeout limits",
            "ms",
            limited,
        ),
        &base,
    );
    f.note = Some(note);
    out.push(f);
    if let Some(t) = tmp {
        let mut f = against(
            figure(
                "native lifecycle, isolation none, host files in $TMPDIR (another filesystem)",
                "ms",
                on_tmp,
            ),
            &base,
        );
        f.note = Some(format!("isolation none; host files in {}", t.display()));
        out.push(f);
    }
    Ok((out, base))
}

/// Fails unless a lifecycle on `service` runs at isolation `level`, so no
/// figure measures another path than the one it is named after.
pub async fn expect_level(
    service: &ExecutionService,
    dir: &Path,
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

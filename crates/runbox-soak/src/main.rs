//! runbox-soak: runs many mixed native executions through
//! [`ExecutionService`] and then checks that nothing leaked.
//!
//! `cargo xtask soak [--executions N] [--concurrency C]` builds this in
//! release mode and runs it. The mix (a fixed schedule over the execution
//! index) is: normal commands, wall timeouts whose command left background
//! children (one in its own session), output floods under an output limit,
//! memory bombs (`tail /dev/zero`) under a memory limit, fork bombs under a
//! pids limit, and background commands started with `start` and stopped
//! early with `complete`. Records are deleted once checked, as a long-running
//! service would prune them, so memory must stay flat.
//!
//! Afterwards, with the service still alive, it asserts:
//! - no process of ours is alive: no child of this process, no process with
//!   its working directory under the workspace root, no process in one of
//!   this run's workspace cgroups;
//! - no workspace directory is left under the root;
//! - no workspace cgroup of this run is left in any v1 hierarchy (or v2);
//! - open file descriptors did not grow (after warm-up, slack 2);
//! - RSS is back within `2 × warm-up RSS + 32 MiB`.
//!
//! It exits 0 only when every execution ended as its kind expects and every
//! check passed.

mod driver;
mod leaks;
mod mix;
mod report;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use execution_service::{ExecutionService, MemoryStore};
use orchestrator_core::IsolationMode;
use orchestrator_native::{NativeConfig, NativeOrchestrator};

use driver::{run_range, Tally};
use leaks::{fd_count, leaks, rss_bytes, status_kib, HostState};

/// The command line.
struct Args {
    /// `--executions N` (default 1000).
    executions: usize,
    /// `--concurrency C` (default 16).
    concurrency: usize,
    /// `--isolation auto|full|none` (default full: the soak proves the
    /// sandbox leaks nothing, so it must not quietly run without one).
    isolation: IsolationMode,
    /// `--pool N`: the native warm pool's size (default 0).
    pool: usize,
}

/// Parses `std::env::args`; the usage or the fault as the error.
fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        executions: 1000,
        concurrency: 16,
        isolation: IsolationMode::Full,
        pool: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = |name: &str| -> Result<usize, String> {
            let v = inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))?;
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name}: expected a positive integer, got {v:?}")),
            }
        };
        match name.as_str() {
            "--executions" | "-n" => args.executions = value("--executions")?,
            "--concurrency" | "-c" => args.concurrency = value("--concurrency")?,
            "--pool" => {
                let v = inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or("--pool needs a value")?;
                args.pool = v
                    .parse()
                    .map_err(|_| format!("--pool: expected a size, got {v:?}"))?;
            }
            "--isolation" => {
                let v = inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or("--isolation needs a value")?;
                args.isolation = v.parse().map_err(|e| format!("--isolation: {e}"))?;
            }
            "--help" | "-h" => {
                return Err(
                    "usage: runbox-soak [--executions N] [--concurrency C] [--isolation MODE] \
                     [--pool N]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("runbox-soak: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runbox-soak: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(soak(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("runbox-soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the soak; `Ok(true)` when every execution and check passed.
async fn soak(args: Args) -> Result<bool, String> {
    let root_dir = tempfile::Builder::new()
        .prefix("runbox-soak-")
        .tempdir()
        .map_err(|e| format!("cannot make the workspace root: {e}"))?;
    // Taken before the backend exists: its probe sandbox must leave nothing
    // either.
    let host_before = HostState::now();
    let native = NativeOrchestrator::new(NativeConfig {
        workspace_root: root_dir.path().to_path_buf(),
        isolation: args.isolation,
        warm_pool: args.pool,
        ..NativeConfig::default()
    })
    .map_err(|e| format!("cannot create the native backend: {e}"))?;
    native
        .warm_up()
        .await
        .map_err(|e| format!("cannot fill the warm pool: {e}"))?;
    if args.isolation == IsolationMode::Full {
        if let Some(why) = native.isolation_unavailable_reason() {
            return Err(format!("isolation full is unavailable: {why}"));
        }
    }
    let root = native.workspace_root().to_path_buf();
    let cgroups = native.cgroup_version().is_some();
    let id_prefix = format!("ws-{:x}-", std::process::id());
    let svc = ExecutionService::builder()
        .store(MemoryStore::new())
        .orchestrator(Arc::new(native.clone()))
        .build()
        .map_err(|e| format!("cannot build the service: {e}"))?;

    let n = args.executions;
    let c = args.concurrency;
    println!(
        "soak: {n} executions at concurrency {c}; isolation {}; warm pool {}; workspace root {}; \
         limits via {}",
        match native.isolation_unavailable_reason() {
            None => "full".to_string(),
            Some(why) => format!("none ({why})"),
        },
        args.pool,
        root.display(),
        match native.cgroup_version() {
            Some(v) => format!("cgroup {v:?}"),
            None => format!(
                "rlimits ({})",
                native.cgroup_unavailable_reason().unwrap_or("?")
            ),
        }
    );

    let tally = Arc::new(Mutex::new(Tally::default()));
    let fds_before = fd_count();
    let t0 = Instant::now();
    // Warm-up: lazily created runtime threads, buffers and pipes settle.
    let warm = n.min((4 * c).max(n / 20)).min(500);
    run_range(&svc, 0..warm, c, cgroups, &tally, n).await;
    svc.wait_for_cleanups().await;
    let fds_warm = fd_count();
    let rss_warm = rss_bytes();
    run_range(&svc, warm..n, c, cgroups, &tally, n).await;
    svc.wait_for_cleanups().await;
    let elapsed = t0.elapsed();
    let records_left = svc.list().await.map(|v| v.len()).unwrap_or(usize::MAX);
    // A pool holds prepared sandboxes while its backend lives: with one, the
    // service and backend go first, and what they held must be gone too.
    let kept = if args.pool > 0 {
        let s = native.pool_stats();
        println!(
            "soak: warm pool: {} hits, {} misses, {} discarded, {} refill failures",
            s.hits, s.misses, s.discarded, s.refill_failures
        );
        drop(svc);
        drop(native);
        None
    } else {
        Some((svc, native))
    };

    // SIGKILLed processes take a moment to vanish; give them a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leftovers = loop {
        let mut l = leaks(&root, &id_prefix);
        l.extend(host_before.leaks());
        if l.is_empty() || Instant::now() > deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Idle runtime threads and the allocator's caches do not count.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds_after = fd_count();
    let rss_after = rss_bytes();
    let rss_peak = status_kib("VmHWM:") * 1024;

    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    let failures = report::summary(&report::Run {
        executions: n,
        warm,
        elapsed,
        tally,
        leftovers,
        records_left,
        fds_before,
        fds_warm,
        fds_after,
        rss_warm,
        rss_after,
        rss_peak,
    });
    // The service and backend are dropped only now, after the checks: what
    // their Drop would tidy up must already be gone.
    drop(kept);
    if failures.is_empty() {
        println!(
            "soak: PASSED (no process, directory, cgroup, namespace, mount, fd or memory leak)"
        );
        Ok(true)
    } else {
        for f in &failures {
            println!("soak: FAILED: {f}");
        }
        Ok(false)
    }
}

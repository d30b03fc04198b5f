//! Timed native operations: the bare-spawn baseline, services on the
//! native backend at an isolation mode, one service lifecycle, throughput
//! at a concurrency, and the host directories they copy from.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use execution_service::{ExecutionRequest, ExecutionService, MemoryStore};
use orchestrator_core::{IsolationMode, IsolationReport, ResourceLimits};
use orchestrator_native::{NativeConfig, NativeOrchestrator};

use crate::BoxError;

/// The native backend at `isolation`, everything else at its defaults, and
/// a service (memory store) whose default backend it is. The isolation
/// mode is always set explicitly: the backend's default (`auto`) isolates
/// where it can, and the figures must say which path they measured.
pub fn service(
    isolation: IsolationMode,
) -> Result<(ExecutionService, Arc<NativeOrchestrator>), BoxError> {
    service_with_pool(isolation, 0)
}

/// [`service`] with a native warm pool of `pool` sandboxes.
pub fn service_with_pool(
    isolation: IsolationMode,
    pool: usize,
) -> Result<(ExecutionService, Arc<NativeOrchestrator>), BoxError> {
    let native = Arc::new(NativeOrchestrator::new(NativeConfig {
        isolation,
        warm_pool: pool,
        ..NativeConfig::default()
    })?);
    let service = ExecutionService::builder()
        .store(MemoryStore::new())
        .orchestrator(native.clone())
        .build()?;
    Ok((service, native))
}

/// The isolation mode of the profiling modes: `RUNBOX_BENCH_ISOLATION`
/// (auto, full or none), default none (the figures' host-process path).
pub fn profiling_isolation() -> Result<IsolationMode, BoxError> {
    match std::env::var("RUNBOX_BENCH_ISOLATION") {
        Ok(v) => Ok(v.parse::<IsolationMode>()?),
        Err(_) => Ok(IsolationMode::None),
    }
}

/// The baseline: spawn + wait of `/bin/true`. Its environment is the small
/// one runbox gives its commands, not the bench's own: exec copies the
/// environment, and a large one (cargo's variables under `cargo xtask`)
/// slows the bare spawn by ~0.1 ms, which would flatter every ratio.
pub async fn bare_spawn() -> Result<Duration, BoxError> {
    let t = Instant::now();
    let st = tokio::process::Command::new("/bin/true")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/")
        .env("LANG", "C.UTF-8")
        .status()
        .await?;
    if !st.success() {
        return Err("/bin/true failed".into());
    }
    Ok(t.elapsed())
}

/// The lifecycle's request: copy in, run `/bin/true`, copy out to `out-{i}.txt`.
fn lifecycle_request(dir: &Path, i: usize, limits: Option<&ResourceLimits>) -> ExecutionRequest {
    let mut r = ExecutionRequest::new(["/bin/true"])
        .file_in(dir.join("input.txt"), "input.txt")
        .file_out("input.txt", dir.join(format!("out-{i}.txt")));
    if let Some(l) = limits {
        r = r.limits(l.clone());
    }
    r
}

/// One service lifecycle (create, copy in, run, copy out, cleanup), timed;
/// its output file removed afterwards.
pub async fn lifecycle(
    service: &ExecutionService,
    dir: &Path,
    i: usize,
    limits: Option<&ResourceLimits>,
) -> Result<Duration, BoxError> {
    let d = lifecycle_keep(service, dir, i, limits).await?;
    let _ = std::fs::remove_file(dir.join(format!("out-{i}.txt")));
    Ok(d)
}

/// One lifecycle, leaving its output file for the caller to remove
/// (outside whatever it times).
pub async fn lifecycle_keep(
    service: &ExecutionService,
    dir: &Path,
    i: usize,
    limits: Option<&ResourceLimits>,
) -> Result<Duration, BoxError> {
    let t = Instant::now();
    let res = service.execute(lifecycle_request(dir, i, limits)).await?;
    let d = t.elapsed();
    if !res.output.status.success() {
        return Err(format!("lifecycle run failed: {:?}", res.output.status).into());
    }
    // A copy that failed would make the lifecycle cheaper than it is.
    if let Some((file, e)) = res.copy_out_errors.first() {
        return Err(format!("lifecycle copy out of {file:?} failed: {e}").into());
    }
    Ok(d)
}

/// How one untimed lifecycle on `service` was isolated (the figures check
/// that they measure the path they are named after).
pub async fn isolation_of(
    service: &ExecutionService,
    dir: &Path,
) -> Result<IsolationReport, BoxError> {
    let res = service.execute(lifecycle_request(dir, 0, None)).await?;
    let _ = std::fs::remove_file(dir.join("out-0.txt"));
    Ok(res.isolation)
}

/// The host side of the lifecycle's copies: a scratch directory on the
/// filesystem of the native backend's default workspace root (a tmpfs when
/// the machine has a roomy one), so the figures measure runbox rather than
/// the host filesystem's inode allocator; and, when `$TMPDIR` is on another
/// filesystem, a second one there for the figures that show its cost.
pub fn host_dirs() -> Result<(tempfile::TempDir, Option<tempfile::TempDir>), BoxError> {
    use std::os::unix::fs::MetadataExt;
    let root = orchestrator_native::NativeConfig::default().workspace_root;
    let parent = root.parent().unwrap_or(&root).to_path_buf();
    let scratch = tempfile::Builder::new()
        .prefix("runbox-bench-")
        .tempdir_in(&parent)?;
    let tmp = tempfile::tempdir()?;
    let other_fs = std::fs::metadata(tmp.path())?.dev() != std::fs::metadata(scratch.path())?.dev();
    for d in [scratch.path(), tmp.path()] {
        std::fs::write(d.join("input.txt"), b"runbox benchmark input\n")?;
    }
    Ok((scratch, other_fs.then_some(tmp)))
}

/// Executions per second with `c` tasks sharing one service, each
/// lifecycle under `limits` when given.
pub async fn throughput(
    service: &ExecutionService,
    dir: &Path,
    c: usize,
    per_level: usize,
    limits: Option<&ResourceLimits>,
) -> Result<f64, BoxError> {
    let (service, base) = (service.clone(), dir.to_path_buf());
    let limits = limits.cloned();
    let took = super::on_tasks(c, per_level, move |i| {
        let (service, dir, limits) = (service.clone(), base.clone(), limits.clone());
        async move {
            lifecycle_keep(&service, &dir, 100_000 + i, limits.as_ref()).await?;
            Ok(())
        }
    })
    .await?;
    let rate = per_level as f64 / took.as_secs_f64();
    // The bench's own housekeeping, untimed.
    for i in 0..per_level {
        let _ = std::fs::remove_file(dir.join(format!("out-{}.txt", 100_000 + i)));
    }
    Ok(rate)
}

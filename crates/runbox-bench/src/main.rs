//! runbox benchmarks. Every figure is reported with p50/p90/p99 and its ratio
//! to a baseline measured in the same run (absolute times drift on shared
//! machines; ratios do not, much).
//!
//! Usage: `runbox-bench [--quick] [--json FILE] [--svg FILE]` (normally via
//! `cargo xtask bench`, which builds it in release mode).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use execution_service::{ExecutionRequest, ExecutionService, MemoryStore, StartOptions};
use orchestrator_core::{CommandSpec, Orchestrator, ResourceLimits, WorkspaceSpec};
use orchestrator_docker::{DockerConfig, DockerOrchestrator, TestImageOptions};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One reported figure.
#[derive(Debug, Clone)]
struct Figure {
    name: String,
    unit: &'static str,
    p50: f64,
    p90: f64,
    p99: f64,
    baseline: Option<String>,
    ratio: Option<f64>,
    /// Raw samples (for the chart), in `unit`.
    samples: Vec<f64>,
    note: Option<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn figure(name: &str, unit: &'static str, mut samples: Vec<f64>) -> Figure {
    samples.sort_by(|a, b| a.total_cmp(b));
    Figure {
        name: name.to_string(),
        unit,
        p50: percentile(&samples, 0.5),
        p90: percentile(&samples, 0.9),
        p99: percentile(&samples, 0.99),
        baseline: None,
        ratio: None,
        samples,
        note: None,
    }
}

fn against(mut f: Figure, base: &Figure) -> Figure {
    f.baseline = Some(base.name.clone());
    f.ratio = Some(f.p50 / base.p50);
    f
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Opts {
    quick: bool,
    breakdown: bool,
    cpu: bool,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
}

fn parse_args() -> Result<Opts, BoxError> {
    let mut o = Opts {
        quick: false,
        breakdown: false,
        cpu: false,
        json: None,
        svg: None,
    };
    let mut it = std::env::args().skip(1).peekable();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--breakdown" => o.breakdown = true,
            "--cpu" => o.cpu = true,
            // `--json FILE`, or `--json` alone (or `--json -`) for stdout.
            "--json" => {
                let file = it
                    .next_if(|n| !n.starts_with("--"))
                    .unwrap_or_else(|| "-".into());
                o.json = Some(file.into());
            }
            "--svg" => o.svg = Some(it.next().ok_or("--svg needs a file")?.into()),
            "docker" if o.breakdown => {}
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(o)
}

/// The baseline: spawn + wait of `/bin/true`. Its environment is the small
/// one runbox gives its commands, not the bench's own: exec copies the
/// environment, and under `cargo xtask` cargo's variables made the bare
/// spawn ~0.1 ms slower than a command started by runbox (which flattered
/// every ratio).
async fn bare_spawn() -> Result<Duration, BoxError> {
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

fn lifecycle_request(
    dir: &std::path::Path,
    i: usize,
    limits: Option<&ResourceLimits>,
) -> ExecutionRequest {
    let mut r = ExecutionRequest::new(["/bin/true"])
        .file_in(dir.join("input.txt"), "input.txt")
        .file_out("input.txt", dir.join(format!("out-{i}.txt")));
    if let Some(l) = limits {
        r = r.limits(l.clone());
    }
    r
}

async fn lifecycle(
    service: &ExecutionService,
    dir: &std::path::Path,
    i: usize,
    limits: Option<&ResourceLimits>,
) -> Result<Duration, BoxError> {
    let d = lifecycle_keep(service, dir, i, limits).await?;
    let _ = std::fs::remove_file(dir.join(format!("out-{i}.txt")));
    Ok(d)
}

/// One lifecycle, leaving its output file for the caller to remove
/// (outside whatever it times).
async fn lifecycle_keep(
    service: &ExecutionService,
    dir: &std::path::Path,
    i: usize,
    limits: Option<&ResourceLimits>,
) -> Result<Duration, BoxError> {
    let t = Instant::now();
    let res = service.execute(lifecycle_request(dir, i, limits)).await?;
    let d = t.elapsed();
    if !res.output.status.success() {
        return Err(format!("lifecycle run failed: {:?}", res.output.status).into());
    }
    Ok(d)
}

/// Heap bytes in use (glibc's `mallinfo2().uordblks`).
fn heap_bytes() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    unsafe { libc::mallinfo2().uordblks as u64 }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The host side of the lifecycle's copies: a scratch directory on the
/// filesystem of the native backend's default workspace root (a tmpfs when
/// the machine has a roomy one), so the figures measure runbox rather than
/// the host filesystem's inode allocator; and, when `$TMPDIR` is on another
/// filesystem, a second one there for the figures that show its cost.
fn host_dirs() -> Result<(tempfile::TempDir, Option<tempfile::TempDir>), BoxError> {
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

/// Executions per second with `c` tasks sharing one service.
async fn throughput(
    service: &ExecutionService,
    dir: &std::path::Path,
    c: usize,
    per_level: usize,
) -> Result<f64, BoxError> {
    let t = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..c {
        let service = service.clone();
        let next = next.clone();
        let dir = dir.to_path_buf();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= per_level {
                    return Ok::<(), BoxError>(());
                }
                lifecycle_keep(&service, &dir, 100_000 + i, None).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let rate = per_level as f64 / t.elapsed().as_secs_f64();
    // The bench's own housekeeping, untimed.
    for i in 0..per_level {
        let _ = std::fs::remove_file(dir.join(format!("out-{}.txt", 100_000 + i)));
    }
    Ok(rate)
}

async fn native_figures(o: &Opts, figures: &mut Vec<Figure>) -> Result<(), BoxError> {
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

    // Throughput.
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

    // Memory per live idle workspace.
    let live = if o.quick { 100 } else { 1000 };
    // Warm the allocator and the service's maps first.
    let mut ids = Vec::new();
    for _ in 0..10 {
        let id = service.submit(ExecutionRequest::sandbox_only()).await?;
        service.start(&id, StartOptions::default()).await?;
        ids.push(id);
    }
    for id in ids.drain(..) {
        service.complete(&id, Default::default()).await?;
    }
    // Hand memory freed by the earlier phases back to the system first:
    // otherwise the new workspaces fit in the allocator's free lists and
    // RSS barely moves (the figure read 0.8 KiB in one run, 6 KiB in the
    // next).
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
    let before = rss_bytes();
    let heap_before = heap_bytes();
    for _ in 0..live {
        let id = service.submit(ExecutionRequest::sandbox_only()).await?;
        service.start(&id, StartOptions::default()).await?;
        ids.push(id);
    }
    let after = rss_bytes();
    let heap_after = heap_bytes();
    for id in &ids {
        service.complete(id, Default::default()).await?;
    }
    let per = after.saturating_sub(before) as f64 / live as f64 / 1024.0;
    let mut f = figure(
        &format!("service RSS growth per live idle workspace ({live} live)"),
        "KiB",
        vec![per],
    );
    // RSS moves in pages and the allocator reuses freed ones; the heap in
    // use (glibc's mallinfo2) is the finer measure of the same thing.
    f.note = Some(format!(
        "RSS {} KiB -> {} KiB; heap in use {:.1} KiB per workspace",
        before / 1024,
        after / 1024,
        heap_after.saturating_sub(heap_before) as f64 / live as f64 / 1024.0
    ));
    figures.push(f);
    Ok(())
}

async fn cli(args: &[&str]) -> Result<Duration, BoxError> {
    let t = Instant::now();
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!("docker {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(t.elapsed())
}

async fn docker_figures(o: &Opts, figures: &mut Vec<Figure>) -> Result<(), BoxError> {
    let config = DockerConfig::from_env();
    let docker = DockerOrchestrator::new(config.clone())?;
    let avail = docker.is_available().await;
    if !avail.available {
        let mut f = figure("docker lifecycle", "ms", Vec::new());
        f.note = Some(format!(
            "skipped: no docker daemon ({})",
            avail.reason.unwrap_or_default()
        ));
        figures.push(f);
        return Ok(());
    }
    let image =
        orchestrator_docker::ensure_test_image(&config, &TestImageOptions::default()).await?;
    let n = if o.quick { 3 } else { 20 };
    let spec = WorkspaceSpec::new().image(image.clone());
    let true_cmd = CommandSpec::new(["true"]);
    let pooled = DockerOrchestrator::new(
        config
            .clone()
            .default_image(image.clone())
            .warm_pool(DOCKER_BENCH_POOL),
    )?;
    pooled.warm_up().await?;
    // Warm up every path once.
    cli(&["run", "--rm", "--network", "none", &image, "true"]).await?;
    docker_lifecycle(&docker, &spec).await?;
    docker_lifecycle(&pooled, &spec).await?;
    pooled.warm_up().await?;
    let hits0 = pooled.pool_stats().hits;

    // Interleaved: cold, pooled, `docker run --rm`. The refill a take
    // starts runs during the rest of that pooled lifecycle (timed); the
    // pool is back to full (untimed) before the next series is timed, so
    // the refill does not load the other two.
    let (ours, pool, theirs) = interleaved_lifecycles(&docker, &pooled, &spec, &image, n).await?;
    let hits = pooled.pool_stats().hits - hits0;
    // Back to back: one pooled lifecycle after another, refills competing
    // with them for the daemon (a steady stream of executions).
    pooled.warm_up().await?;
    let (hits1, misses1) = (pooled.pool_stats().hits, pooled.pool_stats().misses);
    let mut b2b = Vec::new();
    for _ in 0..n {
        b2b.push(ms(docker_lifecycle(&pooled, &spec).await?));
    }
    let stats = pooled.pool_stats();
    let (b2b_hits, b2b_misses) = (stats.hits - hits1, stats.misses - misses1);
    drop(pooled);
    let base = figure(
        "baseline: docker run --rm runbox-testbox true (CLI)",
        "ms",
        theirs,
    );
    figures.push(against(
        figure(
            "docker lifecycle (create, exec true, remove) via backend",
            "ms",
            ours,
        ),
        &base,
    ));
    let mut f = against(
        figure(
            &format!("docker lifecycle via backend, warm pool of {DOCKER_BENCH_POOL}"),
            "ms",
            pool,
        ),
        &base,
    );
    f.note = Some(format!(
        "{hits}/{n} workspaces from the pool; refilled (untimed) before the next series"
    ));
    figures.push(f);
    let mut f = against(
        figure(
            &format!(
                "docker lifecycle via backend, warm pool of {DOCKER_BENCH_POOL}, back to back"
            ),
            "ms",
            b2b,
        ),
        &base,
    );
    f.note = Some(format!(
        "{b2b_hits} from the pool, {b2b_misses} created cold; refills run during the series"
    ));
    figures.push(f);
    figures.push(base);

    // Exec latency on one live container.
    let id = docker.create_workspace(&spec).await?;
    let cid = docker_container_of(&id).await?;
    let m = if o.quick { 5 } else { 40 };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..m {
        let t = Instant::now();
        docker.run_command(&id, &true_cmd).await?;
        ours.push(ms(t.elapsed()));
        theirs.push(ms(cli(&["exec", &cid, "true"]).await?));
    }
    docker.cleanup(&id).await?;
    let base = figure("baseline: docker exec CONTAINER true (CLI)", "ms", theirs);
    figures.push(against(
        figure("docker exec latency via backend", "ms", ours),
        &base,
    ));
    figures.push(base);
    Ok(())
}

/// Warm pool size of the pooled docker figures.
const DOCKER_BENCH_POOL: usize = 4;

/// `n` rounds of: a cold lifecycle, a pooled one (the pool refilled,
/// untimed, right after), `docker run --rm IMAGE true` through the CLI.
/// Returns the three series in ms.
async fn interleaved_lifecycles(
    cold: &DockerOrchestrator,
    pooled: &DockerOrchestrator,
    spec: &WorkspaceSpec,
    image: &str,
    n: usize,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>), BoxError> {
    let (mut c, mut p, mut run) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        c.push(ms(docker_lifecycle(cold, spec).await?));
        p.push(ms(docker_lifecycle(pooled, spec).await?));
        pooled.warm_up().await?;
        run.push(ms(cli(&[
            "run",
            "--rm",
            "--network",
            "none",
            image,
            "true",
        ])
        .await?));
    }
    Ok((c, p, run))
}

/// One docker lifecycle on the backend: create, exec `true`, cleanup.
async fn docker_lifecycle(
    docker: &DockerOrchestrator,
    spec: &WorkspaceSpec,
) -> Result<Duration, BoxError> {
    let t = Instant::now();
    let id = docker.create_workspace(spec).await?;
    let out = docker.run_command(&id, &CommandSpec::new(["true"])).await?;
    docker.cleanup(&id).await?;
    let took = t.elapsed();
    if !out.status.success() {
        return Err(format!("docker exec true: {:?}", out.status).into());
    }
    Ok(took)
}

/// The container of a workspace, found by its label.
async fn docker_container_of(id: &orchestrator_core::WorkspaceId) -> Result<String, BoxError> {
    let out = tokio::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=io.runbox.workspace={id}"),
        ])
        .output()
        .await?;
    let cid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if cid.is_empty() {
        return Err(format!("no container labelled with workspace {id}").into());
    }
    Ok(cid)
}

/// The human table: on stdout, or on stderr when stdout carries the JSON.
fn print_table(figures: &[Figure], to_stderr: bool) {
    let mut out: Box<dyn std::io::Write> = if to_stderr {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let _ = writeln!(
        out,
        "{:<78} {:>10} {:>10} {:>10} {:>8}  baseline",
        "figure", "p50", "p90", "p99", "ratio"
    );
    for f in figures {
        let _ = writeln!(
            out,
            "{:<78} {:>10.3} {:>10.3} {:>10.3} {:>8}  {}{}",
            format!("{} [{}]", f.name, f.unit),
            f.p50,
            f.p90,
            f.p99,
            f.ratio
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_else(|| "-".into()),
            f.baseline.as_deref().unwrap_or("-"),
            f.note
                .as_ref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
        );
    }
}

fn to_json(figures: &[Figure]) -> serde_json::Value {
    let num = |x: f64| {
        if x.is_finite() {
            serde_json::json!(x)
        } else {
            serde_json::Value::Null
        }
    };
    serde_json::Value::Array(
        figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name,
                    "unit": f.unit,
                    "p50": num(f.p50),
                    "p90": num(f.p90),
                    "p99": num(f.p99),
                    "baseline": f.baseline,
                    "ratio": f.ratio.map(num),
                    "samples": f.samples.len(),
                    "note": f.note,
                })
            })
            .collect(),
    )
}

/// A latency chart: one row per millisecond series, a box from p10 to p90,
/// the median marked, whiskers to min and max, on a log scale.
fn svg(figures: &[Figure]) -> String {
    let series: Vec<&Figure> = figures
        .iter()
        .filter(|f| f.unit == "ms" && !f.samples.is_empty())
        .collect();
    let (w, row, left, top) = (960.0, 46.0, 430.0, 40.0);
    let h = top + row * series.len() as f64 + 50.0;
    let lo = series
        .iter()
        .flat_map(|f| f.samples.first())
        .fold(f64::INFINITY, |a, b| a.min(*b))
        .max(0.01);
    let hi = series
        .iter()
        .flat_map(|f| f.samples.last())
        .fold(0.0f64, |a, b| a.max(*b))
        .max(lo * 10.0);
    let (l0, l1) = (lo.log10().floor(), hi.log10().ceil());
    let x = |v: f64| left + (v.max(lo).log10() - l0) / (l1 - l0) * (w - left - 20.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">runbox latency (ms, log scale): box p10-p90, bar p50, whiskers min-max</text>\n"
    );
    let mut e = l0;
    while e <= l1 {
        let v = 10f64.powf(e);
        let xv = x(v);
        s += &format!(
            "<line x1=\"{xv:.1}\" y1=\"{top}\" x2=\"{xv:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{xv:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            h - 40.0,
            h - 25.0,
            if v < 1.0 { format!("{v}") } else { format!("{v:.0}") }
        );
        e += 1.0;
    }
    for (i, f) in series.iter().enumerate() {
        let y = top + row * i as f64 + 10.0;
        let p = |q: f64| percentile(&f.samples, q);
        let color = if f.name.starts_with("baseline") {
            "#999"
        } else if f.name.contains("docker") {
            "#2a6fdb"
        } else {
            "#e07b00"
        };
        let label: String = f.name.chars().take(62).collect();
        s += &format!(
            "<text x=\"10\" y=\"{:.1}\">{}</text>\n\
             <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\"/>\n\
             <rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"24\" fill=\"{color}\" fill-opacity=\"0.35\" stroke=\"{color}\"/>\n\
             <line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\" stroke-width=\"2\"/>\n",
            y + 16.0,
            label.replace('&', "&amp;").replace('<', "&lt;"),
            x(p(0.0)),
            y + 12.0,
            x(p(1.0)),
            y + 12.0,
            x(p(0.1)),
            (x(p(0.9)) - x(p(0.1))).max(1.0),
            x(p(0.5)),
            x(p(0.5)),
            y + 24.0
        );
    }
    s += "</svg>\n";
    s
}

/// Per-step medians of the native lifecycle, straight on the backend (for
/// profiling; `--breakdown`).
async fn breakdown() -> Result<(), BoxError> {
    let native = orchestrator_native::NativeOrchestrator::new(Default::default())?;
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
    let cmd = CommandSpec::new(["/bin/true"]);
    for i in 0..n {
        let mut marks = Vec::with_capacity(6);
        let mark = || (Instant::now(), cpu_ms().0);
        marks.push(mark());
        let id = native.create_workspace(&WorkspaceSpec::new()).await?;
        marks.push(mark());
        native.copy_to(&id, &dir.join("input.txt"), "in").await?;
        marks.push(mark());
        native.run_command(&id, &cmd).await?;
        marks.push(mark());
        let out = dir.join(format!("o{i}"));
        native.copy_from(&id, "in", &out).await?;
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

/// Per-step medians of the docker lifecycle (`--breakdown docker`): cold
/// and pooled create, the round trips the backend saves (image inspect,
/// list by label), then the whole lifecycle cold, pooled and back to back
/// against `docker run --rm`.
async fn docker_breakdown() -> Result<(), BoxError> {
    let config = DockerConfig::from_env();
    let image = config.default_image.clone();
    let docker = DockerOrchestrator::new(config.clone())?;
    let pooled = DockerOrchestrator::new(config.clone().warm_pool(DOCKER_BENCH_POOL))?;
    pooled.warm_up().await?;
    let spec = WorkspaceSpec::new();
    let cmd = CommandSpec::new(["true"]);
    let n = 20;
    let print = |name: &str, v: Vec<f64>| {
        let f = figure(name, "ms", v);
        println!("{name:>34}: p50 {:>6.1} ms  p90 {:>6.1} ms", f.p50, f.p90);
        f.p50
    };

    // Per step, cold and pooled (the pool full before each take).
    let (mut c, mut r, mut d) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pc, mut pr, mut pd) = (Vec::new(), Vec::new(), Vec::new());
    let (mut inspect, mut list) = (Vec::new(), Vec::new());
    for _ in 0..n {
        for (cold, b, steps) in [
            (true, &docker, [&mut c, &mut r, &mut d]),
            (false, &pooled, [&mut pc, &mut pr, &mut pd]),
        ] {
            let t0 = Instant::now();
            let id = b.create_workspace(&spec).await?;
            let t1 = Instant::now();
            b.run_command(&id, &cmd).await?;
            let t2 = Instant::now();
            b.cleanup(&id).await?;
            let t3 = Instant::now();
            let [c, r, d] = steps;
            c.push(ms(t1 - t0));
            r.push(ms(t2 - t1));
            d.push(ms(t3 - t2));
            // What the cold path no longer does per workspace: an image
            // inspect before create, a list by label after remove.
            if cold {
                let t = Instant::now();
                docker.ensure_image(&image).await?;
                inspect.push(ms(t.elapsed()));
                let t = Instant::now();
                docker.residue(&id).await?;
                list.push(ms(t.elapsed()));
            }
        }
        pooled.warm_up().await?;
    }
    println!("per step (n = {n}):");
    print("create, cold", c);
    print("create, from the pool", pc);
    print("exec true (cold container)", r);
    print("exec true (pooled container)", pr);
    print("cleanup (cold container)", d);
    print("cleanup (pooled container)", pd);
    print("saved: image inspect", inspect);
    print("saved: list by workspace label", list);

    // Taking from the pool with limits (update_container) or an
    // execution id (rename).
    let limited = WorkspaceSpec::new().limits(
        ResourceLimits::builder()
            .memory_bytes(256 << 20)
            .pids(64)
            .build()?,
    );
    let (mut pl, mut pe) = (Vec::new(), Vec::new());
    for i in 0..n / 2 {
        for (s, v) in [
            (&limited, &mut pl),
            (
                &WorkspaceSpec::new().execution_id(format!("bench-{i}")),
                &mut pe,
            ),
        ] {
            let t = Instant::now();
            let id = pooled.create_workspace(s).await?;
            v.push(ms(t.elapsed()));
            pooled.cleanup(&id).await?;
            pooled.warm_up().await?;
        }
    }
    print("create, pool + memory/pids limits", pl);
    print("create, pool + execution id", pe);

    // Whole lifecycles, interleaved with the CLI baseline.
    let (cold, pool, cli_run) = interleaved_lifecycles(&docker, &pooled, &spec, &image, n).await?;
    // Back to back: each take's refill competes with the next lifecycles.
    let s0 = pooled.pool_stats();
    let mut b2b = Vec::new();
    for _ in 0..n {
        b2b.push(ms(docker_lifecycle(&pooled, &spec).await?));
    }
    let s1 = pooled.pool_stats();
    println!("lifecycle (create, exec true, cleanup), n = {n}:");
    let base = print("docker run --rm (CLI)", cli_run);
    let ratio = |p50: f64| println!("{:>34}  {:.2}x docker run --rm", "", p50 / base);
    ratio(print("cold", cold));
    ratio(print(&format!("warm pool of {DOCKER_BENCH_POOL}"), pool));
    ratio(print(
        &format!("warm pool of {DOCKER_BENCH_POOL}, back to back"),
        b2b,
    ));
    println!(
        "{:>34}  {} from the pool, {} cold (pool empty)",
        "",
        s1.hits - s0.hits,
        s1.misses - s0.misses
    );
    Ok(())
}

/// CPU time of this process and of its reaped children, in ms.
fn cpu_ms() -> (f64, f64) {
    let get = |who| {
        // SAFETY: getrusage fills the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN))
}

/// Throughput and CPU cost per execution at concurrency 4, bare spawn against
/// the service lifecycle (`--cpu`; for profiling throughput).
async fn cpu_cost() -> Result<(), BoxError> {
    let n = std::env::var("RUNBOX_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let c = std::env::var("RUNBOX_BENCH_C")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let (dir, _) = host_dirs()?;
    let service = ExecutionService::new(MemoryStore::new())?;
    let native = Arc::new(orchestrator_native::NativeOrchestrator::new(
        Default::default(),
    )?);
    // 0: bare spawn, 1: the service's lifecycle, 2: the same steps straight
    // on the backend (the difference is the service's own cost).
    // RUNBOX_BENCH_MODE=0|1|2 runs one mode only (to profile it).
    let modes: Vec<usize> = match std::env::var("RUNBOX_BENCH_MODE") {
        Ok(m) => vec![m.parse()?; 2],
        Err(_) => vec![0, 1, 2, 0, 1, 2],
    };
    for mode in modes {
        let (s0, c0) = cpu_ms();
        let t = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..c {
            let service = service.clone();
            let native = native.clone();
            let next = next.clone();
            let dir = dir.path().to_path_buf();
            tasks.push(tokio::spawn(async move {
                let cmd = CommandSpec::new(["/bin/true"]);
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return Ok::<(), BoxError>(());
                    }
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
                                .copy_to(&id, &dir.join("input.txt"), "input.txt")
                                .await?;
                            native.run_command(&id, &cmd).await?;
                            let out = dir.join(format!("out-{i}.txt"));
                            native.copy_from(&id, "input.txt", &out).await?;
                            native.cleanup(&id).await?;
                            let _ = std::fs::remove_file(out);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        let wall = t.elapsed().as_secs_f64();
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

async fn run() -> Result<(), BoxError> {
    let o = parse_args()?;
    if o.cpu {
        return cpu_cost().await;
    }
    if o.breakdown {
        if std::env::args().any(|a| a == "docker") {
            return docker_breakdown().await;
        }
        return breakdown().await;
    }
    let mut figures = Vec::new();
    eprintln!(
        "runbox-bench: native figures{}",
        if o.quick { " (quick)" } else { "" }
    );
    native_figures(&o, &mut figures).await?;
    eprintln!("runbox-bench: docker figures");
    if let Err(e) = docker_figures(&o, &mut figures).await {
        let mut f = figure("docker lifecycle", "ms", Vec::new());
        f.note = Some(format!("failed: {e}"));
        figures.push(f);
        if std::env::var("RUNBOX_REQUIRE_DOCKER").as_deref() == Ok("1") {
            print_table(&figures, true);
            return Err(format!("docker benchmark failed: {e}").into());
        }
    }
    let json_stdout = o.json.as_deref() == Some(std::path::Path::new("-"));
    print_table(&figures, json_stdout);
    if let Some(p) = &o.json {
        let text = serde_json::to_string_pretty(&to_json(&figures))?;
        if json_stdout {
            println!("{text}");
        } else {
            std::fs::write(p, text)?;
            eprintln!("runbox-bench: wrote {}", p.display());
        }
    }
    if let Some(p) = &o.svg {
        std::fs::write(p, svg(&figures))?;
        eprintln!("runbox-bench: wrote {}", p.display());
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runbox-bench: cannot start tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runbox-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use execution_service::{
    CompleteOptions, ExecutionRequest, ExecutionService, ExecutionState, MemoryStore, StartOptions,
};
use orchestrator_core::{ExitStatus, ResourceLimits};
use orchestrator_native::{NativeConfig, NativeOrchestrator};

/// File descriptors the process may gain between warm-up and the end
/// (a lazily created runtime or signal pipe, say).
const FD_SLACK: usize = 2;
/// Added to twice the warm-up RSS to form the RSS bound.
const RSS_SLACK: u64 = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Normal,
    Timeout,
    Flood,
    MemoryBomb,
    ForkBomb,
    Background,
}

impl Kind {
    /// The schedule: of every 20 executions, 8 normal, 3 timeouts, 3
    /// floods, 2 memory bombs, 1 fork bomb, 3 background.
    fn of(i: usize) -> Kind {
        match i % 20 {
            0..=7 => Kind::Normal,
            8..=10 => Kind::Timeout,
            11..=13 => Kind::Flood,
            14 | 15 => Kind::MemoryBomb,
            16 => Kind::ForkBomb,
            _ => Kind::Background,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Normal => "normal",
            Kind::Timeout => "timeout",
            Kind::Flood => "output_flood",
            Kind::MemoryBomb => "memory_bomb",
            Kind::ForkBomb => "fork_bomb",
            Kind::Background => "background",
        }
    }
}

struct Args {
    executions: usize,
    concurrency: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        executions: 1000,
        concurrency: 16,
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
            "--help" | "-h" => {
                return Err("usage: runbox-soak [--executions N] [--concurrency C]".into())
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// What happened to the executions: per kind, per outcome, a count; plus
/// the unexpected ones.
#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<(Kind, String), usize>,
    unexpected: Vec<String>,
}

impl Tally {
    fn record(&mut self, i: usize, kind: Kind, outcome: String, problem: Option<String>) {
        *self.outcomes.entry((kind, outcome.clone())).or_default() += 1;
        if let Some(p) = problem {
            self.unexpected
                .push(format!("#{i} {}: {outcome}: {p}", kind.name()));
        }
    }
}

fn limits(
    f: impl FnOnce(orchestrator_core::ResourceLimitsBuilder) -> orchestrator_core::ResourceLimitsBuilder,
) -> ResourceLimits {
    f(ResourceLimits::builder())
        .build()
        .expect("the soak's limits are valid")
}

fn outcome_of(status: &ExitStatus) -> String {
    match status {
        ExitStatus::Exited(c) => format!("exited({c})"),
        ExitStatus::Signaled(s) => format!("signaled({s})"),
        other => other.name().to_string(),
    }
}

/// Runs execution `i`; returns its outcome and, when it is not what the
/// kind expects, why.
async fn run_one(svc: &ExecutionService, i: usize, cgroups: bool) -> (String, Option<String>) {
    let kind = Kind::of(i);
    let request = match kind {
        Kind::Normal => {
            let code = i % 3;
            let mut r = ExecutionRequest::shell(format!(
                "echo out-{i}; echo err-{i} >&2; cat; exit {code}"
            ));
            if i & 1 == 0 {
                r = r.stdin(format!("in-{i}\n"));
            }
            r
        }
        Kind::Timeout => ExecutionRequest::shell(
            "sleep 60 & setsid sleep 60 & (sleep 60 &); sh -c 'sleep 60' & sleep 60",
        )
        .limits(limits(|b| b.wall_timeout(Duration::from_millis(300)))),
        Kind::Flood => {
            ExecutionRequest::shell("yes runbox-soak-output-flood").limits(limits(|b| {
                b.output_bytes(64 << 10)
                    .wall_timeout(Duration::from_secs(60))
            }))
        }
        Kind::MemoryBomb => ExecutionRequest::new(["tail", "/dev/zero"]).limits(limits(|b| {
            b.memory_bytes(32 << 20)
                .wall_timeout(Duration::from_secs(60))
        })),
        Kind::ForkBomb => {
            // Alternate a spawning loop (the shell dies on its first failed
            // fork, leaving its children for cleanup) and a classic bomb
            // where every process forks forever, ignoring failures (it
            // runs until the timeout kills the whole tree).
            let script = if (i / 20) & 1 == 0 {
                "n=0; while :; do sleep 60 & n=$((n+1)); echo $n; done"
            } else {
                "exec perl -e 'while (1) { fork }'"
            };
            ExecutionRequest::shell(script)
                .limits(limits(|b| b.pids(16).wall_timeout(Duration::from_secs(1))))
        }
        Kind::Background => {
            let mut r = ExecutionRequest::shell("sleep 300 & echo up; sleep 300");
            if i & 1 == 0 {
                // Half of them in a cgroup.
                r = r.limits(limits(|b| b.pids(64)));
            }
            return run_background(svc, i, r).await;
        }
    };
    let res = match svc.execute(request).await {
        Ok(r) => r,
        Err(e) => return ("error".into(), Some(format!("execute failed: {e}"))),
    };
    if let Err(e) = svc.store().delete(&res.execution_id).await {
        return ("error".into(), Some(format!("cannot delete record: {e}")));
    }
    let out = &res.output;
    let outcome = outcome_of(&out.status);
    let problem = if res.record.state != ExecutionState::Completed {
        Some(format!("record state {:?}", res.record.state))
    } else {
        match kind {
            Kind::Normal => {
                let want_out = if i & 1 == 0 {
                    format!("out-{i}\nin-{i}\n")
                } else {
                    format!("out-{i}\n")
                };
                if out.status != ExitStatus::Exited((i % 3) as i32) {
                    Some(format!("expected exit {}", i % 3))
                } else if out.stdout != want_out.as_bytes()
                    || out.stderr != format!("err-{i}\n").as_bytes()
                {
                    Some(format!(
                        "wrong output {:?} / {:?}",
                        out.stdout_str(),
                        out.stderr_str()
                    ))
                } else {
                    None
                }
            }
            Kind::Timeout => {
                (out.status != ExitStatus::TimedOut).then(|| "expected timed_out".into())
            }
            Kind::Flood => {
                if out.status != ExitStatus::OutputLimitExceeded {
                    Some("expected output_limit_exceeded".into())
                } else if out.stdout.len() > 64 << 10 || !out.stdout_truncated {
                    Some(format!(
                        "{} bytes kept, truncated {}",
                        out.stdout.len(),
                        out.stdout_truncated
                    ))
                } else {
                    None
                }
            }
            Kind::MemoryBomb => {
                if cgroups {
                    (out.status != ExitStatus::MemoryLimitExceeded)
                        .then(|| "expected memory_limit_exceeded".into())
                } else {
                    // RLIMIT_AS: the allocation fails, tail exits non-zero.
                    out.status
                        .success()
                        .then(|| "expected a failure under RLIMIT_AS".into())
                }
            }
            Kind::ForkBomb => {
                let started = out
                    .stdout_str()
                    .lines()
                    .filter_map(|l| l.trim().parse::<u64>().ok())
                    .max()
                    .unwrap_or(0);
                if (i / 20) & 1 == 0 && out.status.success() {
                    Some("the spawning loop cannot succeed".into())
                } else if (i / 20) & 1 == 1 && out.status != ExitStatus::TimedOut {
                    Some("the fork-forever bomb should run until the timeout".into())
                } else if started > 16 {
                    Some(format!("{started} processes started under pids=16"))
                } else if matches!(out.status, ExitStatus::FailedToStart { .. }) {
                    Some("did not start".into())
                } else {
                    None
                }
            }
            Kind::Background => None,
        }
    };
    (outcome, problem)
}

async fn run_background(
    svc: &ExecutionService,
    i: usize,
    request: ExecutionRequest,
) -> (String, Option<String>) {
    let id = match svc.submit(request).await {
        Ok(id) => id,
        Err(e) => return ("error".into(), Some(format!("submit failed: {e}"))),
    };
    let ws = match svc.start(&id, StartOptions::default()).await {
        Ok(ws) => ws,
        Err(e) => return ("error".into(), Some(format!("start failed: {e}"))),
    };
    // Let it get going (its children too) before stopping it early.
    tokio::time::sleep(Duration::from_millis(10 + (i % 5) as u64 * 20)).await;
    let rec = match svc.complete(&id, CompleteOptions::default()).await {
        Ok(r) => r,
        Err(e) => {
            return (
                "error".into(),
                Some(format!("complete of {ws} failed: {e}")),
            )
        }
    };
    if let Err(e) = svc.store().delete(&id).await {
        return ("error".into(), Some(format!("cannot delete record: {e}")));
    }
    let problem = (rec.state != ExecutionState::Completed)
        .then(|| format!("record state {:?} after complete", rec.state));
    ("stopped_early".into(), problem)
}

// ----- measurements -------------------------------------------------------

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_bytes() -> u64 {
    status_kib("VmRSS:") * 1024
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// Everything this run may have left behind, described.
fn leaks(root: &Path, id_prefix: &str) -> Vec<String> {
    let me = std::process::id();
    let mut out = Vec::new();
    let cg_marker = format!("/{id_prefix}");
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let p = e.path();
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            let Some((comm, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let comm = comm.split_once('(').map(|x| x.1).unwrap_or("?");
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or("?");
            let ppid: u32 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if ppid == me {
                out.push(format!("child process {pid} ({comm}, state {state})"));
                continue;
            }
            if let Ok(cwd) = std::fs::read_link(p.join("cwd")) {
                if cwd.starts_with(root) {
                    out.push(format!("process {pid} ({comm}) in {}", cwd.display()));
                    continue;
                }
            }
            let cgroups = std::fs::read_to_string(p.join("cgroup")).unwrap_or_default();
            if cgroups.contains(&cg_marker) {
                out.push(format!(
                    "process {pid} ({comm}) in a workspace cgroup of this run"
                ));
            }
        }
    }
    match std::fs::read_dir(root) {
        Ok(dir) => {
            for e in dir.flatten() {
                out.push(format!("workspace entry {}", e.path().display()));
            }
        }
        Err(e) => out.push(format!("cannot read the workspace root: {e}")),
    }
    for d in cgroup_dirs(id_prefix) {
        out.push(format!("cgroup {}", d.display()));
    }
    out
}

/// Cgroup directories (v1 hierarchies and v2) whose name starts with
/// `prefix`, anywhere under a `runbox` parent.
fn cgroup_dirs(prefix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), prefix, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    // v2: /sys/fs/cgroup/runbox; v1: /sys/fs/cgroup/<controller>/runbox.
    let base = Path::new("/sys/fs/cgroup");
    walk(&base.join("runbox"), prefix, 2, &mut out);
    for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
        walk(&e.path().join("runbox"), prefix, 2, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

// ----- driver -------------------------------------------------------------

async fn run_range(
    svc: &ExecutionService,
    range: std::ops::Range<usize>,
    concurrency: usize,
    cgroups: bool,
    tally: &Arc<Mutex<Tally>>,
    total: usize,
) {
    let next = Arc::new(AtomicUsize::new(range.start));
    let end = range.end;
    let step = (total / 10).max(1);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let svc = svc.clone();
        let next = next.clone();
        let tally = tally.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let (outcome, problem) = run_one(&svc, i, cgroups).await;
                tally.lock().unwrap_or_else(|p| p.into_inner()).record(
                    i,
                    Kind::of(i),
                    outcome,
                    problem,
                );
                if (i + 1).checked_rem(step) == Some(0) {
                    eprintln!(
                        "soak: {}/{total} started ({:.1}s)",
                        i + 1,
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    for w in workers {
        if let Err(e) = w.await {
            tally
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .unexpected
                .push(format!("a worker task failed: {e}"));
        }
    }
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

async fn soak(args: Args) -> Result<bool, String> {
    let root_dir = tempfile::Builder::new()
        .prefix("runbox-soak-")
        .tempdir()
        .map_err(|e| format!("cannot make the workspace root: {e}"))?;
    let native = NativeOrchestrator::new(NativeConfig {
        workspace_root: root_dir.path().to_path_buf(),
        ..NativeConfig::default()
    })
    .map_err(|e| format!("cannot create the native backend: {e}"))?;
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
        "soak: {n} executions at concurrency {c}; workspace root {}; limits via {}",
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

    // SIGKILLed processes take a moment to vanish; give them a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leftovers = loop {
        let l = leaks(&root, &id_prefix);
        if l.is_empty() || Instant::now() > deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let records_left = svc.list().await.map(|v| v.len()).unwrap_or(usize::MAX);
    // Idle runtime threads and the allocator's caches do not count.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds_after = fd_count();
    let rss_after = rss_bytes();
    let rss_peak = status_kib("VmHWM:") * 1024;
    let rss_bound = 2 * rss_warm + RSS_SLACK;

    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    println!(
        "soak: {n} executions in {:.1}s ({:.1}/s)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    let mut per_kind: BTreeMap<Kind, Vec<(String, usize)>> = BTreeMap::new();
    for ((kind, outcome), count) in &tally.outcomes {
        per_kind
            .entry(*kind)
            .or_default()
            .push((outcome.clone(), *count));
    }
    for (kind, outcomes) in &per_kind {
        let total: usize = outcomes.iter().map(|(_, c)| c).sum();
        let parts: Vec<String> = outcomes.iter().map(|(o, c)| format!("{o}={c}")).collect();
        println!("  {:<13} {total:>6}  {}", kind.name(), parts.join(" "));
    }
    println!(
        "  fds: {fds_before} before, {fds_warm} after warm-up ({warm} executions), {fds_after} at the end"
    );
    println!(
        "  rss: {} after warm-up, {} at the end (bound {}), peak {}",
        mib(rss_warm),
        mib(rss_after),
        mib(rss_bound),
        mib(rss_peak)
    );

    let mut failures = Vec::new();
    let done: usize = tally.outcomes.values().sum();
    if done != n {
        failures.push(format!("{done} of {n} executions accounted for"));
    }
    if !tally.unexpected.is_empty() {
        failures.push(format!(
            "{} executions ended unexpectedly, e.g.:\n    {}",
            tally.unexpected.len(),
            tally
                .unexpected
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    if !leftovers.is_empty() {
        failures.push(format!(
            "left behind:\n    {}",
            leftovers
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    if records_left != 0 {
        failures.push(format!("{records_left} records left in the store"));
    }
    if fds_after > fds_warm + FD_SLACK {
        failures.push(format!(
            "open file descriptors grew from {fds_warm} to {fds_after}"
        ));
    }
    if rss_after > rss_bound {
        failures.push(format!(
            "RSS {} above the bound {}",
            mib(rss_after),
            mib(rss_bound)
        ));
    }
    // The service and backend are dropped only now, after the checks: what
    // their Drop would tidy up must already be gone.
    drop(svc);
    drop(native);
    if failures.is_empty() {
        println!("soak: PASSED (no process, directory, cgroup, fd or memory leak)");
        Ok(true)
    } else {
        for f in &failures {
            println!("soak: FAILED: {f}");
        }
        Ok(false)
    }
}

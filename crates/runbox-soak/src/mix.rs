//! The mix of executions: what each kind runs, under which limits, and
//! whether its end is the one the kind expects.

use std::time::Duration;

use execution_service::{
    CompleteOptions, ExecutionRequest, ExecutionService, ExecutionState, StartOptions,
};
use orchestrator_core::{ExitStatus, ResourceLimits, ResourceLimitsBuilder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
/// What an execution of the mix does.
pub enum Kind {
    /// Output, stdin and an exit code.
    Normal,
    /// A wall timeout whose command left background children.
    Timeout,
    /// Output beyond the output limit.
    Flood,
    /// `tail /dev/zero` under a memory limit.
    MemoryBomb,
    /// Forking under a pids limit.
    ForkBomb,
    /// Started with `start`, stopped early with `complete`.
    Background,
}

impl Kind {
    /// The schedule: of every 20 executions, 8 normal, 3 timeouts, 3
    /// floods, 2 memory bombs, 1 fork bomb, 3 background.
    pub fn of(i: usize) -> Kind {
        match i % 20 {
            0..=7 => Kind::Normal,
            8..=10 => Kind::Timeout,
            11..=13 => Kind::Flood,
            14 | 15 => Kind::MemoryBomb,
            16 => Kind::ForkBomb,
            _ => Kind::Background,
        }
    }

    /// The kind's name in the summary.
    pub fn name(self) -> &'static str {
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

fn limits(f: impl FnOnce(ResourceLimitsBuilder) -> ResourceLimitsBuilder) -> ResourceLimits {
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
pub async fn run_one(svc: &ExecutionService, i: usize, cgroups: bool) -> (String, Option<String>) {
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

/// A background execution: submit, start, stop early with `complete`.
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

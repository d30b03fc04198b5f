//! Driving a started command to its end: wall timeout, output limit, the
//! whole-tree kill, the drain of pipes held by escaped descendants, and the
//! result (exit status with OOM attribution, CPU time, peak memory).

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use orchestrator_core::exec::OutputCapture;
use orchestrator_core::{ExecOutput, ExitStatus};

use crate::process::capture::read_output;
use crate::process::spawn::Running;
use crate::procfs;

/// How long output is still read after the main process ended and its group
/// was killed (pipes held by escaped descendants are abandoned after this).
const DRAIN_GRACE: Duration = Duration::from_millis(200);
/// How long slow readers get when no outside process holds the pipes (they
/// will see EOF; this only bounds a pathological stall).
const SLOW_DRAIN_LIMIT: Duration = Duration::from_secs(30);

enum Ending {
    Exited(std::process::ExitStatus),
    TimedOut,
    OverLimit,
    WaitFailed,
}

/// Drives a started command to its end and builds its result.
pub(crate) async fn drive(mut r: Running) -> ExecOutput {
    let sleep = async {
        match r.timeout {
            Some(t) => tokio::time::sleep_until((r.started + t).into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    let reading = read_output(r.stdout.take(), r.stderr.take(), r.shared.clone());
    tokio::pin!(reading);
    let mut read_all = false;
    let ending = loop {
        tokio::select! {
            s = r.leader.wait() => break match s { Some(s) => Ending::Exited(s), None => Ending::WaitFailed },
            _ = &mut sleep => break Ending::TimedOut,
            over = &mut reading, if !read_all => {
                read_all = true;
                if over {
                    break Ending::OverLimit;
                }
            }
        }
    };
    // Give the scheduler a turn. The child's exit woke this task from the
    // I/O driver into the waking worker's LIFO slot, which other workers
    // cannot steal from; what follows (results, then the caller's copy out
    // and cleanup) is a stretch of synchronous work. Yielding moves the task
    // to the stealable queue and wakes an idle worker, so two concurrent
    // executions use two cores instead of queueing behind each other.
    tokio::task::yield_now().await;
    let exit = match ending {
        Ending::Exited(s) => Some(s),
        _ => {
            // Leader still alive: the tree is intact, kill all of it.
            r.group.kill_tree();
            r.leader.wait().await
        }
    };
    let wall_time = r.started.elapsed();
    // Leftovers of a command that ended by itself go with it.
    r.group.kill_leftovers();
    if !read_all
        && tokio::time::timeout(DRAIN_GRACE, &mut reading)
            .await
            .is_err()
    {
        // Still reading: either the reader is slow (a loaded machine) or
        // a process outside the group holds a pipe open. Only the latter
        // may cut the output short.
        let inodes: Vec<u64> = r
            .pipe_fds
            .iter()
            .filter_map(|&fd| procfs::fd_inode(fd))
            .collect();
        let held = tokio::task::spawn_blocking(move || procfs::pipes_held_elsewhere(&inodes))
            .await
            .unwrap_or(true);
        if !held {
            let _ = tokio::time::timeout(SLOW_DRAIN_LIMIT, &mut reading).await;
        }
    }
    if let Some(t) = r.stdin_task.take() {
        t.abort();
    }
    let capture = r.shared.take();
    let over_cap = capture.exceeded();
    let oom = r
        .cgroup
        .as_ref()
        .is_some_and(|c| c.oom_kills() > r.oom_before);
    let status = match ending {
        Ending::TimedOut => ExitStatus::TimedOut,
        Ending::OverLimit => ExitStatus::OutputLimitExceeded,
        _ if over_cap => ExitStatus::OutputLimitExceeded,
        Ending::WaitFailed => ExitStatus::Signaled(libc::SIGKILL),
        Ending::Exited(_) => match exit {
            Some(s) if oom && (s.signal() == Some(libc::SIGKILL) || s.code() == Some(137)) => {
                ExitStatus::MemoryLimitExceeded
            }
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => ExitStatus::Exited(c),
                (None, Some(sig)) => ExitStatus::Signaled(sig),
                (None, None) => ExitStatus::Signaled(libc::SIGKILL),
            },
            None => ExitStatus::Signaled(libc::SIGKILL),
        },
    };
    let cpu_time = match (&r.cgroup, r.cpu_before) {
        (Some(c), Some(before)) => c.cpu_usage().map(|now| now.saturating_sub(before)),
        _ => None,
    };
    let peak_memory = r
        .cgroup
        .as_ref()
        .and_then(|c| c.peak_memory(r.peak_handle.as_mut()));
    r.guard.armed = false;
    capture.finish(status, wall_time, cpu_time, peak_memory)
}

/// The result of a command that never started.
pub(crate) fn not_started(status: ExitStatus) -> ExecOutput {
    OutputCapture::empty().finish(status, Duration::ZERO, None, None)
}

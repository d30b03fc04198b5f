//! How the fake stops processes as the contract asks: kill the whole tree,
//! wait for it at most [`STOP_DEADLINE`], and name a process that survived
//! SIGKILL that long instead of returning a silent `Ok`.

use std::sync::Arc;
use std::time::Duration;

use super::machine::Machine;
use super::run::Job;
use crate::error::{Error, Result};
use crate::orchestrator::STOP_DEADLINE;

/// The source of the [`Error::Backend`] a fake's `stop` answers when a
/// process survived SIGKILL for [`STOP_DEADLINE`] (simulated with
/// [`FakeOrchestrator::processes_survive_kill`](super::FakeOrchestrator::processes_survive_kill)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("processes {pids:?} of fake workspace {workspace} survived SIGKILL for {waited:?}")]
pub struct SurvivedKill {
    /// The workspace the processes run in.
    pub workspace: String,
    /// The fake pids still alive at the deadline.
    pub pids: Vec<u32>,
    /// How long `stop` waited.
    pub waited: Duration,
}

/// How often the end of killed processes is checked.
const POLL: Duration = Duration::from_millis(5);

/// Waits until every process in `pids` (just sent SIGKILL) is gone and
/// every job in `jobs` has its result, at most [`STOP_DEADLINE`] in all.
pub(crate) async fn await_end(
    backend: &str,
    workspace: &str,
    machine: &Machine,
    pids: &[u32],
    jobs: &[Arc<Job>],
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + STOP_DEADLINE;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| machine.alive(p)).collect();
        if alive.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::backend(
                backend,
                SurvivedKill {
                    workspace: workspace.to_string(),
                    pids: alive,
                    waited: STOP_DEADLINE,
                },
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    for job in jobs {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // The processes are gone, so each job records its end at once; a
        // job still without one at the deadline has nothing left to kill.
        job.wait(Some(left)).await;
    }
    Ok(())
}

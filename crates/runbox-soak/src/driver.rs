//! Driving the mix: workers taking execution indices in turn, and the tally
//! of how each ended.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use execution_service::ExecutionService;

use crate::mix::{run_one, Kind};

/// What happened to the executions: per kind, per outcome, a count; plus
/// the unexpected ones.
#[derive(Default)]
pub struct Tally {
    /// Count per kind and outcome.
    pub outcomes: BTreeMap<(Kind, String), usize>,
    /// One line per execution that did not end as its kind expects.
    pub unexpected: Vec<String>,
}

impl Tally {
    /// Counts execution `i`, and its problem if it has one.
    pub fn record(&mut self, i: usize, kind: Kind, outcome: String, problem: Option<String>) {
        *self.outcomes.entry((kind, outcome.clone())).or_default() += 1;
        if let Some(p) = problem {
            self.unexpected
                .push(format!("#{i} {}: {outcome}: {p}", kind.name()));
        }
    }
}

/// Runs executions `range` of the mix on `concurrency` workers, counting
/// each in `tally` and logging progress every tenth of `total`.
pub async fn run_range(
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

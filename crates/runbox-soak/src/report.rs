//! The end of a soak: the summary (per kind and outcome, fds, RSS) and the
//! checks that make it fail.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::driver::Tally;
use crate::leaks::mib;
use crate::mix::Kind;

/// File descriptors the process may gain between warm-up and the end
/// (a lazily created runtime or signal pipe, say).
const FD_SLACK: usize = 2;
/// Added to twice the warm-up RSS to form the RSS bound.
const RSS_SLACK: u64 = 32 << 20;

/// What a soak measured.
pub struct Run {
    /// Executions asked for.
    pub executions: usize,
    /// Of them, the warm-up.
    pub warm: usize,
    /// Time of all executions and their cleanups.
    pub elapsed: Duration,
    /// How the executions ended.
    pub tally: Tally,
    /// What was left behind (see [`crate::leaks::leaks`]).
    pub leftovers: Vec<String>,
    /// Records still in the store.
    pub records_left: usize,
    /// Open fds before the warm-up, after it, at the end.
    pub fds_before: usize,
    /// See `fds_before`.
    pub fds_warm: usize,
    /// See `fds_before`.
    pub fds_after: usize,
    /// RSS after the warm-up, at the end, and the peak.
    pub rss_warm: u64,
    /// See `rss_warm`.
    pub rss_after: u64,
    /// See `rss_warm`.
    pub rss_peak: u64,
}

/// Prints the summary of `r`; returns the failed checks.
pub fn summary(r: &Run) -> Vec<String> {
    let n = r.executions;
    let rss_bound = 2 * r.rss_warm + RSS_SLACK;
    println!(
        "soak: {n} executions in {:.1}s ({:.1}/s)",
        r.elapsed.as_secs_f64(),
        n as f64 / r.elapsed.as_secs_f64()
    );
    let mut per_kind: BTreeMap<Kind, Vec<(String, usize)>> = BTreeMap::new();
    for ((kind, outcome), count) in &r.tally.outcomes {
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
        "  fds: {} before, {} after warm-up ({} executions), {} at the end",
        r.fds_before, r.fds_warm, r.warm, r.fds_after
    );
    println!(
        "  rss: {} after warm-up, {} at the end (bound {}), peak {}",
        mib(r.rss_warm),
        mib(r.rss_after),
        mib(rss_bound),
        mib(r.rss_peak)
    );

    let mut failures = Vec::new();
    let done: usize = r.tally.outcomes.values().sum();
    if done != n {
        failures.push(format!("{done} of {n} executions accounted for"));
    }
    if !r.tally.unexpected.is_empty() {
        failures.push(format!(
            "{} executions ended unexpectedly, e.g.:\n    {}",
            r.tally.unexpected.len(),
            r.tally
                .unexpected
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    if !r.leftovers.is_empty() {
        failures.push(format!(
            "left behind:\n    {}",
            r.leftovers
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    if r.records_left != 0 {
        failures.push(format!("{} records left in the store", r.records_left));
    }
    if r.fds_after > r.fds_warm + FD_SLACK {
        failures.push(format!(
            "open file descriptors grew from {} to {}",
            r.fds_warm, r.fds_after
        ));
    }
    if r.rss_after > rss_bound {
        failures.push(format!(
            "RSS {} above the bound {}",
            mib(r.rss_after),
            mib(rss_bound)
        ));
    }
    failures
}

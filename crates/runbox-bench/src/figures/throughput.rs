//! The native throughput figures: executions per second with c tasks
//! sharing one service, against the bare spawn's single-core rate.

use std::path::Path;

use execution_service::ExecutionService;
use orchestrator_core::ResourceLimits;

use super::{figure, Figure};
use crate::timed::native::throughput;
use crate::{BoxError, Opts};

/// Throughput of `service` (at isolation `mode`, for the figures' names)
/// at each concurrency of `levels`, against the single-core rate of the
/// bare spawn `base` (1 / its p50).
pub async fn figures(
    o: &Opts,
    service: &ExecutionService,
    mode: &str,
    levels: &[usize],
    dir: &Path,
    base: &Figure,
    limits: Option<&ResourceLimits>,
) -> Result<Vec<Figure>, BoxError> {
    let base_rate = 1000.0 / base.p50;
    let base_rate_name = format!("{} (single-core rate, exec/s)", base.name);
    // Enough executions per level that a level runs for about a second.
    let per_level = if o.quick { 40 } else { 2000 };
    let repeats = if o.quick { 1 } else { 3 };
    let mut out = Vec::new();
    for &c in levels {
        let mut rates = Vec::new();
        for _ in 0..repeats {
            rates.push(throughput(service, dir, c, per_level, limits).await?);
        }
        let mut f = figure(
            &format!("native throughput, isolation {mode}, concurrency {c}"),
            "exec/s",
            rates,
        );
        f.baseline = Some(base_rate_name.clone());
        f.ratio = Some(f.p50 / base_rate);
        f.note = Some(format!(
            "{per_level} lifecycles per level, median of {repeats}"
        ));
        out.push(f);
    }
    Ok(out)
}

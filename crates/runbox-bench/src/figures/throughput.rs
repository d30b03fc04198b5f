//! The native throughput figures: executions per second with c tasks
//! sharing one service, against the bare spawn's single-core rate.

use std::path::Path;

use execution_service::ExecutionService;

use super::{figure, Figure};
use crate::timed::native::throughput;
use crate::{BoxError, Opts};

/// Throughput at isolation none for c = 1 to 16 (the figures earlier
/// targets were set on), and at isolation full for c = 4 when `isolated`
/// is given, each against the single-core rate of the bare spawn whose
/// p50 is `base_p50` ms.
pub async fn figures(
    o: &Opts,
    host: &ExecutionService,
    isolated: Option<&ExecutionService>,
    dir: &Path,
    base_p50: f64,
    base_name: &str,
) -> Result<Vec<Figure>, BoxError> {
    let base_rate = 1000.0 / base_p50;
    let base_rate_name = format!("{base_name} (single-core rate, exec/s)");
    // Enough executions per level that a level runs for about a second.
    let per_level = if o.quick { 40 } else { 2000 };
    let repeats = if o.quick { 1 } else { 3 };
    let mut levels: Vec<(&str, &ExecutionService, usize)> = [1usize, 2, 4, 8, 16]
        .into_iter()
        .map(|c| ("none", host, c))
        .collect();
    if let Some(iso) = isolated {
        levels.push(("full", iso, 4));
    }
    let mut out = Vec::new();
    for (mode, service, c) in levels {
        let mut rates = Vec::new();
        for _ in 0..repeats {
            rates.push(throughput(service, dir, c, per_level).await?);
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

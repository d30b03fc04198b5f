//! A measured figure (percentiles of its samples, its ratio to a baseline)
//! and the groups of figures the default run measures.

pub mod cli;
pub mod docker;
pub mod isolated;
pub mod memory;
pub mod native;
pub mod server;
pub mod swarm;
pub mod throughput;

/// One reported figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// Unit of the percentiles and samples ("ms", "exec/s", "KiB").
    pub unit: &'static str,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The figure this one is a ratio to.
    pub baseline: Option<String>,
    /// `p50 / baseline's p50`.
    pub ratio: Option<f64>,
    /// Ratios to further baselines of the same run (the isolated
    /// lifecycle against the isolating tools).
    pub also: Vec<Ratio>,
    /// Raw samples (for the chart), sorted, in `unit`.
    pub samples: Vec<f64>,
    /// How it was measured, or why it is missing.
    pub note: Option<String>,
}

/// A figure's ratio to a further baseline.
#[derive(Debug, Clone)]
pub struct Ratio {
    /// Short name of the baseline in the table ("bwrap").
    pub label: &'static str,
    /// The baseline figure's name.
    pub baseline: String,
    /// `p50 / baseline's p50`.
    pub ratio: f64,
}

/// The `p` quantile (0 to 1) of sorted samples; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// A figure of `samples` (in any order).
pub fn figure(name: &str, unit: &'static str, mut samples: Vec<f64>) -> Figure {
    samples.sort_by(|a, b| a.total_cmp(b));
    Figure {
        name: name.to_string(),
        unit,
        p50: percentile(&samples, 0.5),
        p90: percentile(&samples, 0.9),
        p99: percentile(&samples, 0.99),
        baseline: None,
        ratio: None,
        also: Vec::new(),
        samples,
        note: None,
    }
}

/// `f` as a ratio to `base`.
pub fn against(mut f: Figure, base: &Figure) -> Figure {
    f.baseline = Some(base.name.clone());
    f.ratio = Some(f.p50 / base.p50);
    f
}

/// `f` with its ratio to `base` added to its further ratios.
pub fn also_against(mut f: Figure, label: &'static str, base: &Figure) -> Figure {
    f.also.push(Ratio {
        label,
        baseline: base.name.clone(),
        ratio: f.p50 / base.p50,
    });
    f
}

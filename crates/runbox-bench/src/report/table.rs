//! The human table of the figures.

use std::io::Write;

use crate::figures::Figure;

/// The human table: on stdout, or on stderr when stdout carries the JSON.
pub fn print_table(figures: &[Figure], to_stderr: bool) {
    let mut out: Box<dyn std::io::Write> = if to_stderr {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let _ = writeln!(
        out,
        "{:<92} {:>10} {:>10} {:>10} {:>8}  baseline",
        "figure", "p50", "p90", "p99", "ratio"
    );
    for f in figures {
        let _ = writeln!(
            out,
            "{:<92} {:>10.3} {:>10.3} {:>10.3} {:>8}  {}{}{}",
            format!("{} [{}]", f.name, f.unit),
            f.p50,
            f.p90,
            f.p99,
            f.ratio
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_else(|| "-".into()),
            f.baseline.as_deref().unwrap_or("-"),
            f.also
                .iter()
                .map(|r| format!("; {:.2}x {}", r.ratio, r.label))
                .collect::<String>(),
            f.note
                .as_ref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
        );
    }
}

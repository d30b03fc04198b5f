//! The figures as JSON (`--json`).

use crate::figures::Figure;

/// The figures as a JSON array (non-finite numbers as null; sample counts,
/// not samples).
pub fn to_json(figures: &[Figure]) -> serde_json::Value {
    let num = |x: f64| {
        if x.is_finite() {
            serde_json::json!(x)
        } else {
            serde_json::Value::Null
        }
    };
    serde_json::Value::Array(
        figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name,
                    "unit": f.unit,
                    "p50": num(f.p50),
                    "p90": num(f.p90),
                    "p99": num(f.p99),
                    "baseline": f.baseline,
                    "ratio": f.ratio.map(num),
                    "also": f.also.iter().map(|r| serde_json::json!({
                        "baseline": r.baseline,
                        "ratio": num(r.ratio),
                    })).collect::<Vec<_>>(),
                    "samples": f.samples.len(),
                    "note": f.note,
                })
            })
            .collect(),
    )
}

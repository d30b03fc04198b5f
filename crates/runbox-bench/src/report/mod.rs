//! Where the figures go: the table (stdout, or stderr when the JSON takes
//! stdout), the JSON and the SVG files.

mod json;
mod svg;
mod table;

use std::path::Path;

use crate::figures::Figure;
use crate::{BoxError, Opts};

pub use table::print_table;

/// Writes the table, and the JSON and SVG the options ask for.
pub fn write(o: &Opts, figures: &[Figure]) -> Result<(), BoxError> {
    let json_stdout = o.json.as_deref() == Some(Path::new("-"));
    print_table(figures, json_stdout);
    if let Some(p) = &o.json {
        let text = serde_json::to_string_pretty(&json::to_json(figures))?;
        if json_stdout {
            println!("{text}");
        } else {
            std::fs::write(p, text)?;
            eprintln!("runbox-bench: wrote {}", p.display());
        }
    }
    if let Some(p) = &o.svg {
        std::fs::write(p, svg::svg(figures))?;
        eprintln!("runbox-bench: wrote {}", p.display());
    }
    Ok(())
}

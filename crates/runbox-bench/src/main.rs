//! runbox benchmarks, the entry point: options, then the figures or a
//! profiling mode. Every figure is reported with p50/p90/p99 and its ratio
//! to a baseline measured in the same run (absolute times drift on shared
//! machines; ratios do not, much).
//!
//! Usage: `runbox-bench [--quick] [--json FILE] [--svg FILE]`,
//! `runbox-bench --breakdown [docker]`, `runbox-bench --cpu`, `runbox-bench
//! --server [--quick]` (the server figures alone) (normally via
//! `cargo xtask bench`, which builds it in release mode).

mod figures;
mod modes;
mod report;
mod timed;

use std::path::PathBuf;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The command line.
struct Opts {
    /// Fewer samples (`--quick`).
    quick: bool,
    /// `--breakdown [docker]`.
    breakdown: bool,
    /// `--cpu`.
    cpu: bool,
    /// `--server`: only the server figures.
    server: bool,
    /// `--json FILE` (`-`: stdout).
    json: Option<PathBuf>,
    /// `--svg FILE`.
    svg: Option<PathBuf>,
}

/// Parses `std::env::args`.
fn parse_args() -> Result<Opts, BoxError> {
    let mut o = Opts {
        quick: false,
        breakdown: false,
        cpu: false,
        server: false,
        json: None,
        svg: None,
    };
    let mut it = std::env::args().skip(1).peekable();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--breakdown" => o.breakdown = true,
            "--cpu" => o.cpu = true,
            "--server" => o.server = true,
            // `--json FILE`, or `--json` alone (or `--json -`) for stdout.
            "--json" => {
                let file = it
                    .next_if(|n| !n.starts_with("--"))
                    .unwrap_or_else(|| "-".into());
                o.json = Some(file.into());
            }
            "--svg" => o.svg = Some(it.next().ok_or("--svg needs a file")?.into()),
            "docker" if o.breakdown => {}
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(o)
}

/// The mode the options ask for, or the figures (native, then docker).
async fn run() -> Result<(), BoxError> {
    let o = parse_args()?;
    if o.cpu {
        return modes::cpu::cost().await;
    }
    if o.server {
        let all = figures::server::figures(&o).await?;
        return report::write(&o, &all);
    }
    if o.breakdown {
        if std::env::args().any(|a| a == "docker") {
            return modes::docker_breakdown::docker().await;
        }
        return modes::breakdown::native().await;
    }
    let mut all = Vec::new();
    eprintln!(
        "runbox-bench: native figures{}",
        if o.quick { " (quick)" } else { "" }
    );
    figures::native::figures(&o, &mut all).await?;
    eprintln!("runbox-bench: docker figures");
    if let Err(e) = figures::docker::figures(&o, &mut all).await {
        let mut f = figures::figure("docker lifecycle", "ms", Vec::new());
        f.note = Some(format!("failed: {e}"));
        all.push(f);
        if std::env::var("RUNBOX_REQUIRE_DOCKER").as_deref() == Ok("1") {
            report::print_table(&all, true);
            return Err(format!("docker benchmark failed: {e}").into());
        }
    }
    eprintln!("runbox-bench: swarm figures");
    if let Err(e) = figures::swarm::figures(&o, &mut all).await {
        let mut f = figures::figure("swarm lifecycle", "ms", Vec::new());
        f.note = Some(format!("failed: {e}"));
        all.push(f);
        if std::env::var("RUNBOX_REQUIRE_SWARM").as_deref() == Ok("1") {
            report::print_table(&all, true);
            return Err(format!("swarm benchmark failed: {e}").into());
        }
    }
    report::write(&o, &all)
}

fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runbox-bench: cannot start tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runbox-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

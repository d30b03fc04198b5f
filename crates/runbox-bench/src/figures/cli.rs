//! The one-shot CLI as a whole process: `runbox run --json -- true`
//! (isolation auto, the default, with its SQLite record) against a whole
//! `bwrap --unshare-all ... /bin/true`, wall time and CPU time (the process
//! and everything it waited for), interleaved in the same run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{against, figure, Figure};
use crate::timed::cpu_ms;
use crate::timed::tools::BWRAP;
use crate::{BoxError, Opts};

/// Where the CLI binary is: `RUNBOX_BENCH_CLI` (set by `cargo xtask
/// bench`, which builds it), else `runbox` next to this binary.
fn cli_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RUNBOX_BENCH_CLI") {
        return Some(PathBuf::from(p));
    }
    let me = std::env::current_exe().ok()?;
    let p = me.parent()?.join("runbox");
    p.is_file().then_some(p)
}

/// One whole-process run: (wall ms, CPU ms of it and its descendants).
async fn timed(program: &Path, args: &[&str], state: &Path) -> Result<(f64, f64), BoxError> {
    let c0 = cpu_ms().1;
    let t = Instant::now();
    let out = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/")
        .env("LANG", "C.UTF-8")
        .env("RUNBOX_STATE_DIR", state)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await?;
    let wall = t.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok((wall, cpu_ms().1 - c0))
}

fn skipped(name: &str, why: &str) -> Figure {
    let mut f = figure(name, "ms", Vec::new());
    f.note = Some(format!("skipped: {why}"));
    f
}

const WALL: &str = "whole process: runbox run --json -- true (isolation auto), wall time";
const CPU: &str = "whole process: runbox run --json -- true (isolation auto), CPU time";

/// The CLI figures (wall, CPU) and their bwrap baselines.
pub async fn figures(o: &Opts) -> Result<Vec<Figure>, BoxError> {
    let Some(cli) = cli_path() else {
        let why = "no runbox binary (cargo xtask bench builds it; or set RUNBOX_BENCH_CLI)";
        eprintln!("runbox-bench: no CLI figures: {why}");
        return Ok(vec![skipped(WALL, why), skipped(CPU, why)]);
    };
    let Some(bwrap) = BWRAP.find() else {
        let why = "bwrap not installed (Debian package bubblewrap)";
        eprintln!("runbox-bench: no CLI figures: {why}");
        return Ok(vec![skipped(WALL, why), skipped(CPU, why)]);
    };
    let state = tempfile::tempdir()?;
    let run = ["run", "--json", "--", "true"];
    let (n, warm) = if o.quick { (20, 3) } else { (200, 20) };
    let bw_args = BWRAP.args();
    for _ in 0..warm {
        timed(&cli, &run, state.path()).await?;
        timed(&bwrap, bw_args, state.path()).await?;
    }
    let (mut cw, mut cc, mut bw, mut bc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let (w, c) = timed(&cli, &run, state.path()).await?;
        cw.push(w);
        cc.push(c);
        let (w, c) = timed(&bwrap, bw_args, state.path()).await?;
        bw.push(w);
        bc.push(c);
    }
    let mut bw_wall = figure("whole process: bwrap /bin/true, wall time", "ms", bw);
    bw_wall.note = Some(BWRAP.command_line());
    let mut bw_cpu = figure("whole process: bwrap /bin/true, CPU time", "ms", bc);
    bw_cpu.note = Some("user + system time of it and its children (RUSAGE_CHILDREN)".into());
    let mut wall = against(figure(WALL, "ms", cw), &bw_wall);
    wall.note = Some(format!(
        "{} run --json -- true, a fresh state directory (SQLite record), as root here",
        cli.display()
    ));
    let mut cpu = against(figure(CPU, "ms", cc), &bw_cpu);
    cpu.note =
        Some("user + system time of runbox and everything it waited for (its sandbox)".into());
    Ok(vec![wall, cpu, bw_wall, bw_cpu])
}

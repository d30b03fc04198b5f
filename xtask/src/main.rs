//! runbox developer tasks, reached as `cargo xtask <task>`.
//!
//! - `ci`: what `.ci/run` runs after installing packages (fmt, clippy, tests).
//! - `conformance`: the conformance suites of every backend.
//! - `test-image`: builds the `runbox-testbox:latest` docker image.
//! - `bench`: benchmarks (see docs/performance.md).
//! - `vm-test`: the native conformance suite on cgroup v2 inside a VM.
//! - `soak`: many mixed native executions, then leak checks.
//! - `nonroot`: the native conformance suite as an unprivileged user.
//! - `fuzz`: the cargo-fuzz targets (fuzz/), briefly each.
//! - `api-check`: schemathesis against `runbox serve`'s OpenAPI document.
//! - `swarm-up [--nodes N]`, `swarm-down`: a multi-node Docker Swarm test
//!   cluster on this host (one dockerd per network namespace), and its teardown.
//! - `swarm-test`: swarm-up, the swarm test targets against it, swarm-down.

mod api_check;
mod fuzz;
mod nonroot;
mod soak;
mod swarm;
mod test_image;
mod vm_test;

use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        bail!(
            "usage: cargo xtask <ci|conformance|test-image|bench|vm-test|soak|nonroot|fuzz|api-check|swarm-up|swarm-down|swarm-test> [args]"
        );
    };
    let rest = &args[1..];
    match task.as_str() {
        "ci" => ci(rest),
        "conformance" => conformance(rest),
        "vm-test" => vm_test::vm_test(rest),
        "test-image" => test_image::test_image(rest),
        "bench" => bench(rest),
        "soak" => soak::soak(rest),
        "nonroot" => nonroot::nonroot(rest),
        "fuzz" => fuzz::fuzz(rest),
        "api-check" => api_check::api_check(rest),
        "swarm-up" => swarm::swarm_up(rest),
        "swarm-down" => swarm::swarm_down(rest),
        "swarm-test" => swarm::swarm_test(rest),
        other => {
            bail!("unknown task {other:?}; known: ci, conformance, test-image, bench, vm-test, soak, nonroot, fuzz, api-check, swarm-up, swarm-down, swarm-test")
        }
    }
}

/// Runs a command, failing with its name when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Debian packages the test suites need (the docker test image is built from
/// the host's static busybox).
const TEST_PACKAGES: &[&str] = &["busybox-static"];

/// Debian packages the benchmark needs for its baselines: bubblewrap
/// (`bwrap`) and util-linux (`unshare`, essential on Debian: only checked).
const BENCH_PACKAGES: &[&str] = &["bubblewrap", "util-linux"];

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs missing Debian packages (as root, through apt-get).
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {missing:?}; install them with: sudo apt-get install -y {}",
            missing.join(" ")
        );
    }
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn ci(_args: &[String]) -> Result<()> {
    ensure_packages(TEST_PACKAGES)?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args(["test", "--workspace", "--all-features", "--no-fail-fast"]))?;
    // The native suite again as host processes (the isolation cases are
    // ignored, visibly), for the network cases with the host's network,
    // and pooled.
    run(cargo()
        .args(["test", "-p", "orchestrator-native", "--test", "conformance"])
        .env("RUNBOX_NATIVE_ISOLATION", "none"))?;
    run(cargo()
        .args(["test", "-p", "orchestrator-native", "--test", "conformance"])
        .env("RUNBOX_NATIVE_ISOLATION", "full")
        .env("RUNBOX_NATIVE_NETWORK", "host"))?;
    // And on workspaces from a warm pool: a pooled sandbox must be as
    // isolated, and leave as little, as a fresh one.
    run(cargo()
        .args(["test", "-p", "orchestrator-native", "--test", "conformance"])
        .env("RUNBOX_NATIVE_ISOLATION", "full")
        .env("RUNBOX_NATIVE_POOL", "2"))?;
    // The API docs build without broken or private links.
    run(cargo()
        .args(["doc", "--workspace", "--all-features", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    Ok(())
}

/// `cargo xtask bench [--quick] [--json FILE] [--svg FILE] [--swarm]`:
/// installs the tools it compares with, builds the benchmark in release
/// mode and runs it; with `--swarm`, against a test swarm brought up for
/// it (the swarm lifecycle figure) and torn down after.
fn bench(args: &[String]) -> Result<()> {
    let with_swarm = args.iter().any(|a| a == "--swarm");
    let args: Vec<String> = args.iter().filter(|a| *a != "--swarm").cloned().collect();
    ensure_packages(BENCH_PACKAGES)?;
    // The CLI too: the bench times it as a whole process.
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "runbox-bench",
        "-p",
        "runbox-cli",
    ]))?;
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let mut cmd = Command::new(format!("{target}/release/runbox-bench"));
    cmd.args(&args);
    if with_swarm {
        return swarm::run_with_cluster(cmd, "runbox-bench");
    }
    run(&mut cmd)
}

fn conformance(args: &[String]) -> Result<()> {
    let backends: Vec<&str> = if args.is_empty() {
        vec!["orchestrator-native"]
    } else {
        args.iter().map(|s| s.as_str()).collect()
    };
    for b in backends {
        run(cargo().args(["test", "-p", b, "--test", "conformance"]))?;
    }
    Ok(())
}

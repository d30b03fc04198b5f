//! swarm-test: a fresh cluster, the swarm test targets run against it in
//! order, and the teardown on every way out (success, a failing test, a
//! failed swarm-up, a panic, SIGINT/SIGTERM).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::{cluster, interrupt, procs, secs, teardown, Layout};

/// The cargo invocations run against the cluster, in order; the first
/// failure stops the run. Each gets `$DIR/cluster.env`'s variables and
/// `RUNBOX_REQUIRE_SWARM=1` (a missing cluster then fails rather than skips).
/// The cluster cases are `#[ignore]`d in plain `cargo test` (they need the
/// cluster and change it), hence `--include-ignored`; one at a time, since
/// they kill and cut off nodes.
const TESTS: &[&[&str]] = &[
    &[
        "test",
        "-p",
        "orchestrator-docker",
        "--test",
        "swarm_conformance",
    ],
    &[
        "test",
        "-p",
        "orchestrator-docker",
        "--test",
        "swarm",
        "--",
        "--test-threads=1",
        "--include-ignored",
    ],
    &[
        "test",
        "-p",
        "runbox-cli",
        "--test",
        "swarm",
        "--",
        "--test-threads=1",
        "--include-ignored",
    ],
];

/// How long a test run gets to stop on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs the task; fails when a test failed, up failed, or anything was left.
pub fn swarm_test(layout: &Layout, nodes: usize) -> Result<()> {
    // Before the teardown-always part: a live cluster is not ours to end.
    cluster::refuse_live(layout)?;
    let t0 = Instant::now();
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| up_and_test(layout, nodes)))
            .unwrap_or_else(|_| Err(anyhow!("swarm-test panicked")));
    let down = teardown::down(layout);
    match (outcome, down) {
        (Ok(()), Ok(())) => {
            eprintln!(
                "xtask swarm-test: all {} test runs passed in {}; cluster torn down",
                TESTS.len(),
                secs(t0)
            );
            Ok(())
        }
        (Err(e), Ok(())) => Err(e.context(format!(
            "swarm-test failed after {} (cluster torn down)",
            secs(t0)
        ))),
        (Ok(()), Err(d)) => Err(d.context("swarm-test: the tests passed but the teardown failed")),
        (Err(e), Err(d)) => Err(anyhow!(
            "swarm-test failed: {e:#}\nand the teardown failed too: {d:#}"
        )),
    }
}

/// Runs `cmd` with the variables of a fresh `nodes`-node cluster in its
/// environment, the cluster torn down on every way out as in swarm-test
/// (`cargo xtask bench --swarm`).
pub fn with_cluster(layout: &Layout, nodes: usize, mut cmd: Command, label: &str) -> Result<()> {
    cluster::refuse_live(layout)?;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cluster::up(layout, nodes)?;
        let env = cluster::read_env(layout)?;
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUNBOX_REQUIRE_SWARM", "1");
        run_child(cmd, label)
    }))
    .unwrap_or_else(|_| Err(anyhow!("{label} panicked")));
    let down = teardown::down(layout);
    match (outcome, down) {
        (Ok(()), d) => d,
        (Err(e), Ok(())) => Err(e.context("cluster torn down")),
        (Err(e), Err(d)) => Err(anyhow!("{e:#}\nand the teardown failed too: {d:#}")),
    }
}

fn up_and_test(layout: &Layout, nodes: usize) -> Result<()> {
    // Compiled first, so the cluster does not idle through the build and a
    // compile error fails before anything is brought up.
    for args in TESTS {
        interrupt::check()?;
        let build: Vec<&str> = args.iter().copied().take_while(|a| *a != "--").collect();
        let mut cmd = crate::cargo();
        cmd.args(&build).arg("--no-run");
        run_child(cmd, &format!("cargo {} --no-run", build.join(" ")))?;
    }
    cluster::up(layout, nodes)?;
    let env = cluster::read_env(layout)?;
    for args in TESTS {
        interrupt::check()?;
        let mut cmd = crate::cargo();
        cmd.args(*args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUNBOX_REQUIRE_SWARM", "1");
        run_child(cmd, &format!("cargo {}", args.join(" ")))?;
    }
    Ok(())
}

/// Runs one test invocation in a process group of its own, so that on
/// SIGINT/SIGTERM the whole of it (cargo and the test binary it runs) is
/// stopped and awaited before the teardown starts.
fn run_child(mut cmd: Command, label: &str) -> Result<()> {
    eprintln!("xtask swarm-test: running {label}");
    let t0 = Instant::now();
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {label}"))?;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("{label} failed ({status}) after {}", secs(t0));
            }
            eprintln!("xtask swarm-test: {label}: ok in {}", secs(t0));
            return Ok(());
        }
        if interrupt::requested() {
            eprintln!("xtask swarm-test: stopping {label}");
            procs::signal_group(child.id(), "TERM");
            let deadline = Instant::now() + STOP_GRACE;
            while child.try_wait()?.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            // Whatever of the group outlived SIGTERM (or cargo itself).
            procs::kill_group(child.id());
            let _ = child.wait();
            bail!("interrupted while running {label}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

//! The busybox test image (`runbox-testbox:latest`) on every node, since
//! there is no registry to pull it from: taken from the host daemon, where
//! `cargo xtask test-image` builds it once and it stays, else built on node 1;
//! either way saved once to `$DIR/testbox.tar` and loaded into every node.
//!
//! A build takes about a second per Dockerfile step here, a load a fraction
//! of that: hence one build at most, and none on later runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use orchestrator_docker::{ensure_test_image, DockerConfig, TestImageOptions, TEST_IMAGE};

use super::{capture, command, docker, interrupt, secs, Layout, Node};

const SAVE_LOAD_LIMIT: Duration = Duration::from_secs(120);

/// Writes the image to `$DIR/testbox.tar`, from the host daemon or else
/// built on `first`; returns the tar's path.
pub fn save(layout: &Layout, first: &Node) -> Result<PathBuf> {
    let tar = layout.dir.join("testbox.tar");
    let t0 = Instant::now();
    match from_host(&tar) {
        Ok(()) => {
            eprintln!(
                "xtask swarm: test image taken from the host daemon in {}",
                secs(t0)
            );
            return Ok(tar);
        }
        Err(e) => eprintln!(
            "xtask swarm: no test image from the host daemon ({e:#}); building it on {}",
            first.name()
        ),
    }
    interrupt::check()?;
    ensure(&DockerConfig::new().host(first.endpoint()))
        .with_context(|| format!("building the test image on {}", first.name()))?;
    capture(
        docker(first).args(["save", "-o"]).arg(&tar).arg(TEST_IMAGE),
        SAVE_LOAD_LIMIT,
    )?;
    eprintln!(
        "xtask swarm: test image built on {} in {}",
        first.name(),
        secs(t0)
    );
    Ok(tar)
}

/// The host daemon's image (built there if missing), saved through the
/// docker CLI with the caller's environment, as `DockerConfig::from_env`
/// reads it (`DOCKER_HOST`).
fn from_host(tar: &Path) -> Result<()> {
    ensure(&DockerConfig::from_env())?;
    capture(
        command("docker")
            .args(["save", "-o"])
            .arg(tar)
            .arg(TEST_IMAGE),
        SAVE_LOAD_LIMIT,
    )
    .map(drop)
}

/// `ensure_test_image` against one daemon, given up on SIGINT/SIGTERM.
fn ensure(config: &DockerConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let options = TestImageOptions::default();
        let build = ensure_test_image(config, &options);
        tokio::pin!(build);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                r = &mut build => return r.map(drop).map_err(anyhow::Error::from),
                _ = tick.tick() => interrupt::check()?,
            }
        }
    })
}

/// Loads the saved image into every node at once, then drops the tar.
pub fn load(tar: &Path, nodes: &[Node]) -> Result<()> {
    let t0 = Instant::now();
    std::thread::scope(|s| {
        let loads: Vec<_> = nodes
            .iter()
            .map(|n| {
                s.spawn(move || {
                    interrupt::check()?;
                    capture(
                        docker(n).args(["load", "-q", "-i"]).arg(tar),
                        SAVE_LOAD_LIMIT,
                    )
                    .with_context(|| format!("loading the test image into {}", n.name()))
                })
            })
            .collect();
        loads.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a load panicked")))
                .map(drop)
        })
    })?;
    std::fs::remove_file(tar).with_context(|| format!("removing {}", tar.display()))?;
    eprintln!(
        "xtask swarm: test image loaded into {} nodes in {}",
        nodes.len(),
        secs(t0)
    );
    Ok(())
}

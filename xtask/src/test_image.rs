//! `cargo xtask test-image [--force] [--busybox PATH]`: builds the
//! `runbox-testbox:latest` Docker image `FROM scratch` with the host's static
//! busybox (Debian package `busybox-static`) through the daemon's build API.

use anyhow::{bail, Context, Result};
use orchestrator_docker::{ensure_test_image, DockerConfig, PullProgress, TestImageOptions};

/// Runs the task with the arguments after `test-image`.
pub fn test_image(args: &[String]) -> Result<()> {
    let mut options = TestImageOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--force" => options.force = true,
            "--busybox" => {
                let p = it.next().context("--busybox needs a path")?;
                options.busybox = Some(p.into());
            }
            other => bail!("unknown argument {other:?}; usage: cargo xtask test-image [--force] [--busybox PATH]"),
        }
    }
    options.log = Some(PullProgress::new(|e| eprintln!("  {}", e.status)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let config = DockerConfig::from_env();
    let tag = rt
        .block_on(ensure_test_image(&config, &options))
        .context("building the docker test image")?;
    eprintln!("xtask: test image {tag} is ready");
    Ok(())
}

//! The swarm figure: a workspace's lifecycle on the swarm backend next to
//! the docker backend's on the host daemon, interleaved in the same run.

use orchestrator_core::{Orchestrator, WorkspaceSpec};
use orchestrator_docker::{
    DockerConfig, DockerOrchestrator, SwarmConfig, SwarmOrchestrator, TestImageOptions, TEST_IMAGE,
};

use super::{against, figure, Figure};
use crate::timed::docker::docker_lifecycle;
use crate::timed::ms;
use crate::{BoxError, Opts};

/// Swarm lifecycle (create service, wait for its task, exec `true` on its
/// node, remove) against the docker lifecycle; one figure with a note when
/// no swarm is configured (`cargo xtask bench --swarm` brings one up).
pub async fn figures(o: &Opts, figures: &mut Vec<Figure>) -> Result<(), BoxError> {
    let name = "swarm lifecycle (service, exec true on its node, remove) via backend";
    let config = SwarmConfig::from_env();
    let swarm_image = config
        .docker
        .default_image
        .clone()
        .unwrap_or_else(|| TEST_IMAGE.to_string());
    let swarm = SwarmOrchestrator::new(config)?;
    let avail = swarm.is_available().await;
    if !avail.is_available() {
        let mut f = figure(name, "ms", Vec::new());
        f.note = Some(format!(
            "skipped: no swarm ({}); `cargo xtask bench --swarm` brings one up",
            avail.reason().unwrap_or_default()
        ));
        figures.push(f);
        return Ok(());
    }
    let docker_config = DockerConfig::from_env();
    let docker = DockerOrchestrator::new(docker_config.clone())?;
    let image =
        orchestrator_docker::ensure_test_image(&docker_config, &TestImageOptions::default())
            .await?;
    let docker_spec = WorkspaceSpec::new().image(image);
    let swarm_spec = WorkspaceSpec::new().image(swarm_image);
    let n = if o.quick { 3 } else { 12 };
    // Warm up both paths once.
    docker_lifecycle(&docker, &docker_spec).await?;
    docker_lifecycle(&swarm, &swarm_spec).await?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..n {
        ours.push(ms(docker_lifecycle(&swarm, &swarm_spec).await?));
        theirs.push(ms(docker_lifecycle(&docker, &docker_spec).await?));
    }
    let nodes = swarm.nodes().await?.len();
    let base = figure(
        "baseline: docker lifecycle via backend (the host's daemon)",
        "ms",
        theirs,
    );
    let mut f = against(figure(name, "ms", ours), &base);
    f.note = Some(format!(
        "{nodes}-node swarm; the price of scheduling: the manager places the task, its node starts it, cleanup waits until it is gone"
    ));
    figures.push(f);
    figures.push(base);
    Ok(())
}

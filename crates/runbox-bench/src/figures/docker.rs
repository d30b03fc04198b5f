//! The docker figures: lifecycle and exec latency against the docker CLI.

use std::time::Instant;

use orchestrator_core::{CommandSpec, Orchestrator, WorkspaceSpec};
use orchestrator_docker::{DockerConfig, DockerOrchestrator, TestImageOptions};

use super::{against, figure, Figure};
use crate::timed::docker::{
    cli, docker_container_of, docker_lifecycle, interleaved_lifecycles, DOCKER_BENCH_POOL,
};
use crate::timed::ms;
use crate::{BoxError, Opts};

/// The docker lifecycle (cold, from a warm pool, back to back) against
/// `docker run --rm`, and exec latency against `docker exec`; one figure
/// with a note when no daemon answers.
pub async fn figures(o: &Opts, figures: &mut Vec<Figure>) -> Result<(), BoxError> {
    let config = DockerConfig::from_env();
    let docker = DockerOrchestrator::new(config.clone())?;
    let avail = docker.is_available().await;
    if !avail.is_available() {
        let mut f = figure("docker lifecycle", "ms", Vec::new());
        f.note = Some(format!(
            "skipped: no docker daemon ({})",
            avail.reason().unwrap_or_default()
        ));
        figures.push(f);
        return Ok(());
    }
    let image =
        orchestrator_docker::ensure_test_image(&config, &TestImageOptions::default()).await?;
    let n = if o.quick { 3 } else { 20 };
    let spec = WorkspaceSpec::new().image(image.clone());
    let true_cmd = CommandSpec::new(["true"]).build()?;
    let pooled = DockerOrchestrator::new(
        config
            .clone()
            .default_image(image.clone())
            .warm_pool(DOCKER_BENCH_POOL),
    )?;
    pooled.warm_up().await?;
    // Warm up every path once.
    cli(&["run", "--rm", "--network", "none", &image, "true"]).await?;
    docker_lifecycle(&docker, &spec).await?;
    docker_lifecycle(&pooled, &spec).await?;
    pooled.warm_up().await?;
    let hits0 = pooled.pool_stats().hits;

    // Interleaved: cold, pooled, `docker run --rm`. The refill a take
    // starts runs during the rest of that pooled lifecycle (timed); the
    // pool is back to full (untimed) before the next series is timed, so
    // the refill does not load the other two.
    let (ours, pool, theirs) = interleaved_lifecycles(&docker, &pooled, &spec, &image, n).await?;
    let hits = pooled.pool_stats().hits - hits0;
    // Back to back: one pooled lifecycle after another, refills competing
    // with them for the daemon (a steady stream of executions).
    pooled.warm_up().await?;
    let (hits1, misses1) = (pooled.pool_stats().hits, pooled.pool_stats().misses);
    let mut b2b = Vec::new();
    for _ in 0..n {
        b2b.push(ms(docker_lifecycle(&pooled, &spec).await?));
    }
    let stats = pooled.pool_stats();
    let (b2b_hits, b2b_misses) = (stats.hits - hits1, stats.misses - misses1);
    drop(pooled);
    let base = figure(
        "baseline: docker run --rm runbox-testbox true (CLI)",
        "ms",
        theirs,
    );
    figures.push(against(
        figure(
            "docker lifecycle (create, exec true, remove) via backend",
            "ms",
            ours,
        ),
        &base,
    ));
    let mut f = against(
        figure(
            &format!("docker lifecycle via backend, warm pool of {DOCKER_BENCH_POOL}"),
            "ms",
            pool,
        ),
        &base,
    );
    f.note = Some(format!(
        "{hits}/{n} workspaces from the pool; refilled (untimed) before the next series"
    ));
    figures.push(f);
    let mut f = against(
        figure(
            &format!(
                "docker lifecycle via backend, warm pool of {DOCKER_BENCH_POOL}, back to back"
            ),
            "ms",
            b2b,
        ),
        &base,
    );
    f.note = Some(format!(
        "{b2b_hits} from the pool, {b2b_misses} created cold; refills run during the series"
    ));
    figures.push(f);
    figures.push(base);

    // Exec latency on one live container.
    let id = docker.create_workspace(&spec).await?;
    let cid = docker_container_of(&id).await?;
    let m = if o.quick { 5 } else { 40 };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..m {
        let t = Instant::now();
        docker.run_command(&id, &true_cmd).await?;
        ours.push(ms(t.elapsed()));
        theirs.push(ms(cli(&["exec", &cid, "true"]).await?));
    }
    docker.cleanup(&id).await?;
    let base = figure("baseline: docker exec CONTAINER true (CLI)", "ms", theirs);
    figures.push(against(
        figure("docker exec latency via backend", "ms", ours),
        &base,
    ));
    figures.push(base);
    Ok(())
}

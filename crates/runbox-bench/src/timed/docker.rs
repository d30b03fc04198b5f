//! Timed docker operations: the docker CLI, one lifecycle on the backend,
//! the interleaved cold / pooled / `docker run --rm` series.

use std::time::{Duration, Instant};

use orchestrator_core::{CommandSpec, Orchestrator, WorkspaceId, WorkspaceSpec};
use orchestrator_docker::DockerOrchestrator;

use super::ms;
use crate::BoxError;

/// `docker ARGS` through the docker CLI, timed (stdout discarded).
pub async fn cli(args: &[&str]) -> Result<Duration, BoxError> {
    let t = Instant::now();
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!("docker {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(t.elapsed())
}

/// Warm pool size of the pooled docker figures.
pub const DOCKER_BENCH_POOL: usize = 4;

/// `n` rounds of: a cold lifecycle, a pooled one (the pool refilled,
/// untimed, right after), `docker run --rm IMAGE true` through the CLI.
/// Returns the three series in ms.
pub async fn interleaved_lifecycles(
    cold: &DockerOrchestrator,
    pooled: &DockerOrchestrator,
    spec: &WorkspaceSpec,
    image: &str,
    n: usize,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>), BoxError> {
    let (mut c, mut p, mut run) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        c.push(ms(docker_lifecycle(cold, spec).await?));
        p.push(ms(docker_lifecycle(pooled, spec).await?));
        pooled.warm_up().await?;
        run.push(ms(cli(&[
            "run",
            "--rm",
            "--network",
            "none",
            image,
            "true",
        ])
        .await?));
    }
    Ok((c, p, run))
}

/// One lifecycle on a container backend (docker, swarm): create, exec
/// `true`, cleanup.
pub async fn docker_lifecycle(
    docker: &dyn Orchestrator,
    spec: &WorkspaceSpec,
) -> Result<Duration, BoxError> {
    let t = Instant::now();
    let id = docker.create_workspace(spec).await?;
    let out = docker
        .run_command(&id, &CommandSpec::new(["true"]).build()?)
        .await?;
    docker.cleanup(&id).await?;
    let took = t.elapsed();
    if !out.status.success() {
        return Err(format!("docker exec true: {:?}", out.status).into());
    }
    Ok(took)
}

/// The container of a workspace, found by its label.
pub async fn docker_container_of(id: &WorkspaceId) -> Result<String, BoxError> {
    let out = tokio::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=io.runbox.workspace={id}"),
        ])
        .output()
        .await?;
    let cid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if cid.is_empty() {
        return Err(format!("no container labelled with workspace {id}").into());
    }
    Ok(cid)
}

//! `--breakdown docker`: per-step medians of the docker lifecycle, cold and
//! from the warm pool, and whole lifecycles against `docker run --rm`.

use std::time::Instant;

use orchestrator_core::{CommandSpec, Orchestrator, ResourceLimits, WorkspaceSpec};
use orchestrator_docker::{ensure_test_image, DockerConfig, DockerOrchestrator, TestImageOptions};

use crate::figures::figure;
use crate::timed::docker::{docker_lifecycle, interleaved_lifecycles, DOCKER_BENCH_POOL};
use crate::timed::ms;
use crate::BoxError;

/// Per-step medians of the docker lifecycle (`--breakdown docker`): cold
/// and pooled create, the round trips the backend saves (image inspect,
/// list by label), then the whole lifecycle cold, pooled and back to back
/// against `docker run --rm`.
pub async fn docker() -> Result<(), BoxError> {
    let config = DockerConfig::from_env();
    let image = match config.default_image.clone() {
        Some(image) => image,
        None => ensure_test_image(&config, &TestImageOptions::default()).await?,
    };
    let config = config.default_image(image.clone());
    let docker = DockerOrchestrator::new(config.clone())?;
    let pooled = DockerOrchestrator::new(config.clone().warm_pool(DOCKER_BENCH_POOL))?;
    pooled.warm_up().await?;
    let spec = WorkspaceSpec::new();
    let cmd = CommandSpec::new(["true"]).build()?;
    let n = 20;
    let print = |name: &str, v: Vec<f64>| {
        let f = figure(name, "ms", v);
        println!("{name:>34}: p50 {:>6.1} ms  p90 {:>6.1} ms", f.p50, f.p90);
        f.p50
    };

    // Per step, cold and pooled (the pool full before each take).
    let (mut c, mut r, mut d) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pc, mut pr, mut pd) = (Vec::new(), Vec::new(), Vec::new());
    let (mut inspect, mut list) = (Vec::new(), Vec::new());
    for _ in 0..n {
        for (cold, b, steps) in [
            (true, &docker, [&mut c, &mut r, &mut d]),
            (false, &pooled, [&mut pc, &mut pr, &mut pd]),
        ] {
            let t0 = Instant::now();
            let id = b.create_workspace(&spec).await?;
            let t1 = Instant::now();
            b.run_command(&id, &cmd).await?;
            let t2 = Instant::now();
            b.cleanup(&id).await?;
            let t3 = Instant::now();
            let [c, r, d] = steps;
            c.push(ms(t1 - t0));
            r.push(ms(t2 - t1));
            d.push(ms(t3 - t2));
            // Round trips the cold path skips per workspace (an image
            // inspect before create, a list by label after remove), timed
            // to show what skipping them saves.
            if cold {
                let t = Instant::now();
                docker.ensure_image(&image).await?;
                inspect.push(ms(t.elapsed()));
                let t = Instant::now();
                docker.residue(&id).await?;
                list.push(ms(t.elapsed()));
            }
        }
        pooled.warm_up().await?;
    }
    println!("per step (n = {n}):");
    print("create, cold", c);
    print("create, from the pool", pc);
    print("exec true (cold container)", r);
    print("exec true (pooled container)", pr);
    print("cleanup (cold container)", d);
    print("cleanup (pooled container)", pd);
    print("saved: image inspect", inspect);
    print("saved: list by workspace label", list);

    // Taking from the pool with limits (update_container) or an
    // execution id (rename).
    let limited = WorkspaceSpec::new().limits(
        ResourceLimits::builder()
            .memory_bytes(256 << 20)
            .pids(64)
            .build()?,
    );
    let (mut pl, mut pe) = (Vec::new(), Vec::new());
    for i in 0..n / 2 {
        for (s, v) in [
            (&limited, &mut pl),
            (
                &WorkspaceSpec::new().execution_id(format!("bench-{i}")),
                &mut pe,
            ),
        ] {
            let t = Instant::now();
            let id = pooled.create_workspace(s).await?;
            v.push(ms(t.elapsed()));
            pooled.cleanup(&id).await?;
            pooled.warm_up().await?;
        }
    }
    print("create, pool + memory/pids limits", pl);
    print("create, pool + execution id", pe);

    // Whole lifecycles, interleaved with the CLI baseline.
    let (cold, pool, cli_run) = interleaved_lifecycles(&docker, &pooled, &spec, &image, n).await?;
    // Back to back: each take's refill competes with the next lifecycles.
    let s0 = pooled.pool_stats();
    let mut b2b = Vec::new();
    for _ in 0..n {
        b2b.push(ms(docker_lifecycle(&pooled, &spec).await?));
    }
    let s1 = pooled.pool_stats();
    println!("lifecycle (create, exec true, cleanup), n = {n}:");
    let base = print("docker run --rm (CLI)", cli_run);
    let ratio = |p50: f64| println!("{:>34}  {:.2}x docker run --rm", "", p50 / base);
    ratio(print("cold", cold));
    ratio(print(&format!("warm pool of {DOCKER_BENCH_POOL}"), pool));
    ratio(print(
        &format!("warm pool of {DOCKER_BENCH_POOL}, back to back"),
        b2b,
    ));
    println!(
        "{:>34}  {} from the pool, {} cold (pool empty)",
        "",
        s1.hits - s0.hits,
        s1.misses - s0.misses
    );
    Ok(())
}

//! The warm pool (`DockerConfig::warm_pool`) and the image cache, against
//! the local daemon (skipped with a message when there is none, unless
//! RUNBOX_REQUIRE_DOCKER=1). Every test labels its backend's containers
//! with its own `io.runbox.test` value, so tests running in one process
//! (cargo test) never count each other's containers.

mod common;

use common::{backend, docker_cli};
use std::time::{Duration, Instant};

use orchestrator_core::{CommandSpec, ExitStatus, Orchestrator, ResourceLimits, WorkspaceSpec};
use orchestrator_docker::{DockerConfig, DockerOrchestrator, DockerOrchestratorError, TEST_IMAGE};

const TEST_LABEL: &str = "io.runbox.test";

/// This test's label value (unique per test and process).
fn tag(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// A configuration labelling containers with this test's tag, with the
/// test image as default.
fn config(test: &str, pool: usize) -> DockerConfig {
    DockerConfig::new()
        .default_image(TEST_IMAGE)
        .label(TEST_LABEL, tag(test))
        .warm_pool(pool)
}

/// (full id, name) of every container, running or not, with this label.
fn containers(label: &str, value: &str) -> Vec<(String, String)> {
    docker_cli(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label={label}={value}"),
        "--format",
        "{{.ID}} {{.Names}}",
    ])
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(id, name)| (id.to_string(), name.to_string()))
    .collect()
}

fn of_test(test: &str) -> Vec<(String, String)> {
    containers(TEST_LABEL, &tag(test))
}

/// The container of a workspace: (id, name).
fn container_of(id: &orchestrator_core::WorkspaceId) -> (String, String) {
    let found = containers("io.runbox.workspace", id.as_str());
    assert_eq!(found.len(), 1, "containers of {id}: {found:?}");
    found.into_iter().next().unwrap_or_default()
}

/// Waits (polling, up to 30 s) until no container of this test is left;
/// fails naming those that are.
async fn assert_all_removed(test: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let left = of_test(test);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "containers left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_container_is_handed_out_and_refilled() {
    let test = "handout";
    let Some(b) = backend(config(test, 2)).await else {
        return;
    };
    b.warm_up().await.unwrap();
    let st = b.pool_stats();
    assert_eq!((st.size, st.ready, st.hits), (2, 2, 0), "{st:?}");
    let before = of_test(test);
    assert_eq!(before.len(), 2, "{before:?}");

    let id = b.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let st = b.pool_stats();
    assert_eq!((st.hits, st.misses, st.discarded), (1, 0, 0), "{st:?}");
    // The take started a refill at once.
    assert_eq!(st.ready + st.in_flight, 2, "{st:?}");
    // The workspace's container existed before create_workspace was called,
    // and was labelled for this very workspace when the pool made it.
    let (cid, name) = container_of(&id);
    assert!(
        before.iter().any(|(c, _)| *c == cid),
        "{cid} not among the pooled {before:?}"
    );
    assert_eq!(name, format!("runbox-{id}"));
    let out = b
        .run_command(
            &id,
            &CommandSpec::shell("echo hi > f; cat f; pwd")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "hi\n/workspace\n");
    // A second workspace is another pooled container.
    let id2 = b.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    assert_ne!(container_of(&id2).0, cid);
    assert_eq!(b.pool_stats().hits, 2);
    b.cleanup(&id).await.unwrap();
    b.cleanup(&id2).await.unwrap();
    assert!(b.residue(&id).await.unwrap().is_empty());
    assert!(b.residue(&id2).await.unwrap().is_empty());
    // Refills bring the pool back to its size.
    b.warm_up().await.unwrap();
    assert_eq!(b.pool_stats().ready, 2);
    drop(b);
    assert_all_removed(test).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_in_the_spec_are_enforced_on_a_pooled_container() {
    let test = "limits";
    let Some(b) = backend(config(test, 1)).await else {
        return;
    };
    b.warm_up().await.unwrap();
    let limits = ResourceLimits::builder()
        .memory_bytes(48 << 20)
        .pids(32)
        .cpus(0.5)
        .open_files(50)
        .build()
        .unwrap();
    let id = b
        .create_workspace(&WorkspaceSpec::new().limits(limits))
        .await
        .unwrap();
    assert_eq!(b.pool_stats().hits, 1, "{:?}", b.pool_stats());
    let (cid, _) = container_of(&id);
    let got = docker_cli(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} {{.HostConfig.NetworkMode}}",
        &cid,
    ]);
    assert_eq!(got.trim(), "50331648 50331648 36 500000000 none");
    // Per-exec rlimits come from the spec too.
    let out = b
        .run_command(&id, &CommandSpec::shell("ulimit -n").build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.stdout, b"50\n");
    // And the memory limit holds: `tail` buffers a line that never ends.
    let out = b
        .run_command(
            &id,
            &CommandSpec::new(["tail", "/dev/zero"])
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::MemoryLimitExceeded, "{out:?}");
    b.cleanup(&id).await.unwrap();
    drop(b);
    assert_all_removed(test).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_id_goes_into_a_pooled_containers_name() {
    let test = "execname";
    let Some(b) = backend(config(test, 1)).await else {
        return;
    };
    b.warm_up().await.unwrap();
    let exec = format!("ex-pool-{}", std::process::id());
    let id = b
        .create_workspace(&WorkspaceSpec::new().execution_id(&exec))
        .await
        .unwrap();
    assert_eq!(b.pool_stats().hits, 1, "{:?}", b.pool_stats());
    let (cid, name) = container_of(&id);
    assert_eq!(name, format!("runbox-{id}_{exec}"));
    // Labels cannot change after creation: the pooled container has none.
    let label = docker_cli(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"io.runbox.execution\"}}",
        &cid,
    ]);
    assert_eq!(label.trim(), "");
    // Found by name.
    let by_name = docker_cli(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("name={exec}"),
    ]);
    assert_eq!(by_name.trim(), cid);
    let out = b
        .run_command(&id, &CommandSpec::shell("echo ok").build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.stdout, b"ok\n");

    // An execution id that cannot be part of a name, or labels of the
    // spec's own, are not poolable: created cold, with the label.
    b.warm_up().await.unwrap();
    let odd = "ex pool/odd";
    let id2 = b
        .create_workspace(&WorkspaceSpec::new().execution_id(odd))
        .await
        .unwrap();
    let id3 = b
        .create_workspace(&WorkspaceSpec::new().label("team", "qa"))
        .await
        .unwrap();
    let st = b.pool_stats();
    assert_eq!((st.hits, st.misses, st.ready), (1, 0, 1), "{st:?}");
    let (cid2, name2) = container_of(&id2);
    assert_eq!(name2, format!("runbox-{id2}"));
    let label = docker_cli(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"io.runbox.execution\"}}",
        &cid2,
    ]);
    assert_eq!(label.trim(), odd);
    for id in [&id, &id2, &id3] {
        b.cleanup(id).await.unwrap();
    }
    drop(b);
    assert_all_removed(test).await;
}

#[tokio::test]
async fn dropping_the_backend_removes_its_pool_and_refills_in_flight() {
    let test = "drop";
    let Some(b) = backend(config(test, 3)).await else {
        return;
    };
    b.warm_up().await.unwrap();
    assert_eq!(of_test(test).len(), 3);
    // A workspace never cleaned up, and (almost always: a refill takes far
    // longer than this) a refill in flight at the drop.
    let _id = b.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let st = b.pool_stats();
    assert_eq!((st.hits, st.ready + st.in_flight), (1, 3), "{st:?}");
    drop(b);
    // A refill that ends after the backend is gone removes its container.
    assert_all_removed(test).await;
    // Nothing of this process that reap_orphans would find either.
    let mine = containers("io.runbox.owner.pid", &std::process::id().to_string());
    assert!(mine.iter().all(|(_, n)| !n.contains("drop")), "{mine:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reap_orphans_keeps_another_live_instances_pool() {
    let test = "reap";
    let Some(a) = backend(config(test, 2)).await else {
        return;
    };
    a.warm_up().await.unwrap();
    let pooled = of_test(test);
    assert_eq!(pooled.len(), 2);
    // Another instance in this process, without a pool.
    let other = backend(DockerConfig::new().default_image(TEST_IMAGE))
        .await
        .unwrap();
    let reaped = other.reap_orphans().await.unwrap();
    for (cid, name) in &pooled {
        assert!(
            !reaped
                .iter()
                .any(|r| r.contains(name.as_str()) || r.contains(&cid[..12])),
            "reaped {reaped:?}"
        );
    }
    // The instance's own reap keeps them as well.
    let _ = a.reap_orphans().await.unwrap();
    assert_eq!(of_test(test), pooled);
    let st = a.pool_stats();
    assert_eq!((st.ready, st.discarded), (2, 0), "{st:?}");
    // And they still work.
    let id = a.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    assert_eq!(a.pool_stats().hits, 1);
    let out = a
        .run_command(&id, &CommandSpec::shell("echo alive").build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.stdout, b"alive\n");
    a.cleanup(&id).await.unwrap();
    drop(a);
    assert_all_removed(test).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_pooled_container_is_never_handed_out() {
    let test = "dead";
    let Some(b) = backend(config(test, 1)).await else {
        return;
    };
    b.warm_up().await.unwrap();
    let pooled = of_test(test);
    assert_eq!(pooled.len(), 1);
    let dead = pooled[0].0.clone();
    docker_cli(&["kill", &dead]);
    let id = b.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let st = b.pool_stats();
    assert_eq!((st.hits, st.discarded), (0, 1), "{st:?}");
    let (cid, _) = container_of(&id);
    assert_ne!(cid, dead);
    // The dead one was removed.
    assert!(!of_test(test).iter().any(|(c, _)| *c == dead));
    let out = b
        .run_command(&id, &CommandSpec::shell("echo fine").build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.stdout, b"fine\n");
    b.cleanup(&id).await.unwrap();
    drop(b);
    assert_all_removed(test).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_gone_since_it_was_seen_is_looked_up_again() {
    let test = "imagecache";
    let image = format!("runbox-testbox-cache-{}:t", std::process::id());
    // Make sure the test image exists (through the helper) before tagging.
    let Some(_) = backend(config(test, 0)).await else {
        return;
    };
    docker_cli(&["tag", TEST_IMAGE, &image]);
    let b = DockerOrchestrator::new(
        config(test, 0)
            .default_image(image.clone())
            .pull_missing(false),
    )
    .unwrap();
    let id = b.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    b.cleanup(&id).await.unwrap();
    // The backend has seen the image; now it disappears.
    docker_cli(&["rmi", &image]);
    let e = b.create_workspace(&WorkspaceSpec::new()).await.unwrap_err();
    // Not the daemon's bare 404 from create: the lookup ran again and
    // reports the missing image the usual way.
    let src = e.backend_source().expect("backend error");
    assert!(
        matches!(
            src.downcast_ref::<DockerOrchestratorError>(),
            Some(DockerOrchestratorError::ImagePull { .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&image), "{e}");
    // Back again: created.
    docker_cli(&["tag", TEST_IMAGE, &image]);
    let id = b.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    b.cleanup(&id).await.unwrap();
    docker_cli(&["rmi", &image]);
    drop(b);
    assert_all_removed(test).await;
}

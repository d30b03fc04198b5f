//! Full lifecycle through ExecutionService with the real docker backend.
//! Skipped (with a visible line) without a daemon; fails instead when
//! `RUNBOX_REQUIRE_DOCKER=1`.

use std::sync::{Arc, Mutex};

use execution_service::{
    CompleteOptions, ExecutionRequest, ExecutionService, ExecutionState, MemoryStore, ServiceError,
    StartOptions,
};
use orchestrator_core::{ExitStatus, Orchestrator, OutputSink};
use orchestrator_docker::{LABEL_EXECUTION as EXECUTION_LABEL, TEST_IMAGE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_execute_with_files_and_live_output() {
    let Some(docker) =
        runbox_e2e::docker_backend("docker_execute_with_files_and_live_output").await
    else {
        return;
    };
    let svc = ExecutionService::builder()
        .store(MemoryStore::new())
        .docker_orchestrator(docker.clone())
        .build()
        .unwrap();
    assert_eq!(svc.orchestrator().name(), "native");
    let io = tempfile::tempdir().unwrap();
    std::fs::write(io.path().join("in.txt"), "to the container\n").unwrap();
    let out = io.path().join("out.txt");
    let live = Arc::new(Mutex::new(Vec::new()));
    let l2 = live.clone();
    let res = svc
        .execute(
            ExecutionRequest::shell("cat in.txt; echo \"$X\" > out.txt; exit 4")
                .env("X", "from the container")
                .file_in(io.path().join("in.txt"), "in.txt")
                .file_out("out.txt", &out)
                .image(TEST_IMAGE)
                .use_docker(true)
                .output(OutputSink::new(move |_, d| {
                    l2.lock().unwrap().extend_from_slice(d)
                })),
        )
        .await
        .unwrap();
    assert_eq!(res.backend, "docker");
    assert!(res.used_docker());
    assert_eq!(res.output.status, ExitStatus::Exited(4));
    assert_eq!(res.output.stdout_str(), "to the container\n");
    assert!(String::from_utf8_lossy(&live.lock().unwrap()).contains("to the container"));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "from the container\n"
    );
    assert_eq!(res.record.state, ExecutionState::Completed);
    assert!(docker.residue(&res.workspace_id).await.unwrap().is_empty());
    assert!(runbox_e2e::containers_labelled(EXECUTION_LABEL, res.execution_id.as_str()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_start_and_complete() {
    let Some(docker) = runbox_e2e::docker_backend("docker_start_and_complete").await else {
        return;
    };
    let svc = ExecutionService::builder()
        .docker_orchestrator(docker.clone())
        .build()
        .unwrap();
    let id = svc
        .submit(ExecutionRequest::new(["sleep", "600"]).image(TEST_IMAGE))
        .await
        .unwrap();
    let container = svc
        .start(&id, StartOptions { use_docker: true })
        .await
        .unwrap();
    assert_eq!(
        runbox_e2e::containers_labelled(EXECUTION_LABEL, id.as_str()).len(),
        1,
        "the container carries the execution label"
    );
    assert!(docker.workspace_path(&container).is_none());
    // The record says docker: a native claim is refused, nothing is touched.
    let err = svc
        .complete(
            &id,
            CompleteOptions {
                use_docker: Some(false),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::BackendMismatch { .. }));
    assert!(!docker.residue(&container).await.unwrap().is_empty());
    let rec = svc.complete(&id, CompleteOptions::default()).await.unwrap();
    assert_eq!(rec.state, ExecutionState::Completed);
    assert!(docker.residue(&container).await.unwrap().is_empty());
    assert!(runbox_e2e::containers_labelled(EXECUTION_LABEL, id.as_str()).is_empty());
}

#[tokio::test]
async fn docker_requested_without_docker_orchestrator() {
    let svc = ExecutionService::new(MemoryStore::new()).unwrap();
    let id = svc.submit(ExecutionRequest::new(["true"])).await.unwrap();
    let err = svc
        .start(&id, StartOptions { use_docker: true })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ServiceError::UnknownBackend { ref name, .. } if name == execution_service::DOCKER_BACKEND
    ));
    assert_eq!(svc.get(&id).await.unwrap().state, ExecutionState::Pending);
    svc.cancel(&id).await.unwrap();
}

/// A service whose docker backend keeps a warm pool takes its workspaces
/// from it (the execution id travels as `execution_id`, not as a label, so
/// the spec is poolable), names the container after the execution, and
/// leaves nothing once the execution completes and the backend is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_service_takes_workspaces_from_a_warm_pool() {
    use orchestrator_docker::{DockerConfig, DockerOrchestrator, LABEL_WORKSPACE};
    // Availability and the test image, as for every docker test.
    if runbox_e2e::docker_backend("docker_service_takes_workspaces_from_a_warm_pool")
        .await
        .is_none()
    {
        return;
    }
    // A config label marks every container of this backend, pooled ones
    // included (tests of this binary share the process, so the owner
    // labels alone would not tell them apart).
    let mark = format!("pool-e2e-{}", std::process::id());
    let config = DockerConfig::new()
        .default_image(TEST_IMAGE)
        .warm_pool(1)
        .label("runbox.test", mark.clone());
    let pooled = Arc::new(DockerOrchestrator::new(config).unwrap());
    pooled.warm_up().await.unwrap();
    assert_eq!(
        runbox_e2e::containers_labelled("runbox.test", &mark).len(),
        1
    );
    let svc = ExecutionService::builder()
        .docker_orchestrator(pooled.clone())
        .build()
        .unwrap();
    let id = svc
        .submit(ExecutionRequest::new(["sleep", "600"]).image(TEST_IMAGE))
        .await
        .unwrap();
    let ws = svc.start(&id, StartOptions::docker()).await.unwrap();
    assert_eq!(pooled.pool_stats().hits, 1, "{:?}", pooled.pool_stats());
    let named = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("name={}", id.as_str())])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&named.stdout)
            .split_whitespace()
            .count(),
        1,
        "the pooled container is named after the execution"
    );
    let rec = svc.complete(&id, CompleteOptions::default()).await.unwrap();
    assert_eq!(rec.state, ExecutionState::Completed);
    assert!(runbox_e2e::containers_labelled(LABEL_WORKSPACE, ws.as_str()).is_empty());
    // The refill (and anything else pooled) goes with the backend.
    drop(svc);
    drop(pooled);
    assert!(
        runbox_e2e::wait_until(10, || runbox_e2e::containers_labelled("runbox.test", &mark)
            .is_empty()),
        "pooled containers left after the backend was dropped"
    );
}

//! Which backend serves an execution: the native and docker paths, request
//! preferences, a missing backend.

use super::*;

#[tokio::test]
async fn native_path_start_and_complete() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "data").unwrap();
    let id = f
        .svc
        .submit(
            ExecutionRequest::new(["sleep", "1"])
                .file_in(&input, "in.txt")
                .limits(limits()),
        )
        .await
        .unwrap();
    assert_eq!(f.svc.get(&id).await.unwrap().state, ExecutionState::Pending);
    let ws = f.svc.start(&id, StartOptions::default()).await.unwrap();
    assert!(f.native.is_live(&ws));
    assert_eq!(f.native.file(&ws, "in.txt").unwrap(), b"data");
    assert_eq!(f.native.execution_of(&ws).as_deref(), Some(id.as_str()));
    assert_eq!(
        f.native.ops(),
        [
            Op::CreateWorkspace,
            Op::CopyTo,
            Op::ApplyResourceLimits,
            Op::StartBackground
        ]
    );
    assert!(f.docker.calls().is_empty());
    let rec = f.svc.get(&id).await.unwrap();
    assert_eq!(rec.state, ExecutionState::Running);
    assert_eq!(rec.backend.as_deref(), Some("native"));
    assert!(!rec.used_docker());
    assert_eq!(rec.sandbox_id.as_deref(), Some(ws.as_str()));
    assert!(rec.process_id.is_some());
    assert!(rec.owner.as_ref().unwrap().is_current());
    assert_eq!(rec.limits_applied.len(), 2);
    rec.check_invariants().unwrap();

    let done = f
        .svc
        .complete(&id, CompleteOptions::default())
        .await
        .unwrap();
    assert_eq!(done.state, ExecutionState::Completed);
    assert!(done.sandbox_released);
    assert_eq!(done.result.as_ref().unwrap().exit_code, Some(0));
    assert!(!f.native.is_live(&ws));
    assert!(f.native.calls().contains(&Call::Cleanup { id: ws.clone() }));
    assert!(f.docker.calls().is_empty());
    done.check_invariants().unwrap();
    // Idempotent.
    let again = f
        .svc
        .complete(&id, CompleteOptions::default())
        .await
        .unwrap();
    assert_eq!(again, done);
}

#[tokio::test]
async fn docker_path_start_and_complete() {
    let f = fixture();
    let id = f
        .svc
        .submit(ExecutionRequest::new(["true"]).image("runbox-testbox:latest"))
        .await
        .unwrap();
    let ws = f.svc.start(&id, StartOptions::docker()).await.unwrap();
    assert!(f.docker.is_live(&ws));
    assert!(f.native.calls().is_empty());
    match &f.docker.calls()[0] {
        Call::CreateWorkspace {
            execution_id,
            image,
            labels,
        } => {
            assert_eq!(execution_id.as_deref(), Some(id.as_str()));
            assert_eq!(image.as_deref(), Some("runbox-testbox:latest"));
            assert!(
                labels.is_empty(),
                "no label of the service's own: {labels:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let rec = f.svc.get(&id).await.unwrap();
    assert_eq!(rec.backend.as_deref(), Some("docker"));
    assert!(rec.used_docker());

    // A contradicting use_docker tears nothing down.
    let err = f
        .svc
        .complete(
            &id,
            CompleteOptions {
                use_docker: Some(false),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::BackendMismatch { .. }), "{err}");
    assert!(f.docker.is_live(&ws));
    assert_eq!(f.docker.count(Op::Cleanup), 0);
    assert_eq!(f.native.count(Op::Cleanup), 0);

    let done = f
        .svc
        .complete(
            &id,
            CompleteOptions {
                use_docker: Some(true),
            },
        )
        .await
        .unwrap();
    assert_eq!(done.state, ExecutionState::Completed);
    assert!(!f.docker.is_live(&ws));
    assert_eq!(f.native.count(Op::Cleanup), 0);
}

#[tokio::test]
async fn request_preference_selects_backend() {
    let f = fixture();
    let id = f
        .svc
        .submit(ExecutionRequest::new(["true"]).backend(BackendPreference::Named("docker".into())))
        .await
        .unwrap();
    let ws = f.svc.start(&id, StartOptions::default()).await.unwrap();
    assert!(f.docker.is_live(&ws));
    f.svc
        .complete(&id, CompleteOptions::default())
        .await
        .unwrap();

    let id = f
        .svc
        .submit(ExecutionRequest::new(["true"]).backend(BackendPreference::Named("podman".into())))
        .await
        .unwrap();
    let err = f.svc.start(&id, StartOptions::default()).await.unwrap_err();
    assert!(matches!(err, ServiceError::UnknownBackend { ref name, .. } if name == "podman"));
    assert_eq!(f.svc.get(&id).await.unwrap().state, ExecutionState::Pending);
    assert!(f.native.live_workspaces().is_empty() && f.docker.live_workspaces().is_empty());
}

/// Docker asked for where none is configured: the one unknown-backend
/// error, naming docker.
fn is_missing_docker(err: &ServiceError) -> bool {
    matches!(err, ServiceError::UnknownBackend { name, .. } if name == DOCKER_BACKEND)
}

#[tokio::test]
async fn missing_docker_is_a_clear_error() {
    let (svc, native) = native_only();
    let id = svc.submit(ExecutionRequest::new(["true"])).await.unwrap();
    let err = svc.start(&id, StartOptions::docker()).await.unwrap_err();
    assert!(is_missing_docker(&err), "{err:?}");
    assert!(err.to_string().contains("docker_orchestrator"));
    // Nothing happened; the execution can still start natively.
    assert_eq!(svc.get(&id).await.unwrap().state, ExecutionState::Pending);
    assert!(native.calls().is_empty());
    svc.start(&id, StartOptions::default()).await.unwrap();
    svc.complete(&id, CompleteOptions::default()).await.unwrap();

    let before = svc.list().await.unwrap().len();
    let err = svc
        .execute(ExecutionRequest::new(["true"]).use_docker(true))
        .await
        .unwrap_err();
    assert!(is_missing_docker(&err), "{err:?}");
    assert_eq!(
        svc.list().await.unwrap().len(),
        before,
        "no record left behind"
    );
    let err = svc
        .execute(ExecutionRequest::new(["true"]).backend(BackendPreference::Named("docker".into())))
        .await
        .unwrap_err();
    assert!(is_missing_docker(&err), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_executions() {
    let f = fixture();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let svc = f.svc.clone();
        tasks.push(tokio::spawn(async move {
            svc.execute(ExecutionRequest::new(["true"]).use_docker(i % 2 == 0))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(f.native.live_workspaces().is_empty());
    assert!(f.docker.live_workspaces().is_empty());
    assert_eq!(f.native.created_total(), 20);
    assert_eq!(f.docker.created_total(), 20);
    let recs = f.svc.list().await.unwrap();
    assert_eq!(recs.len(), 40);
    assert!(recs.iter().all(|r| r.state == ExecutionState::Completed));
}

//! Backend errors on each operation, teardown failures and strict limits.

use super::*;

#[tokio::test]
async fn backend_error_on_each_start_operation() {
    for use_docker in [false, true] {
        for op in [
            Op::CreateWorkspace,
            Op::CopyTo,
            Op::ApplyResourceLimits,
            Op::StartBackground,
        ] {
            let f = fixture();
            let target = if use_docker { &f.docker } else { &f.native };
            target.fail_with_backend_error(op);
            let dir = tempfile::tempdir().unwrap();
            let input = dir.path().join("in");
            std::fs::write(&input, "x").unwrap();
            let id = f
                .svc
                .submit(
                    ExecutionRequest::new(["true"])
                        .file_in(&input, "in")
                        .limits(limits()),
                )
                .await
                .unwrap();
            let err = f
                .svc
                .start(&id, StartOptions { use_docker })
                .await
                .unwrap_err();
            assert_backend_error(&err, op, target.name());
            let rec = f.svc.get(&id).await.unwrap();
            assert_eq!(rec.state, ExecutionState::Failed, "{op}");
            assert!(rec.error.as_deref().unwrap().contains(op.name()));
            rec.check_invariants().unwrap();
            assert!(target.live_workspaces().is_empty(), "{op}: sandbox leaked");
            if op != Op::CreateWorkspace {
                assert!(rec.sandbox_released);
                assert_eq!(target.count(Op::Cleanup), 1);
            }
        }
    }
}

#[tokio::test]
async fn copy_out_errors_keep_the_result() {
    let (svc, native) = native_only();
    native.fail_with_backend_error(Op::CopyFrom);
    let dir = tempfile::tempdir().unwrap();
    let res = svc
        .execute(
            ExecutionRequest::new(["true"])
                .file_out("a", dir.path().join("a"))
                .file_out("b", dir.path().join("b")),
        )
        .await
        .unwrap();
    // Both were attempted, both failed, the result is kept.
    assert_eq!(res.copy_out_errors.len(), 2);
    assert_backend_error(&res.copy_out_errors[0].1, Op::CopyFrom, "native");
    assert_eq!(res.record.state, ExecutionState::Completed);
    assert!(res.record.result.is_some());
    assert!(res
        .record
        .error
        .as_deref()
        .unwrap_or("")
        .contains("copy out of a"));
    assert!(res.record.sandbox_released);
    assert!(native.live_workspaces().is_empty());
}

#[tokio::test]
async fn backend_error_on_each_execute_operation() {
    for op in [Op::RunCommand] {
        let (svc, native) = native_only();
        native.fail_with_backend_error(op);
        let dir = tempfile::tempdir().unwrap();
        let err = svc
            .execute(ExecutionRequest::new(["true"]).file_out("out", dir.path().join("out")))
            .await
            .unwrap_err();
        assert_backend_error(&err, op, "native");
        let rec = svc.list().await.unwrap().pop().unwrap();
        assert_eq!(rec.state, ExecutionState::Failed);
        assert!(rec.sandbox_released);
        assert!(native.live_workspaces().is_empty());
    }
}

#[tokio::test]
async fn cleanup_errors_are_reported_and_retryable() {
    // complete: error, record stays running, retry works.
    let (svc, native) = native_only();
    let id = svc.submit(ExecutionRequest::new(["true"])).await.unwrap();
    let ws = svc.start(&id, StartOptions::default()).await.unwrap();
    native.fail_with_backend_error(Op::Cleanup);
    let err = svc
        .complete(&id, CompleteOptions::default())
        .await
        .unwrap_err();
    assert_backend_error(&err, Op::Cleanup, "native");
    assert_eq!(svc.get(&id).await.unwrap().state, ExecutionState::Running);
    assert!(native.is_live(&ws));
    native.clear_failures();
    svc.complete(&id, CompleteOptions::default()).await.unwrap();
    assert!(!native.is_live(&ws));

    // execute: failed + unreleased; recover() retries the teardown.
    native.fail_with_backend_error(Op::Cleanup);
    let err = svc
        .execute(ExecutionRequest::new(["true"]))
        .await
        .unwrap_err();
    assert_backend_error(&err, Op::Cleanup, "native");
    let rec = svc.list().await.unwrap().pop().unwrap();
    assert_eq!(rec.state, ExecutionState::Failed);
    assert!(!rec.sandbox_released);
    assert_eq!(native.live_workspaces().len(), 1);
    native.clear_failures();
    let report = svc.recover().await.unwrap();
    assert_eq!(report.released.len(), 1);
    assert!(report.released[0].cleaned);
    assert!(native.live_workspaces().is_empty());
    assert!(svc.get(&rec.id).await.unwrap().sandbox_released);
}

#[tokio::test]
async fn process_status_error_does_not_block_complete() {
    let (svc, native) = native_only();
    let id = svc.submit(ExecutionRequest::new(["true"])).await.unwrap();
    svc.start(&id, StartOptions::default()).await.unwrap();
    native.fail_with_backend_error(Op::ProcessStatus);
    let rec = svc.complete(&id, CompleteOptions::default()).await.unwrap();
    assert_eq!(rec.state, ExecutionState::Completed);
    assert!(rec.result.is_none());
    assert!(native.live_workspaces().is_empty());
}

#[tokio::test]
async fn reap_orphans_error_is_reported_by_recover() {
    let (svc, native) = native_only();
    native.fail_with_backend_error(Op::ReapOrphans);
    let report = svc.recover().await.unwrap();
    assert_eq!(report.errors.len(), 1);
    assert!(report.errors[0].contains("reap_orphans"));
}

#[tokio::test]
async fn strict_limit_not_enforceable_fails_and_tears_down() {
    let caps = Capabilities {
        limits: vec![],
        ..full_capabilities()
    };
    let f = fixture_with(FakeOrchestrator::named("native").with_capabilities(caps));
    let strict = limits().with_strict(true);
    let id = f
        .svc
        .submit(ExecutionRequest::new(["true"]).limits(strict.clone()))
        .await
        .unwrap();
    let err = f.svc.start(&id, StartOptions::default()).await.unwrap_err();
    assert!(
        matches!(
            err.orchestrator_error(),
            Some(CoreError::LimitNotEnforceable { .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), "limit_not_enforceable");
    let rec = f.svc.get(&id).await.unwrap();
    assert_eq!(rec.state, ExecutionState::Failed);
    assert!(f.native.live_workspaces().is_empty());
    assert_eq!(f.native.count(Op::StartBackground), 0);

    // Not strict: runs, and the record says what is not enforced.
    let res = f
        .svc
        .execute(ExecutionRequest::new(["true"]).limits(limits()))
        .await
        .unwrap();
    assert_eq!(res.limit_report.unenforced().count(), 2);
    assert!(res
        .record
        .limits_applied
        .iter()
        .all(|l| l.enforced_by.is_none()));
}

//! Cancel and the illegal transitions of start and complete.

use super::*;

#[tokio::test]
async fn cancel_in_each_state() {
    let (svc, native) = native_only();
    let id = svc.submit(ExecutionRequest::new(["true"])).await.unwrap();
    let rec = svc.cancel(&id).await.unwrap();
    assert_eq!(rec.state, ExecutionState::Cancelled);
    assert_eq!(
        svc.cancel(&id).await.unwrap().state,
        ExecutionState::Cancelled
    );
    let err = svc.start(&id, StartOptions::default()).await.unwrap_err();
    assert!(matches!(
        err,
        ServiceError::InvalidState {
            state: ExecutionState::Cancelled,
            ..
        }
    ));

    let id = svc.submit(ExecutionRequest::new(["true"])).await.unwrap();
    let ws = svc.start(&id, StartOptions::default()).await.unwrap();
    let rec = svc.cancel(&id).await.unwrap();
    assert_eq!(rec.state, ExecutionState::Cancelled);
    assert!(rec.sandbox_released);
    assert!(!native.is_live(&ws));
    // complete after cancel: idempotent end state, no error.
    assert_eq!(
        svc.complete(&id, CompleteOptions::default())
            .await
            .unwrap()
            .state,
        ExecutionState::Cancelled
    );

    let res = svc.execute(ExecutionRequest::new(["true"])).await.unwrap();
    let err = svc.cancel(&res.execution_id).await.unwrap_err();
    assert!(matches!(
        err,
        ServiceError::InvalidState {
            state: ExecutionState::Completed,
            ..
        }
    ));

    let unknown = ExecutionId::new("ex-nope").unwrap();
    assert!(matches!(
        svc.cancel(&unknown).await,
        Err(ServiceError::UnknownExecution(_))
    ));
    assert!(matches!(
        svc.complete(&unknown, CompleteOptions::default()).await,
        Err(ServiceError::UnknownExecution(_))
    ));
    assert!(matches!(
        svc.start(&unknown, StartOptions::default()).await,
        Err(ServiceError::UnknownExecution(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_execute() {
    let (svc, native) = native_only();
    native.set_run_delay(Some(Duration::from_millis(300)));
    let s2 = svc.clone();
    let task = tokio::spawn(async move { s2.execute(ExecutionRequest::new(["sleep", "1"])).await });
    let id = loop {
        if let Some(r) = svc.list().await.unwrap().pop() {
            if r.state == ExecutionState::Running {
                break r.id;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    svc.cancel(&id).await.unwrap();
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, ServiceError::Cancelled(_)), "{err:?}");
    assert!(native.live_workspaces().is_empty());
    assert_eq!(svc.get(&id).await.unwrap().state, ExecutionState::Cancelled);
}

#[tokio::test]
async fn start_twice_and_complete_pending_are_invalid() {
    let (svc, _) = native_only();
    let id = svc.submit(ExecutionRequest::new(["true"])).await.unwrap();
    let err = svc
        .complete(&id, CompleteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ServiceError::InvalidState {
            state: ExecutionState::Pending,
            ..
        }
    ));
    svc.start(&id, StartOptions::default()).await.unwrap();
    let err = svc.start(&id, StartOptions::default()).await.unwrap_err();
    assert!(matches!(
        err,
        ServiceError::InvalidState {
            state: ExecutionState::Running,
            ..
        }
    ));
    svc.complete(&id, CompleteOptions::default()).await.unwrap();
}

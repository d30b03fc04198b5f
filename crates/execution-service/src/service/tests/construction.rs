//! Building a service: the seed's defaults, backends by name, stores.

use super::*;

#[test]
fn service_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<ExecutionService>();
    fn check_fut<F: Future + Send>(_: F) {}
    let (svc, _) = native_only();
    check_fut(svc.execute(ExecutionRequest::new(["true"])));
    check_fut(svc.recover());
}

#[tokio::test]
async fn new_gives_native_and_no_docker() {
    let svc = ExecutionService::new(MemoryStore::new()).unwrap();
    assert_eq!(svc.orchestrator().name(), "native");
    assert!(svc.docker().is_none());
    let clone = svc.clone();
    assert!(Arc::ptr_eq(svc.orchestrator(), clone.orchestrator()));
}

#[tokio::test]
async fn builder_by_name() {
    let svc = ExecutionService::builder()
        .orchestrator_named("native")
        .build()
        .unwrap();
    assert_eq!(svc.orchestrator().name(), "native");
    let err = ExecutionService::builder()
        .orchestrator_named("no-such-backend")
        .build()
        .unwrap_err();
    let (name, available) = unknown_backend(&err);
    assert_eq!(name, "no-such-backend");
    assert!(available.contains(&"native".to_string()));
    assert!(err.to_string().contains("no-such-backend"));
    let err = ExecutionService::builder()
        .orchestrator(Arc::new(FakeOrchestrator::named("native")))
        .docker_orchestrator_named("nope")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), "unknown_backend");
}

#[tokio::test]
async fn works_with_sqlite_store() {
    let native = Arc::new(FakeOrchestrator::named("native"));
    let dir = tempfile::tempdir().unwrap();
    let svc = ExecutionService::builder()
        .store(crate::SqliteStore::open(dir.path().join("db.sqlite")).unwrap())
        .orchestrator(native.clone())
        .build()
        .unwrap();
    let res = svc.execute(ExecutionRequest::new(["true"])).await.unwrap();
    assert_eq!(svc.get(&res.execution_id).await.unwrap(), res.record);
    assert!(native.live_workspaces().is_empty());
}

#[tokio::test]
async fn registered_backends_are_created_with_their_options() {
    let root = tempfile::tempdir().unwrap();
    let options = BackendOptions::new().setting("root", root.path().to_str().unwrap());
    let svc = ExecutionService::builder()
        .registered("native", options)
        .default_backend("native")
        .build()
        .unwrap();
    assert_eq!(svc.default_backend_name(), "native");
    let id = svc.submit(ExecutionRequest::sandbox_only()).await.unwrap();
    let ws = svc.start(&id, StartOptions::default()).await.unwrap();
    let dir = svc.orchestrator().workspace_path(&ws).unwrap();
    assert!(dir.starts_with(root.path()), "{}", dir.display());
    svc.complete(&id, CompleteOptions::default()).await.unwrap();
    assert!(!dir.exists());

    // The backend's factory judges the options (a warm pool beyond the
    // native maximum here); the service names it.
    let err = ExecutionService::builder()
        .registered(
            "native",
            BackendOptions::new().pool_size(orchestrator_native::MAX_WARM_POOL + 1),
        )
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Orchestrator { operation: "create", backend, .. } if backend == "native"),
        "{err:?}"
    );
    assert_eq!(err.kind(), "invalid_input");
    let err = ExecutionService::builder()
        .registered("no-such-backend", BackendOptions::new())
        .build()
        .unwrap_err();
    assert_eq!(unknown_backend(&err).0, "no-such-backend");
}

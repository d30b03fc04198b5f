//! Backends by name: adding, listing, choosing the default, and records or
//! requests naming a backend the service does not have.

use super::*;

fn fake(name: &str) -> Arc<FakeOrchestrator> {
    Arc::new(FakeOrchestrator::named(name))
}

#[tokio::test]
async fn backends_are_listed_and_served_by_name() {
    let (native, docker, gvisor, remote) = (
        fake("native"),
        fake("fake-docker"),
        fake("gvisor"),
        fake("x"),
    );
    let svc = ExecutionService::builder()
        .orchestrator(native.clone())
        .backend(gvisor.clone())
        .backend_named("remote", remote.clone())
        .docker_orchestrator(docker.clone())
        .build()
        .unwrap();
    let names: Vec<_> = svc.backends().map(|(name, _)| name).collect();
    assert_eq!(names, ["native", "docker", "gvisor", "remote"]);
    assert_eq!(svc.default_backend_name(), "native");
    let docker_dyn: Arc<dyn Orchestrator> = docker.clone();
    assert!(Arc::ptr_eq(svc.docker().unwrap(), &docker_dyn));
    let remote_dyn: Arc<dyn Orchestrator> = remote.clone();
    assert!(Arc::ptr_eq(svc.backend("remote").unwrap(), &remote_dyn));
    assert!(
        svc.backend("x").is_none(),
        "listed by its name in the service"
    );

    let res = svc
        .execute(ExecutionRequest::new(["true"]).backend(BackendPreference::Named("remote".into())))
        .await
        .unwrap();
    assert_eq!(res.backend, "remote");
    assert_eq!(res.record.backend.as_deref(), Some("remote"));
    assert_eq!(remote.created_total(), 1);

    // The docker orchestrator is the backend named docker, whatever the
    // instance calls itself.
    let res = svc
        .execute(ExecutionRequest::new(["true"]).use_docker(true))
        .await
        .unwrap();
    assert_eq!(res.backend, DOCKER_BACKEND);
    assert!(res.used_docker() && res.record.used_docker());
    assert_eq!(docker.created_total(), 1);
    assert_eq!(native.created_total() + gvisor.created_total(), 0);
}

#[tokio::test]
async fn default_backend_by_name() {
    let (a, b) = (fake("a"), fake("b"));
    let svc = ExecutionService::builder()
        .backend(a.clone())
        .backend(b.clone())
        .default_backend("b")
        .build()
        .unwrap();
    assert_eq!(svc.default_backend_name(), "b");
    let b_dyn: Arc<dyn Orchestrator> = b.clone();
    assert!(Arc::ptr_eq(svc.orchestrator(), &b_dyn));
    let res = svc.execute(ExecutionRequest::new(["true"])).await.unwrap();
    assert_eq!(res.backend, "b");
    assert_eq!(a.created_total(), 0);

    let err = ExecutionService::builder()
        .backend(a.clone())
        .default_backend("nope")
        .build()
        .unwrap_err();
    assert_eq!(unknown_backend(&err), ("nope", &["a".to_string()][..]));
}

#[tokio::test]
async fn an_added_native_backend_is_the_default() {
    let native = fake("native");
    let svc = ExecutionService::builder()
        .backend(native.clone())
        .build()
        .unwrap();
    let native_dyn: Arc<dyn Orchestrator> = native.clone();
    assert!(Arc::ptr_eq(svc.orchestrator(), &native_dyn));
    assert_eq!(svc.backends().count(), 1);
}

#[tokio::test]
async fn docker_added_by_name_is_the_docker_orchestrator() {
    let docker = fake("docker");
    let svc = ExecutionService::builder()
        .orchestrator(fake("native"))
        .backend(docker.clone())
        .build()
        .unwrap();
    let docker_dyn: Arc<dyn Orchestrator> = docker.clone();
    assert!(Arc::ptr_eq(svc.docker().unwrap(), &docker_dyn));
}

#[tokio::test]
async fn a_record_naming_an_unconfigured_backend_is_refused() {
    let (svc, native) = native_only();
    let mut rec = ExecutionRecord::new(ExecutionId::generate(), ExecutionRequest::new(["true"]));
    rec.transition(ExecutionState::Starting).unwrap();
    rec.transition(ExecutionState::Running).unwrap();
    rec.backend = Some("gone".into());
    rec.sandbox_id = Some("ws-gone".into());
    rec.owner = Some(Owner::current());
    svc.store().insert(&rec).await.unwrap();
    for err in [
        svc.complete(&rec.id, CompleteOptions::default())
            .await
            .unwrap_err(),
        svc.cancel(&rec.id).await.unwrap_err(),
    ] {
        assert_eq!(unknown_backend(&err), ("gone", &["native".to_string()][..]));
        assert!(err.to_string().contains("gone"), "{err}");
    }
    assert_eq!(
        svc.get(&rec.id).await.unwrap().state,
        ExecutionState::Running
    );
    assert_eq!(native.count(Op::Cleanup), 0);
}

//! Recovery of executions whose owner process died.

use super::*;

#[tokio::test]
async fn recover_reaps_dead_owners_only() {
    let f = fixture();
    let store = f.svc.store().clone();
    // A running execution of a dead process, on each backend.
    let mut dead_ids = Vec::new();
    for (orch, backend) in [(&f.native, "native"), (&f.docker, DOCKER_BACKEND)] {
        let ws = orch
            .create_workspace(&WorkspaceSpec::new().execution_id("x"))
            .await
            .unwrap();
        let mut rec = ExecutionRecord::new(
            ExecutionId::generate(),
            ExecutionRequest::new(["sleep", "99"]),
        );
        rec.transition(ExecutionState::Starting).unwrap();
        rec.transition(ExecutionState::Running).unwrap();
        rec.backend = Some(backend.to_string());
        rec.sandbox_id = Some(ws.to_string());
        rec.owner = Some(dead_owner());
        store.insert(&rec).await.unwrap();
        dead_ids.push((rec.id.clone(), ws));
    }
    // One left starting (no sandbox recorded yet) by a dead process.
    let mut starting = ExecutionRecord::new(ExecutionId::generate(), ExecutionRequest::new(["x"]));
    starting.transition(ExecutionState::Starting).unwrap();
    starting.backend = Some("native".into());
    starting.owner = Some(dead_owner());
    store.insert(&starting).await.unwrap();
    // A running execution of this (live) process.
    let live = f.svc.submit(ExecutionRequest::new(["true"])).await.unwrap();
    let live_ws = f.svc.start(&live, StartOptions::default()).await.unwrap();
    // An orphan only the backend's own scan knows of.
    let orphan = f.docker.add_orphan(Some("gone"));

    let report = f.svc.recover().await.unwrap();
    assert_eq!(report.recovered.len(), 3, "{report:?}");
    assert!(report.recovered.iter().all(|r| r.cleaned));
    assert_eq!(report.skipped_live, vec![live.clone()]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let reaped: Vec<_> = report
        .reaped
        .iter()
        .map(|(b, v)| (b.as_str(), v.len()))
        .collect();
    assert_eq!(reaped, [("native", 0), ("docker", 1)]);
    for (id, ws) in &dead_ids {
        let rec = f.svc.get(id).await.unwrap();
        assert_eq!(rec.state, ExecutionState::Failed);
        assert!(rec.error.as_deref().unwrap().contains("gone"));
        assert!(rec.sandbox_released);
        assert!(!f.native.is_live(ws) && !f.docker.is_live(ws));
    }
    assert!(!f.docker.is_live(&orphan));
    assert_eq!(
        f.svc.get(&starting.id).await.unwrap().state,
        ExecutionState::Failed
    );
    assert!(f.native.is_live(&live_ws));
    assert_eq!(
        f.svc.get(&live).await.unwrap().state,
        ExecutionState::Running
    );
    // A second pass finds nothing to do.
    let again = f.svc.recover().await.unwrap();
    assert!(again.recovered.is_empty() && again.errors.is_empty());
    f.svc
        .complete(&live, CompleteOptions::default())
        .await
        .unwrap();
}

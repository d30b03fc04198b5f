//! Unit tests of the service against the core's FakeOrchestrator: both code
//! paths, the missing-docker case, a backend error on each operation, strict
//! limits, dropped futures, recovery, and a proptest state machine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::testing::{
    full_capabilities, ok_output, Call, FakeError, FakeOrchestrator, Op,
};
use orchestrator_core::{
    Capabilities, Error as CoreError, ExecOutput, ExitStatus, OutputSink, ResourceLimits, Stream,
};

use super::*;
use crate::owner::process_start_time;

struct Fixture {
    svc: ExecutionService,
    native: Arc<FakeOrchestrator>,
    docker: Arc<FakeOrchestrator>,
}

fn fixture() -> Fixture {
    fixture_with(FakeOrchestrator::named("native"))
}

fn fixture_with(native: FakeOrchestrator) -> Fixture {
    let native = Arc::new(native);
    let docker = Arc::new(FakeOrchestrator::named("docker"));
    let svc = ExecutionService::builder()
        .orchestrator(native.clone())
        .docker_orchestrator(docker.clone())
        .build()
        .unwrap();
    Fixture {
        svc,
        native,
        docker,
    }
}

fn native_only() -> (ExecutionService, Arc<FakeOrchestrator>) {
    let native = Arc::new(FakeOrchestrator::named("native"));
    let svc = ExecutionService::builder()
        .orchestrator(native.clone())
        .build()
        .unwrap();
    (svc, native)
}

fn limits() -> ResourceLimits {
    ResourceLimits::builder()
        .memory_bytes(64 << 20)
        .wall_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn dead_owner() -> OwnerInfo {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    let start = process_start_time(pid);
    child.wait().unwrap();
    OwnerInfo {
        pid,
        start_time: start,
        host: OwnerInfo::current().host,
    }
}

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
    match &err {
        ServiceError::UnknownBackend { name, available } => {
            assert_eq!(name, "no-such-backend");
            assert!(available.contains(&"native".to_string()));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("no-such-backend"));
    let err = ExecutionService::builder()
        .orchestrator(Arc::new(FakeOrchestrator::named("native")))
        .docker_orchestrator_named("nope")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), "unknown_backend");
}

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
    assert!(!rec.used_docker);
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
    assert!(rec.used_docker);

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

#[tokio::test]
async fn missing_docker_is_a_clear_error() {
    let (svc, native) = native_only();
    let id = svc.submit(ExecutionRequest::new(["true"])).await.unwrap();
    let err = svc.start(&id, StartOptions::docker()).await.unwrap_err();
    assert!(matches!(err, ServiceError::MissingDockerOrchestrator));
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
    assert!(matches!(err, ServiceError::MissingDockerOrchestrator));
    assert_eq!(
        svc.list().await.unwrap().len(),
        before,
        "no record left behind"
    );
    let err = svc
        .execute(ExecutionRequest::new(["true"]).backend(BackendPreference::Named("docker".into())))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::MissingDockerOrchestrator));
}

fn assert_backend_error(err: &ServiceError, op: Op, backend: &str) {
    match err {
        ServiceError::Orchestrator {
            operation,
            backend: b,
            ..
        } => {
            assert_eq!(*operation, op.name());
            assert_eq!(b, backend);
        }
        other => panic!("expected a backend error in {op}, got {other:?}"),
    }
    let fake = err
        .backend_source()
        .and_then(|s| s.downcast_ref::<FakeError>())
        .unwrap_or_else(|| panic!("{err}: backend error not reachable"));
    assert_eq!(fake.op, op);
    // Reachable through the std source chain too.
    let mut src = std::error::Error::source(err);
    let mut found = false;
    while let Some(s) = src {
        found |= s.downcast_ref::<FakeError>().is_some();
        src = s.source();
    }
    assert!(found);
}

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
    let strict = ResourceLimits {
        strict: true,
        ..limits()
    };
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

#[tokio::test]
async fn execute_runs_and_tears_down() {
    let (svc, native) = native_only();
    native.set_output(ExecOutput {
        stdout: b"hello\n".to_vec(),
        stderr: b"warn\n".to_vec(),
        ..ok_output()
    });
    native.script_file("result.txt", b"42".to_vec());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "in").unwrap();
    let out_path = dir.path().join("result.txt");
    let seen = Arc::new(Mutex::new(Vec::<(Stream, Vec<u8>)>::new()));
    let s2 = seen.clone();
    let res = svc
        .execute(
            ExecutionRequest::shell("cat input.txt; echo 42 > result.txt")
                .file_in(&input, "input.txt")
                .file_out("result.txt", &out_path)
                .limits(limits())
                .output(OutputSink::new(move |s, d| {
                    s2.lock().unwrap().push((s, d.to_vec()))
                })),
        )
        .await
        .unwrap();
    assert_eq!(res.output.stdout, b"hello\n");
    assert_eq!(res.backend, "native");
    assert!(!res.used_docker);
    assert_eq!(res.limit_report.entries.len(), 2);
    assert_eq!(res.record.state, ExecutionState::Completed);
    assert!(res.record.result.as_ref().unwrap().success());
    assert_eq!(std::fs::read(&out_path).unwrap(), b"42");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (Stream::Stdout, b"hello\n".to_vec()),
            (Stream::Stderr, b"warn\n".to_vec())
        ]
    );
    assert!(native.calls().iter().any(|c| matches!(
        c,
        Call::RunCommand {
            live_output: true,
            ..
        }
    )));
    assert_eq!(native.count(Op::StartBackground), 0);
    assert!(native.live_workspaces().is_empty());
    assert!(native.residue(&res.workspace_id).await.unwrap().is_empty());
    // The stored request has no sink, but the rest.
    let stored = svc.get(&res.execution_id).await.unwrap();
    assert!(stored.request.output.is_none());
    assert_eq!(stored.request.files_out.len(), 1);
}

#[tokio::test]
async fn execute_command_failure_still_tears_down() {
    let (svc, native) = native_only();
    native.set_output(ExecOutput {
        status: ExitStatus::Exited(3),
        ..ok_output()
    });
    let res = svc.execute(ExecutionRequest::new(["false"])).await.unwrap();
    assert_eq!(res.output.status, ExitStatus::Exited(3));
    assert_eq!(res.record.result.as_ref().unwrap().exit_code, Some(3));
    assert_eq!(res.record.state, ExecutionState::Completed);
    assert!(native.live_workspaces().is_empty());
    native.set_output(ExecOutput {
        status: ExitStatus::TimedOut,
        ..ok_output()
    });
    let res = svc
        .execute(ExecutionRequest::new(["sleep", "9"]))
        .await
        .unwrap();
    assert_eq!(res.record.result.unwrap().status, "timed_out");
    assert!(native.live_workspaces().is_empty());
}

#[tokio::test]
async fn execute_rejects_bad_requests_without_records() {
    let (svc, native) = native_only();
    for req in [
        ExecutionRequest::sandbox_only(),
        ExecutionRequest::new(["x"]).file_in("/etc/hosts", "../escape"),
        ExecutionRequest::new(["x"]).limits(ResourceLimits {
            memory_bytes: Some(0),
            ..ResourceLimits::default()
        }),
    ] {
        let err = svc.execute(req).await.unwrap_err();
        assert_eq!(err.kind(), "invalid_request", "{err}");
    }
    assert!(svc.list().await.unwrap().is_empty());
    assert!(native.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_execute_future_does_not_leak() {
    let (svc, native) = native_only();
    native.set_run_delay(Some(Duration::from_secs(30)));
    let s2 = svc.clone();
    let task =
        tokio::spawn(async move { s2.execute(ExecutionRequest::new(["sleep", "30"])).await });
    // Wait until the command is running.
    for _ in 0..500 {
        if native.count(Op::RunCommand) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(native.live_workspaces().len(), 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    tokio::time::timeout(Duration::from_secs(5), svc.wait_for_cleanups())
        .await
        .unwrap();
    assert!(native.live_workspaces().is_empty());
    let rec = svc.list().await.unwrap().pop().unwrap();
    assert_eq!(rec.state, ExecutionState::Cancelled);
    assert!(rec.sandbox_released);
    rec.check_invariants().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_during_create_is_cleaned() {
    // Drop the future at every await point of execute, by polling it a
    // bounded number of times, and check nothing is left behind.
    use std::task::Poll;
    for polls in 1..12 {
        let (svc, native) = native_only();
        native.set_run_delay(Some(Duration::from_secs(30)));
        {
            let fut = svc.execute(ExecutionRequest::new(["true"]));
            tokio::pin!(fut);
            for _ in 0..polls {
                let r = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                if r.is_ready() {
                    break;
                }
            }
        }
        tokio::time::timeout(Duration::from_secs(5), svc.wait_for_cleanups())
            .await
            .unwrap();
        assert!(
            native.live_workspaces().is_empty(),
            "dropped after {polls} polls: leaked {:?}",
            native.live_workspaces()
        );
        for rec in svc.list().await.unwrap() {
            rec.check_invariants().unwrap();
            assert!(rec.state.is_terminal(), "{polls}: {:?}", rec.state);
        }
    }
}

#[test]
fn dropped_outside_a_runtime_still_cleans() {
    let (svc, native) = native_only();
    native.set_run_delay(Some(Duration::from_secs(30)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut fut = Box::pin(svc.execute(ExecutionRequest::new(["true"])));
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_millis(100), &mut fut).await;
    });
    drop(rt);
    drop(fut); // no runtime here: the cleanup runs on a helper thread
    let rt2 = tokio::runtime::Runtime::new().unwrap();
    rt2.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), svc.wait_for_cleanups())
            .await
            .unwrap();
    });
    assert!(native.live_workspaces().is_empty());
}

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

#[tokio::test]
async fn recover_reaps_dead_owners_only() {
    let f = fixture();
    let store = f.svc.store().clone();
    // A running execution of a dead process, on each backend.
    let mut dead_ids = Vec::new();
    for (orch, docker) in [(&f.native, false), (&f.docker, true)] {
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
        rec.backend = Some(orch.name().to_string());
        rec.used_docker = docker;
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

mod state_machine {
    //! Random sequences of submit / start / complete / cancel and concurrent
    //! pairs of them, against two fakes with random injected failures.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Action {
        Submit {
            docker: bool,
        },
        Start {
            idx: usize,
            use_docker: bool,
        },
        Complete {
            idx: usize,
            use_docker: Option<bool>,
        },
        Cancel {
            idx: usize,
        },
        Execute {
            docker: bool,
        },
        Fail {
            docker: bool,
            op: usize,
        },
        Concurrent(Box<Action>, Box<Action>),
    }

    const FAILABLE: [Op; 6] = [
        Op::CreateWorkspace,
        Op::CopyTo,
        Op::ApplyResourceLimits,
        Op::StartBackground,
        Op::RunCommand,
        Op::Cleanup,
    ];

    fn simple() -> impl Strategy<Value = Action> {
        prop_oneof![
            any::<bool>().prop_map(|docker| Action::Submit { docker }),
            (0usize..8, any::<bool>())
                .prop_map(|(idx, use_docker)| Action::Start { idx, use_docker }),
            (0usize..8, proptest::option::of(any::<bool>()))
                .prop_map(|(idx, use_docker)| Action::Complete { idx, use_docker }),
            (0usize..8).prop_map(|idx| Action::Cancel { idx }),
            any::<bool>().prop_map(|docker| Action::Execute { docker }),
            (any::<bool>(), 0usize..FAILABLE.len())
                .prop_map(|(docker, op)| Action::Fail { docker, op }),
        ]
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            4 => simple(),
            1 => (simple(), simple()).prop_map(|(a, b)| Action::Concurrent(Box::new(a), Box::new(b))),
        ]
    }

    struct World {
        f: Fixture,
        ids: Mutex<Vec<ExecutionId>>,
    }

    impl World {
        fn id(&self, idx: usize) -> Option<ExecutionId> {
            let ids = self.ids.lock().unwrap();
            if ids.is_empty() {
                None
            } else {
                Some(ids[idx % ids.len()].clone())
            }
        }

        fn run<'a>(
            &'a self,
            a: &'a Action,
        ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
            Box::pin(async move {
                match a {
                    Action::Submit { docker } => {
                        let id = self
                            .f
                            .svc
                            .submit(
                                ExecutionRequest::new(["true"])
                                    .use_docker(*docker)
                                    .limits(limits()),
                            )
                            .await
                            .unwrap();
                        self.ids.lock().unwrap().push(id);
                    }
                    Action::Start { idx, use_docker } => {
                        if let Some(id) = self.id(*idx) {
                            let _ = self
                                .f
                                .svc
                                .start(
                                    &id,
                                    StartOptions {
                                        use_docker: *use_docker,
                                    },
                                )
                                .await;
                        }
                    }
                    Action::Complete { idx, use_docker } => {
                        if let Some(id) = self.id(*idx) {
                            let _ = self
                                .f
                                .svc
                                .complete(
                                    &id,
                                    CompleteOptions {
                                        use_docker: *use_docker,
                                    },
                                )
                                .await;
                        }
                    }
                    Action::Cancel { idx } => {
                        if let Some(id) = self.id(*idx) {
                            let _ = self.f.svc.cancel(&id).await;
                        }
                    }
                    Action::Execute { docker } => {
                        if let Ok(r) = self
                            .f
                            .svc
                            .execute(ExecutionRequest::new(["true"]).use_docker(*docker))
                            .await
                        {
                            self.ids.lock().unwrap().push(r.execution_id);
                        }
                    }
                    Action::Fail { docker, op } => {
                        let fake = if *docker {
                            &self.f.docker
                        } else {
                            &self.f.native
                        };
                        fake.fail_once(FAILABLE[*op], CoreError::invalid("injected"));
                    }
                    Action::Concurrent(a, b) => {
                        tokio::join!(self.run(a), self.run(b));
                    }
                }
            })
        }

        async fn check(&self) -> Result<(), TestCaseError> {
            let recs = self.f.svc.list().await.unwrap();
            let mut live = self.f.native.live_workspaces();
            live.extend(self.f.docker.live_workspaces());
            for r in &recs {
                prop_assert!(r.check_invariants().is_ok(), "{:?}", r.check_invariants());
                if let Some(ws) = r.sandbox() {
                    let is_live = live.contains(&ws);
                    if r.state == ExecutionState::Completed {
                        prop_assert!(!is_live, "completed {} still has sandbox {}", r.id, ws);
                    }
                    if r.state.is_terminal() && r.sandbox_released {
                        prop_assert!(!is_live, "{} released but {} is live", r.id, ws);
                    }
                }
            }
            // Every live sandbox belongs to an execution that is still
            // active, or whose teardown failed (and is recorded as such).
            for ws in &live {
                let owner = recs.iter().find(|r| r.sandbox().as_ref() == Some(ws));
                let ok = match owner {
                    Some(r) => r.state.is_active() || !r.sandbox_released,
                    // Created by a start that has not recorded it yet: only
                    // possible mid-call, never between actions.
                    None => false,
                };
                prop_assert!(ok, "orphan sandbox {ws}: {owner:?}");
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
        #[test]
        fn random_sequences_keep_invariants(actions in proptest::collection::vec(action(), 1..24)) {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let world = World { f: fixture(), ids: Mutex::new(Vec::new()) };
                for a in &actions {
                    world.run(a).await;
                    world.check().await?;
                }
                // Cancelling everything still active leaves no sandbox at all.
                world.f.native.clear_failures();
                world.f.docker.clear_failures();
                for r in world.f.svc.list().await.unwrap() {
                    if r.state.is_active() {
                        world.f.svc.cancel(&r.id).await.unwrap();
                    }
                }
                world.f.svc.recover().await.unwrap();
                world.check().await?;
                prop_assert!(world.f.native.live_workspaces().is_empty(), "{:?}", world.f.native.live_workspaces());
                prop_assert!(world.f.docker.live_workspaces().is_empty());
                Ok(())
            })?;
        }
    }
}

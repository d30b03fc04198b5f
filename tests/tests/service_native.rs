//! Full lifecycle through ExecutionService with the real native backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use execution_service::{
    CompleteOptions, ExecutionRequest, ExecutionService, ExecutionState, SqliteStore, StartOptions,
};
use orchestrator_core::{ExitStatus, Orchestrator, OutputSink, ResourceLimits};
use orchestrator_native::{NativeConfig, NativeOrchestrator};

fn native(root: &std::path::Path) -> Arc<NativeOrchestrator> {
    Arc::new(
        NativeOrchestrator::new(NativeConfig {
            workspace_root: root.to_path_buf(),
            ..NativeConfig::default()
        })
        .unwrap(),
    )
}

async fn assert_gone(o: &dyn Orchestrator, ws: &orchestrator_core::WorkspaceId) {
    let residue = o.residue(ws).await.unwrap();
    assert!(residue.is_empty(), "leftovers of {ws}: {residue:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_with_files_limits_and_live_output() {
    let root = tempfile::tempdir().unwrap();
    let io = tempfile::tempdir().unwrap();
    let native = native(root.path());
    let svc = ExecutionService::builder()
        .store(SqliteStore::open(io.path().join("runbox.db")).unwrap())
        .orchestrator(native.clone())
        .build()
        .unwrap();
    std::fs::write(io.path().join("input.txt"), "hello from the host\n").unwrap();
    let live = Arc::new(Mutex::new(Vec::new()));
    let l2 = live.clone();
    let out_file = io.path().join("out.txt");
    let res = svc
        .execute(
            ExecutionRequest::shell(
                "cat input.txt; echo \"$GREETING\" > out.txt; echo err >&2; exit 3",
            )
            .env("GREETING", "made in the sandbox")
            .file_in(io.path().join("input.txt"), "input.txt")
            .file_out("out.txt", &out_file)
            .limits(
                ResourceLimits::builder()
                    .wall_timeout(Duration::from_secs(20))
                    .memory_bytes(256 << 20)
                    .build()
                    .unwrap(),
            )
            .output(OutputSink::new(move |_, d| {
                l2.lock().unwrap().extend_from_slice(d)
            })),
        )
        .await
        .unwrap();
    assert_eq!(res.backend, "native");
    assert_eq!(res.output.status, ExitStatus::Exited(3));
    assert_eq!(res.output.stdout_str(), "hello from the host\n");
    assert_eq!(res.output.stderr_str(), "err\n");
    let seen = String::from_utf8(live.lock().unwrap().clone()).unwrap();
    assert!(
        seen.contains("hello from the host") && seen.contains("err"),
        "{seen:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "made in the sandbox\n"
    );
    assert_eq!(res.limit_report.entries.len(), 2);
    let rec = svc.get(&res.execution_id).await.unwrap();
    assert_eq!(rec.state, ExecutionState::Completed);
    assert_eq!(rec.result.as_ref().unwrap().exit_code, Some(3));
    assert!(rec.sandbox_released);
    assert_gone(native.as_ref(), &res.workspace_id).await;
    assert!(!root.path().join(res.workspace_id.as_str()).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_complete_a_background_command() {
    let root = tempfile::tempdir().unwrap();
    let native = native(root.path());
    let svc = ExecutionService::builder()
        .orchestrator(native.clone())
        .build()
        .unwrap();
    let id = svc
        .submit(ExecutionRequest::shell("sleep 600 & sleep 600; wait"))
        .await
        .unwrap();
    let ws = svc.start(&id, StartOptions::default()).await.unwrap();
    let dir = native
        .workspace_path(&ws)
        .expect("native has direct access");
    assert!(dir.is_dir());
    let rec = svc.get(&id).await.unwrap();
    assert_eq!(rec.state, ExecutionState::Running);
    assert!(rec.process_id.is_some());
    let done = svc.complete(&id, CompleteOptions::default()).await.unwrap();
    assert_eq!(done.state, ExecutionState::Completed);
    assert!(!dir.exists());
    assert_gone(native.as_ref(), &ws).await;
    // Idempotent, and a docker claim is refused without touching anything.
    svc.complete(&id, CompleteOptions::default()).await.unwrap();
    assert!(svc
        .complete(
            &id,
            CompleteOptions {
                use_docker: Some(true)
            }
        )
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_dropped_future_leave_nothing() {
    let root = tempfile::tempdir().unwrap();
    let native = native(root.path());
    let svc = ExecutionService::builder()
        .orchestrator(native.clone())
        .build()
        .unwrap();
    let res = svc
        .execute(
            ExecutionRequest::new(["sleep", "30"]).limits(
                ResourceLimits::builder()
                    .wall_timeout(Duration::from_millis(300))
                    .build()
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(res.output.status, ExitStatus::TimedOut);
    assert_gone(native.as_ref(), &res.workspace_id).await;

    // Drop the future while the command runs.
    let fut = svc.execute(ExecutionRequest::shell("sleep 4242 & sleep 4242"));
    let _ = tokio::time::timeout(Duration::from_millis(800), fut).await;
    tokio::time::timeout(Duration::from_secs(10), svc.wait_for_cleanups())
        .await
        .unwrap();
    let rec = svc.list().await.unwrap().pop().unwrap();
    assert_eq!(rec.state, ExecutionState::Cancelled, "{rec:?}");
    let ws = rec.sandbox().unwrap();
    assert_gone(native.as_ref(), &ws).await;
    assert!(runbox_e2e::wait_until(5, || {
        runbox_e2e::processes_matching("sleep 4242").is_empty()
    }));
}

#[tokio::test]
async fn default_service_is_native_without_docker() {
    let svc = ExecutionService::new(execution_service::MemoryStore::new()).unwrap();
    assert_eq!(svc.orchestrator().name(), "native");
    assert!(svc.docker().is_none());
    let res = svc
        .execute(ExecutionRequest::new(["echo", "hi"]))
        .await
        .unwrap();
    assert_eq!(res.output.stdout_str(), "hi\n");
    assert!(svc
        .orchestrator()
        .residue(&res.workspace_id)
        .await
        .unwrap()
        .is_empty());
}

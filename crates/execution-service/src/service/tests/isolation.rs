//! Mounts and isolation: a request's mounts reach the workspace spec, the
//! backend's isolation report is returned and recorded (and survives
//! SQLite), and a backend that cannot report it fails the start.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use orchestrator_core::{
    Availability, CommandSpec, IsolationLevel, IsolationMode, IsolationReport, LimitReport,
    Mechanism, Mount, NetworkMode, ProcessId, ProcessSnapshot, Result as CoreResult, SandboxPath,
    WorkspaceId,
};

use super::*;
use crate::record::IsolationSummary;
use crate::store::{ExecutionStore, SqliteStore};

/// What [`Isolating::isolation`] answers.
#[derive(Debug, Clone)]
enum Answer {
    Report(IsolationReport),
    /// A backend error ([`FakeError`] for op `Residue`, the closest the
    /// fake's error type has: isolation is not one of its operations).
    Fail,
}

/// The core fake, plus what it lacks for these tests: it takes mounts
/// (each spec's mounts are recorded, the workspace is made without them:
/// the fake's in-memory workspaces cannot bind host paths and refuse them)
/// and answers `isolation` as scripted.
#[derive(Debug)]
struct Isolating {
    inner: Arc<FakeOrchestrator>,
    mounts_seen: Mutex<Vec<Vec<Mount>>>,
    answer: Mutex<Answer>,
}

impl Isolating {
    fn new(answer: Answer) -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::new(FakeOrchestrator::named("native")),
            mounts_seen: Mutex::new(Vec::new()),
            answer: Mutex::new(answer),
        })
    }

    fn mounts_seen(&self) -> Vec<Vec<Mount>> {
        self.mounts_seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl Orchestrator for Isolating {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            isolation: true,
            mounts: true,
            ..self.inner.capabilities()
        }
    }
    async fn is_available(&self) -> Availability {
        self.inner.is_available().await
    }
    async fn create_workspace(&self, spec: &WorkspaceSpec) -> CoreResult<WorkspaceId> {
        self.mounts_seen.lock().unwrap().push(spec.mounts.clone());
        let mut bare = spec.clone();
        bare.mounts.clear();
        self.inner.create_workspace(&bare).await
    }
    async fn apply_resource_limits(
        &self,
        id: &WorkspaceId,
        limits: &ResourceLimits,
    ) -> CoreResult<LimitReport> {
        self.inner.apply_resource_limits(id, limits).await
    }
    async fn copy_to(
        &self,
        id: &WorkspaceId,
        host: &Path,
        sandbox: &SandboxPath,
    ) -> CoreResult<()> {
        self.inner.copy_to(id, host, sandbox).await
    }
    async fn copy_from(
        &self,
        id: &WorkspaceId,
        sandbox: &SandboxPath,
        host: &Path,
    ) -> CoreResult<()> {
        self.inner.copy_from(id, sandbox, host).await
    }
    async fn run_command(&self, id: &WorkspaceId, cmd: &CommandSpec) -> CoreResult<ExecOutput> {
        self.inner.run_command(id, cmd).await
    }
    async fn start_background(&self, id: &WorkspaceId, cmd: &CommandSpec) -> CoreResult<ProcessId> {
        self.inner.start_background(id, cmd).await
    }
    async fn process_status(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
    ) -> CoreResult<ProcessSnapshot> {
        self.inner.process_status(id, pid).await
    }
    async fn wait_process(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
        timeout: Option<Duration>,
    ) -> CoreResult<Option<ExecOutput>> {
        self.inner.wait_process(id, pid, timeout).await
    }
    async fn stop(&self, id: &WorkspaceId, pid: Option<&ProcessId>) -> CoreResult<()> {
        self.inner.stop(id, pid).await
    }
    async fn cleanup(&self, id: &WorkspaceId) -> CoreResult<()> {
        self.inner.cleanup(id).await
    }
    fn workspace_path(&self, id: &WorkspaceId) -> Option<PathBuf> {
        self.inner.workspace_path(id)
    }
    async fn residue(&self, id: &WorkspaceId) -> CoreResult<Vec<String>> {
        self.inner.residue(id).await
    }
    async fn isolation(&self, id: &WorkspaceId) -> CoreResult<IsolationReport> {
        if !self.inner.is_live(id) {
            return Err(CoreError::NotFound {
                what: "workspace",
                id: id.to_string(),
            });
        }
        match self.answer.lock().unwrap().clone() {
            Answer::Report(r) => Ok(r),
            Answer::Fail => Err(CoreError::backend(
                "native",
                FakeError {
                    backend: "native".into(),
                    op: Op::Residue,
                },
            )),
        }
    }
    async fn reap_orphans(&self) -> CoreResult<Vec<String>> {
        self.inner.reap_orphans().await
    }
}

fn full_report() -> IsolationReport {
    IsolationReport::full(
        IsolationMode::Auto,
        NetworkMode::None,
        vec![
            Mechanism::named("user-namespace"),
            Mechanism::named("seccomp"),
        ],
    )
}

fn service_over(orch: Arc<Isolating>, store: impl ExecutionStore + 'static) -> ExecutionService {
    ExecutionService::builder()
        .store(store)
        .orchestrator(orch)
        .build()
        .unwrap()
}

fn mount(host: &str, sandbox: &str, read_only: bool) -> Mount {
    Mount::new(host, SandboxPath::new(sandbox).unwrap(), read_only).unwrap()
}

#[tokio::test]
async fn mounts_travel_to_the_workspace_spec_and_the_record() {
    let orch = Isolating::new(Answer::Report(full_report()));
    let svc = service_over(orch.clone(), MemoryStore::new());
    let req = ExecutionRequest::new(["true"])
        .mount("/srv/data", "data", true)
        .add_mount(mount("/srv/out", "out/dir", false));
    let res = svc.execute(req).await.unwrap();
    let expected = vec![
        mount("/srv/data", "data", true),
        mount("/srv/out", "out/dir", false),
    ];
    assert_eq!(orch.mounts_seen(), vec![expected.clone()]);
    assert_eq!(res.record.request.mounts, expected);
    assert_eq!(
        svc.get(&res.execution_id).await.unwrap().request.mounts,
        expected
    );

    // `start` takes the same path.
    let id = svc
        .submit(ExecutionRequest::sandbox_only().mount("/srv/x", "x", false))
        .await
        .unwrap();
    svc.start(&id, StartOptions::default()).await.unwrap();
    assert_eq!(orch.mounts_seen()[1], vec![mount("/srv/x", "x", false)]);
    svc.complete(&id, CompleteOptions::default()).await.unwrap();
    assert!(orch.inner.live_workspaces().is_empty());
}

#[tokio::test]
async fn a_backend_refusing_mounts_fails_the_start_without_leftovers() {
    // The core fake answers Unsupported for any mount.
    let (svc, native) = native_only();
    let err = svc
        .execute(ExecutionRequest::new(["true"]).mount("/srv/data", "data", true))
        .await
        .unwrap_err();
    match &err {
        ServiceError::Orchestrator {
            operation, source, ..
        } => {
            assert_eq!(*operation, "create_workspace");
            assert!(matches!(source, CoreError::Unsupported { .. }), "{source}");
        }
        other => panic!("expected a create_workspace error, got {other:?}"),
    }
    let rec = &svc.list().await.unwrap()[0];
    assert_eq!(rec.state, ExecutionState::Failed);
    assert!(rec.isolation.is_none(), "no sandbox, no isolation report");
    assert!(native.live_workspaces().is_empty());
}

#[tokio::test]
async fn bad_mounts_are_invalid_requests_without_records() {
    let (svc, native) = native_only();
    for req in [
        ExecutionRequest::new(["x"]).mount("relative/host", "data", true),
        ExecutionRequest::new(["x"]).mount("/srv/data", "../escape", true),
        ExecutionRequest::new(["x"]).mount("/srv/data", "/abs", true),
        ExecutionRequest::new(["x"]).mount("/srv/data", ".", false),
    ] {
        let err = svc.execute(req).await.unwrap_err();
        assert_eq!(err.kind(), "invalid_request", "{err}");
    }
    let err = svc
        .submit(ExecutionRequest::new(["x"]).mount("rel", "data", true))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("absolute"), "{err}");
    assert!(svc.list().await.unwrap().is_empty());
    assert!(native.calls().is_empty());
}

#[tokio::test]
async fn the_isolation_report_is_returned_and_recorded() {
    let report = full_report();
    let orch = Isolating::new(Answer::Report(report.clone()));
    let svc = service_over(orch.clone(), MemoryStore::new());
    let res = svc.execute(ExecutionRequest::new(["true"])).await.unwrap();
    assert_eq!(res.isolation, report);
    let summary = res.record.isolation.clone().expect("recorded");
    assert_eq!(
        summary,
        IsolationSummary {
            requested: "auto".into(),
            level: "full".into(),
            network: "none".into(),
            enforced_by: vec!["user-namespace".into(), "seccomp".into()],
            note: None,
        }
    );
    assert_eq!(summary.report().unwrap(), report);
    assert!(!summary.fell_back());

    // A fallback of auto is kept with its note, through `start` too.
    let fallback = IsolationReport::none(IsolationMode::Auto, "no user namespaces here");
    *orch.answer.lock().unwrap() = Answer::Report(fallback.clone());
    let id = svc.submit(ExecutionRequest::new(["true"])).await.unwrap();
    svc.start(&id, StartOptions::default()).await.unwrap();
    let rec = svc.get(&id).await.unwrap();
    let summary = rec.isolation.clone().unwrap();
    assert!(summary.fell_back());
    assert_eq!(summary.level, "none");
    assert_eq!(summary.network, "host");
    assert_eq!(summary.note.as_deref(), Some("no user namespaces here"));
    assert_eq!(summary.report().unwrap(), fallback);
    svc.complete(&id, CompleteOptions::default()).await.unwrap();
}

#[tokio::test]
async fn a_backend_without_isolation_reports_level_none() {
    // The core fake keeps the trait's default.
    let (svc, _native) = native_only();
    let res = svc.execute(ExecutionRequest::new(["true"])).await.unwrap();
    assert_eq!(res.isolation, IsolationReport::unreported("native"));
    assert_eq!(res.isolation.level, IsolationLevel::None);
    let summary = res.record.isolation.unwrap();
    assert_eq!(
        (summary.requested.as_str(), summary.level.as_str()),
        ("none", "none")
    );
    assert!(summary.note.unwrap().contains("does not report isolation"));
}

#[tokio::test]
async fn an_isolation_error_is_a_failed_start_and_tears_down() {
    for via_execute in [false, true] {
        let orch = Isolating::new(Answer::Fail);
        let svc = service_over(orch.clone(), MemoryStore::new());
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        std::fs::write(&input, "x").unwrap();
        let req = ExecutionRequest::new(["true"])
            .file_in(&input, "in")
            .limits(limits());
        let err = if via_execute {
            svc.execute(req).await.unwrap_err()
        } else {
            let id = svc.submit(req).await.unwrap();
            svc.start(&id, StartOptions::default()).await.unwrap_err()
        };
        match &err {
            ServiceError::Orchestrator {
                operation, backend, ..
            } => assert_eq!((*operation, backend.as_str()), ("isolation", "native")),
            other => panic!("expected a backend error in isolation, got {other:?}"),
        }
        assert!(err.backend_source().is_some_and(|s| s.is::<FakeError>()));
        let rec = &svc.list().await.unwrap()[0];
        assert_eq!(rec.state, ExecutionState::Failed);
        assert!(
            rec.error.as_deref().unwrap().contains("isolation"),
            "{rec:?}"
        );
        assert!(rec.sandbox_released);
        rec.check_invariants().unwrap();
        // Torn down before anything went into it.
        assert!(orch.inner.live_workspaces().is_empty());
        assert_eq!(orch.inner.count(Op::Cleanup), 1);
        assert_eq!(orch.inner.count(Op::CopyTo), 0);
        assert_eq!(orch.inner.count(Op::ApplyResourceLimits), 0);
        assert_eq!(orch.inner.count(Op::RunCommand), 0);
        assert_eq!(orch.inner.count(Op::StartBackground), 0);
    }
}

#[tokio::test]
async fn isolation_and_mounts_survive_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runbox.db");
    let orch = Isolating::new(Answer::Report(full_report()));
    let res = {
        let svc = service_over(orch.clone(), SqliteStore::open(&db).unwrap());
        svc.execute(ExecutionRequest::new(["true"]).mount("/srv/data", "data", true))
            .await
            .unwrap()
    };
    let store = SqliteStore::open(&db).unwrap();
    let back = store.get(&res.execution_id).await.unwrap().unwrap();
    assert_eq!(back, res.record);
    assert_eq!(back.request.mounts, vec![mount("/srv/data", "data", true)]);
    assert_eq!(back.isolation.unwrap().report().unwrap(), full_report());
}

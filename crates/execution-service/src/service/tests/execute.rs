//! The one-call path: output, copy-out, teardown, bad requests.

use super::*;

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
    assert!(!res.used_docker());
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
        ExecutionRequest::new(["x"]).workdir("/abs"),
        // Limits cannot be out of range (the builder refuses them); a
        // command can, until it is built.
        ExecutionRequest::new(["x"]).env("A=B", "v"),
        ExecutionRequest::new([""]),
    ] {
        let err = svc.execute(req).await.unwrap_err();
        assert_eq!(err.kind(), "invalid_request", "{err}");
    }
    assert!(svc.list().await.unwrap().is_empty());
    assert!(native.calls().is_empty());
}

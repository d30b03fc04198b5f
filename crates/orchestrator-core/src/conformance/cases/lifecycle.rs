//! Cases: a workspace's life from create to cleanup, and NotFound after it.

use std::time::Duration;

use crate::error::Error;
use crate::limits::ResourceLimits;
use crate::orchestrator::Orchestrator;
use crate::types::{CommandSpec, ProcessId, WorkspaceId};

use crate::conformance::support::*;

/// create + a command + cleanup; the workspace leaves nothing behind.
pub async fn create_cleanup_roundtrip(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let out = sh(o, &id, "echo hello").await;
    expect_exit(&out, 0);
    assert_eq!(out.stdout, b"hello\n");
    let r = o.residue(&id).await.expect("residue");
    assert!(!r.is_empty(), "a live workspace should show in residue()");
    done(o, &id).await;
}

/// cleanup twice, and cleanup of an id that never existed, both succeed.
pub async fn cleanup_is_idempotent(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    o.cleanup(&id).await.expect("first cleanup");
    o.cleanup(&id).await.expect("second cleanup");
    let never = WorkspaceId::new("rb-never-existed-0").expect("id");
    o.cleanup(&never).await.expect("cleanup of unknown id");
    done(o, &id).await;
}

async fn all_ops_not_found(o: &dyn Orchestrator, id: &WorkspaceId) {
    let host = host_dir();
    std::fs::write(host.path().join("f"), b"x").expect("write");
    expect_not_found(
        o.apply_resource_limits(id, &ResourceLimits::default())
            .await,
        "apply_resource_limits",
    );
    expect_not_found(o.copy_to(id, &host.path().join("f"), "f").await, "copy_to");
    expect_not_found(
        o.copy_from(id, "f", &host.path().join("g")).await,
        "copy_from",
    );
    expect_not_found(
        o.run_command(id, &CommandSpec::new(["true"])).await,
        "run_command",
    );
    expect_not_found(
        o.start_background(id, &CommandSpec::new(["true"])).await,
        "start_background",
    );
    let pid = ProcessId::new("p1").expect("pid");
    expect_not_found(o.process_status(id, &pid).await, "process_status");
    expect_not_found(
        o.wait_process(id, &pid, Some(Duration::ZERO)).await,
        "wait_process",
    );
    expect_not_found(o.stop(id, None).await, "stop");
    assert!(
        o.workspace_path(id).is_none(),
        "workspace_path of a missing workspace"
    );
    assert!(
        !host.path().join("g").exists(),
        "copy_from wrote despite NotFound"
    );
}

/// Every operation on an id that never existed is NotFound.
pub async fn unknown_workspace_is_not_found(o: &dyn Orchestrator) {
    let id = WorkspaceId::new("rb-unknown-workspace-1").expect("id");
    all_ops_not_found(o, &id).await;
}

/// Every operation on a cleaned-up workspace is NotFound.
pub async fn cleaned_workspace_is_not_found(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    done(o, &id).await;
    all_ops_not_found(o, &id).await;
}

/// Empty argv, bad env names and zero timeouts are InvalidInput; the
/// workspace still works afterwards.
pub async fn invalid_commands_rejected(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let bad = [
        CommandSpec::new(Vec::<String>::new()),
        CommandSpec::new(["true"]).env("A=B", "1"),
        CommandSpec::new(["true"]).timeout(Duration::ZERO),
        CommandSpec::new(["true"]).output_limit(0),
    ];
    for cmd in bad {
        match o.run_command(&id, &cmd).await {
            Err(Error::InvalidInput(_)) => {}
            other => panic!("{cmd:?}: expected InvalidInput, got {other:?}"),
        }
        match o.start_background(&id, &cmd).await {
            Err(Error::InvalidInput(_)) => {}
            other => panic!("{cmd:?} (background): expected InvalidInput, got {other:?}"),
        }
    }
    expect_exit(&sh(o, &id, "true").await, 0);
    done(o, &id).await;
}

/// workspace_path gives a host directory shared with commands, gone after
/// cleanup.
pub async fn direct_access_path(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let path = o.workspace_path(&id).expect("workspace_path");
    assert!(path.is_dir(), "{} is not a directory", path.display());
    std::fs::write(path.join("from-host"), b"hi").expect("write via path");
    let out = sh(o, &id, "cat from-host").await;
    assert_eq!(out.stdout, b"hi");
    done(o, &id).await;
    assert!(
        !path.exists(),
        "{} still exists after cleanup",
        path.display()
    );
}

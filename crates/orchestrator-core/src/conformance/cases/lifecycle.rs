//! Cases: a workspace's life from create to cleanup, and NotFound after it.

use crate::orchestrator::Orchestrator;
use crate::types::WorkspaceId;

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

/// Every operation on an id that never existed is NotFound.
pub async fn unknown_workspace_is_not_found(o: &dyn Orchestrator) {
    let id = WorkspaceId::new("rb-unknown-workspace-1").expect("id");
    expect_workspace_missing_everywhere(o, &id).await;
}

/// Every operation on a cleaned-up workspace is NotFound.
pub async fn cleaned_workspace_is_not_found(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    done(o, &id).await;
    expect_workspace_missing_everywhere(o, &id).await;
}

/// Empty argv, bad env names and zero timeouts are InvalidInput when the
/// command is built, so no backend sees them.
pub async fn invalid_commands_rejected(_o: &dyn Orchestrator) {
    expect_bad_commands_rejected();
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

//! What docs/writing-a-backend.md says of its example backend beyond the
//! shared conformance suite: the registry factory takes its options as
//! shown, and workspaces carry their owner (cleanup leaves another live
//! owner's workspace alone, reap_orphans takes only those of gone owners).

use std::process::{Child, Command};

use orchestrator_core::owner::Owner;
use orchestrator_core::{
    registry, BackendOptions, Error, Orchestrator, WorkspaceId, WorkspaceSpec,
};

use crate::hostdir_backend::{HostdirOrchestrator, NAME};

/// A workspace directory named for `owner`, as another process of hostdir
/// would have made it.
fn foreign_workspace(root: &std::path::Path, owner: &Owner) -> (WorkspaceId, std::path::PathBuf) {
    let id = WorkspaceId::new(format!("hd-{}-7", owner.token())).unwrap();
    let dir = root.join(id.as_str());
    std::fs::create_dir(&dir).unwrap();
    (id, dir)
}

/// A live process other than this one; killed and reaped when dropped.
struct Other(Child);

impl Drop for Other {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn factory_takes_its_setting_and_refuses_others() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("workspaces");
    let options = BackendOptions::new().setting("root", root.to_str().unwrap());
    let o = registry::create_with(NAME, &options).unwrap();
    assert_eq!(o.name(), NAME);
    assert!(root.is_dir(), "the root setting is used");
    for bad in [
        BackendOptions::new().setting("colour", "red"),
        BackendOptions::new().pool_size(2),
    ] {
        match registry::create_with(NAME, &bad) {
            Err(Error::InvalidInput(_)) => {}
            other => panic!("{bad:?}: expected InvalidInput, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn another_live_owners_workspace_stays_until_its_owner_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let o = HostdirOrchestrator::new(tmp.path()).unwrap();
    let mut other = Other(Command::new("sleep").arg("60").spawn().unwrap());
    let owner = Owner::of_pid(other.0.id()).unwrap();
    let (id, dir) = foreign_workspace(tmp.path(), &owner);

    o.cleanup(&id).await.expect("cleanup answers Ok");
    assert!(dir.is_dir(), "cleanup removed a live owner's workspace");
    let reaped = o.reap_orphans().await.unwrap();
    assert!(
        reaped.is_empty(),
        "reaped a live owner's workspace: {reaped:?}"
    );
    assert!(dir.is_dir());

    other.0.kill().unwrap();
    other.0.wait().unwrap();
    assert!(owner.is_dead());
    let reaped = o.reap_orphans().await.unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert!(!dir.exists(), "a gone owner's workspace is reaped");
}

#[tokio::test]
async fn cleanup_removes_what_this_process_or_a_gone_owner_made() {
    let tmp = tempfile::tempdir().unwrap();
    let a = HostdirOrchestrator::new(tmp.path()).unwrap();
    let b = HostdirOrchestrator::new(tmp.path()).unwrap();

    // A gone owner's workspace (an exited child is still listed until
    // it is reaped, so its owner identity can be read first).
    let mut child = Command::new("true").spawn().unwrap();
    let owner = Owner::of_pid(child.id()).unwrap();
    child.wait().unwrap();
    let (id, dir) = foreign_workspace(tmp.path(), &owner);
    a.cleanup(&id).await.unwrap();
    assert!(!dir.exists(), "a gone owner's workspace is removed");

    // Another instance of this process: same owner, so it is removed.
    let id = a.create_workspace(&WorkspaceSpec::new()).await.unwrap();
    let dir = a.workspace_path(&id).unwrap();
    assert!(b.reap_orphans().await.unwrap().is_empty());
    assert!(dir.is_dir(), "this process's workspace is no orphan");
    b.cleanup(&id).await.unwrap();
    assert!(!dir.exists());
    a.cleanup(&id).await.unwrap();
}

//! Cases: host paths mounted into a workspace (`WorkspaceSpec::mounts`):
//! honoured read-only and read-write by a backend that claims them, refused
//! as `Unsupported` by one that does not, never silently ignored.

use crate::error::Error;
use crate::orchestrator::Orchestrator;
use crate::types::{Mount, WorkspaceSpec};

use crate::conformance::support::*;

/// With `mounts` claimed: a read-only mount is readable and refuses new
/// files, appends, removal and renames, a read-write mount's writes land on
/// the host, cleanup leaves both host directories and their contents alone,
/// and a missing host path is `InvalidInput`. Without it: a spec with a mount is `Unsupported`.
pub async fn mounts_are_honoured_or_refused(o: &dyn Orchestrator) {
    let ro = host_dir();
    let rw = host_dir();
    std::fs::write(ro.path().join("in.txt"), b"from the host\n").expect("host file");
    // The sandbox's user need not be the caller's: host permissions decide
    // who writes through a read-write mount, so this one lets anyone.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(rw.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod the read-write mount source");
    }
    let spec = WorkspaceSpec::new()
        .mount(Mount::new(ro.path(), sandbox("data/ro"), true).expect("ro mount"))
        .mount(Mount::new(rw.path(), sandbox("rw"), false).expect("rw mount"));
    if !o.capabilities().mounts {
        match o.create_workspace(&spec).await {
            Err(Error::Unsupported { .. }) => return,
            other => panic!("a backend that claims no mounts answered {other:?}"),
        }
    }
    let id = o
        .create_workspace(&spec)
        .await
        .expect("workspace with mounts");
    let out = sh(o, &id, "cat data/ro/in.txt").await;
    expect_exit(&out, 0);
    assert_eq!(out.stdout, b"from the host\n", "{}", describe(&out));
    for write in [
        "echo no > data/ro/new.txt",
        "echo no >> data/ro/in.txt",
        "rm data/ro/in.txt",
        "mv data/ro/in.txt data/ro/moved.txt",
    ] {
        let out = sh(o, &id, write).await;
        assert!(
            !out.status.success(),
            "{write:?} through a read-only mount succeeded: {}",
            describe(&out)
        );
    }
    expect_exit(&sh(o, &id, "echo yes > rw/out.txt").await, 0);
    assert_eq!(
        std::fs::read(rw.path().join("out.txt")).expect("written through the mount"),
        b"yes\n"
    );
    done(o, &id).await;
    assert!(!ro.path().join("new.txt").exists());
    assert!(!ro.path().join("moved.txt").exists());
    assert_eq!(
        std::fs::read(ro.path().join("in.txt")).expect("host file kept"),
        b"from the host\n",
        "cleanup touched a mounted host directory"
    );
    assert!(
        rw.path().join("out.txt").exists(),
        "cleanup removed mounted host content"
    );

    let gone = ro.path().join("no-such-dir");
    let missing = WorkspaceSpec::new().mount(Mount::new(&gone, sandbox("x"), true).expect("mount"));
    expect_invalid(
        o.create_workspace(&missing).await,
        "a mount of a missing host path",
    );
}

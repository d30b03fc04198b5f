//! Cases: sandbox paths that escape (`..`, absolute, symlinks) are rejected.

use std::path::Path;

use crate::error::Error;
use crate::orchestrator::Orchestrator;
use crate::types::CommandSpec;

use crate::conformance::support::*;

/// `..` is rejected for copy_to, copy_from and the working directory.
pub async fn path_escape_dotdot_rejected(o: &dyn Orchestrator) {
    expect_rejected_everywhere(o, &["../f", "a/../../f", "..", "a/.."]).await;
}

/// Absolute paths are rejected for copy_to, copy_from and the working
/// directory.
pub async fn path_escape_absolute_rejected(o: &dyn Orchestrator) {
    expect_rejected_everywhere(o, &["/etc/passwd", "/tmp/runbox-escape", "/"]).await;
    assert!(!Path::new("/tmp/runbox-escape").exists());
}

/// In a fresh workspace, each of `paths` is PathEscapesSandbox for copy_to,
/// copy_from and the working directory, and copy_from wrote nothing.
async fn expect_rejected_everywhere(o: &dyn Orchestrator, paths: &[&str]) {
    let id = new_ws(o).await;
    let host = host_dir();
    std::fs::write(host.path().join("f"), b"x").expect("write");
    for &p in paths {
        expect_escape(o.copy_to(&id, &host.path().join("f"), p).await, p);
        expect_escape(o.copy_from(&id, p, &host.path().join("out")).await, p);
        expect_escape(
            o.run_command(&id, &CommandSpec::new(["true"]).workdir(p))
                .await,
            p,
        );
    }
    assert!(!host.path().join("out").exists());
    done(o, &id).await;
}

/// A symlink inside the sandbox that points outside is not followed by
/// copy_to, copy_from or the working directory.
pub async fn path_escape_symlink_rejected(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let host = host_dir();
    let outside = host.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("secret"), b"secret").expect("write");
    std::fs::write(host.path().join("f"), b"payload").expect("write");
    let script = format!(
        "ln -s {} abs && ln -s /etc etc && mkdir d && ln -s ../.. d/up && ln -s ../d/up d2",
        outside.display()
    );
    expect_exit(&sh(o, &id, &script).await, 0);
    for p in ["abs/secret", "abs", "etc/passwd", "d/up", "d/up/x", "d2"] {
        expect_escape(o.copy_from(&id, p, &host.path().join("out")).await, p);
    }
    for p in ["abs/planted", "abs", "etc/planted", "d/up/planted", "d2/x"] {
        expect_escape(o.copy_to(&id, &host.path().join("f"), p).await, p);
        expect_escape(
            o.run_command(&id, &CommandSpec::new(["true"]).workdir(p))
                .await,
            p,
        );
    }
    assert!(
        !host.path().join("out").exists(),
        "copy_from wrote through a symlink"
    );
    assert!(
        !outside.join("planted").exists(),
        "copy_to wrote through a symlink"
    );
    assert_eq!(
        std::fs::read(outside.join("secret")).expect("read"),
        b"secret"
    );
    // Copying a directory that contains an escaping symlink must not follow it.
    expect_exit(
        &sh(o, &id, "mkdir -p t && echo in > t/in && ln -s /etc t/etc").await,
        0,
    );
    let dst = host.path().join("tcopy");
    match o.copy_from(&id, "t", &dst).await {
        Ok(()) => {
            let etc = dst.join("etc");
            if let Ok(md) = std::fs::symlink_metadata(&etc) {
                assert!(
                    md.file_type().is_symlink(),
                    "an escaping symlink was followed and its target copied"
                );
            }
        }
        Err(Error::PathEscapesSandbox { .. }) => {}
        Err(e) => panic!("copy_from of a dir with an escaping link: {e}"),
    }
    done(o, &id).await;
}

//! Cases: sandbox paths that escape (`..`, absolute, symlinks) are rejected.

use std::path::Path;

use crate::error::Error;
use crate::orchestrator::Orchestrator;
use crate::types::CommandSpec;

use crate::conformance::support::*;

/// A path with `..` cannot be made into a sandbox path or a working
/// directory: PathEscapesSandbox at construction, before any backend.
pub async fn path_escape_dotdot_rejected(_o: &dyn Orchestrator) {
    expect_escapes_at_construction(&DOTDOT_PATHS);
}

/// An absolute path cannot be made into a sandbox path or a working
/// directory: PathEscapesSandbox at construction, before any backend.
pub async fn path_escape_absolute_rejected(_o: &dyn Orchestrator) {
    expect_escapes_at_construction(&ABSOLUTE_PATHS);
    assert!(!Path::new("/tmp/runbox-escape").exists());
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
        let p = &sandbox(p);
        expect_escape(
            o.copy_from(&id, p, &host.path().join("out")).await,
            p.as_str(),
        );
    }
    for p in ["abs/planted", "abs", "etc/planted", "d/up/planted", "d2/x"] {
        let cmd = command(CommandSpec::new(["true"]).workdir(p));
        let p = &sandbox(p);
        expect_escape(o.copy_to(&id, &host.path().join("f"), p).await, p.as_str());
        expect_escape(o.run_command(&id, &cmd).await, p.as_str());
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
    match o.copy_from(&id, &sandbox("t"), &dst).await {
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

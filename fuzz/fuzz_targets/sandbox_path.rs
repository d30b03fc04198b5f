//! Fuzzes sandbox path validation: arbitrary strings through
//! `paths::sandbox_relative` and `paths::resolve_in_root` on a fixed tree
//! full of symlinks (inside, outside, absolute, `..`, `sub -> .`, loops,
//! dangling). Whatever is accepted must stay inside the root: lexically,
//! and on disk (the longest existing prefix canonicalises inside the root).
#![no_main]

use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use orchestrator_core::{paths, Error, SandboxPath};

struct Tree {
    root: PathBuf,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        // Under $TMPDIR (the xtask points it at a directory it removes).
        let base = std::env::temp_dir().join(format!("runbox-fuzz-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("root/real/sub")).unwrap();
        std::fs::create_dir_all(base.join("root/d")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/secret"), b"s").unwrap();
        std::fs::write(base.join("root/real/file"), b"f").unwrap();
        let root = base.join("root").canonicalize().unwrap();
        let outside = base.join("outside").canonicalize().unwrap();
        let links: &[(&str, PathBuf)] = &[
            ("in", "real".into()),
            ("abs_in", root.join("real")),
            ("up", "..".into()),
            ("upup", "../..".into()),
            ("out", "../outside".into()),
            ("abs_out", outside.clone()),
            ("etc", "/etc".into()),
            ("self", ".".into()),
            ("real/back", "..".into()),
            ("real/esc", "../../outside".into()),
            ("real/sub/deep", "../../in/sub".into()),
            ("d/s", "../self/..".into()),
            ("loop1", "loop2".into()),
            ("loop2", "loop1".into()),
            ("chain", "in/back/in".into()),
            ("dangling", "nowhere/x".into()),
            ("file_link", "real/file".into()),
            ("root_abs", root.clone()),
        ];
        for (name, target) in links {
            symlink(target, root.join(name)).unwrap();
        }
        Tree { root }
    })
}

/// The longest existing prefix of `p`, canonicalised.
fn existing_prefix(p: &Path) -> Option<PathBuf> {
    let mut cur = Some(p);
    while let Some(c) = cur {
        if let Ok(real) = c.canonicalize() {
            return Some(real);
        }
        cur = c.parent();
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let t = tree();
    let lexical = paths::sandbox_relative(s);
    match &lexical {
        Ok(rel) => {
            assert!(rel.is_relative(), "{s:?} -> {rel:?}");
            assert!(
                rel.components().all(|c| matches!(c, Component::Normal(_))),
                "{s:?} -> {rel:?} is not normalised"
            );
            assert!(!s.starts_with('/'), "absolute {s:?} accepted");
        }
        Err(Error::PathEscapesSandbox { .. }) | Err(Error::InvalidInput(_)) => {}
        Err(e) => panic!("{s:?}: unexpected error kind {e:?}"),
    }
    let parsed = SandboxPath::new(s);
    assert_eq!(
        parsed.as_ref().map(|p| p.as_path().to_path_buf()).ok(),
        lexical.as_ref().ok().cloned(),
        "{s:?}: SandboxPath and the lexical rules disagree"
    );
    let Ok(parsed) = parsed else {
        return;
    };
    match paths::resolve_in_root(&t.root, &parsed) {
        Ok(p) => {
            assert!(lexical.is_ok(), "{s:?} resolved but is lexically invalid");
            assert!(p.starts_with(&t.root), "{s:?} -> {} escaped", p.display());
            assert!(
                p.components()
                    .all(|c| !matches!(c, Component::ParentDir | Component::CurDir)),
                "{s:?} -> {} is not normalised",
                p.display()
            );
            // On disk: what exists of it is inside the root (symlinks in
            // the prefix are followed by canonicalize).
            if let Some(real) = existing_prefix(&p) {
                assert!(
                    real.starts_with(&t.root),
                    "{s:?} -> {} really is {}",
                    p.display(),
                    real.display()
                );
            }
        }
        Err(Error::PathEscapesSandbox { .. }) | Err(Error::InvalidInput(_)) => {}
        Err(e) => panic!("{s:?}: unexpected error kind {e:?}"),
    }
});

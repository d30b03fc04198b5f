//! Fuzzes the docker backend's tar extraction (archives come from
//! containers: hostile). Arbitrary bytes are extracted to `work/out` inside
//! a jail directory that also holds a canary file and an `outside`
//! directory. Afterwards, whether extraction succeeded or not:
//! - nothing outside `work/out` changed (the canary, `outside`, the jail's
//!   entries, no staging directory left in `work`);
//! - on failure nothing at all was left (`work` is empty);
//! - on success every symlink under `out` resolves inside `out`, and every
//!   entry is a plain file, directory or symlink.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const CANARY: &[u8] = b"canary: must never change";

struct Jail {
    base: PathBuf,
    work: PathBuf,
    dest: PathBuf,
}

fn jail() -> &'static Jail {
    static JAIL: OnceLock<Jail> = OnceLock::new();
    JAIL.get_or_init(|| {
        // Under $TMPDIR (the xtask points it at a directory it removes).
        let base = std::env::temp_dir().join(format!("runbox-fuzz-tar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("work")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("canary"), CANARY).unwrap();
        let base = base.canonicalize().unwrap();
        Jail {
            work: base.join("work"),
            dest: base.join("work/out"),
            base,
        }
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Checks every entry under `dir` (not following symlinks).
fn check_tree(root: &Path, dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        if ft.is_symlink() {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let rel = orchestrator_core::SandboxPath::new(&rel).expect("a relative entry name");
            if let Err(e) = orchestrator_core::paths::resolve_in_root(root, &rel) {
                panic!("symlink {} leads outside the destination: {e}", p.display());
            }
        } else if ft.is_dir() {
            check_tree(root, &p);
        } else {
            assert!(ft.is_file(), "special file extracted: {}", p.display());
        }
    }
}

fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if let Ok(md) = std::fs::symlink_metadata(&p) {
                if md.is_dir() {
                    let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700));
                    make_removable(&p);
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let j = jail();
    let res = orchestrator_docker::extract_archive_for_tests(data, &j.dest);

    assert_eq!(names(&j.base), ["canary", "outside", "work"]);
    assert_eq!(std::fs::read(j.base.join("canary")).unwrap(), CANARY);
    assert!(names(&j.base.join("outside")).is_empty(), "written outside");
    match &res {
        Ok(()) => {
            assert_eq!(
                names(&j.work),
                ["out"],
                "staging left next to the destination"
            );
            let md = std::fs::symlink_metadata(&j.dest).unwrap();
            if md.is_dir() {
                check_tree(&j.dest, &j.dest);
            } else {
                assert!(
                    md.is_file(),
                    "destination is neither a file nor a directory"
                );
            }
        }
        Err(_) => {
            assert!(
                names(&j.work).is_empty(),
                "failed extraction left {:?}",
                names(&j.work)
            );
        }
    }
    // Reset for the next input.
    if let Ok(md) = std::fs::symlink_metadata(&j.dest) {
        if md.is_dir() {
            let _ = std::fs::set_permissions(
                &j.dest,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            );
            make_removable(&j.dest);
            std::fs::remove_dir_all(&j.dest).unwrap();
        } else {
            std::fs::remove_file(&j.dest).unwrap();
        }
    }
});

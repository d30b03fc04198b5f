//! Unit tests of the archive code: round trips, hostile archives rejected
//! without leaving anything behind, and a property test that extraction
//! never escapes its destination.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use proptest::prelude::*;

use super::build::build;
use super::extract::{entry_components, extract, resolve_inside};

/// (name, kind, data, link target) of one raw entry.
type Raw<'a> = (&'a [u8], tar::EntryType, &'a [u8], Option<&'a [u8]>);
/// The owned form of [`Raw`].
type RawOwned = (Vec<u8>, tar::EntryType, Vec<u8>, Option<Vec<u8>>);

/// Writes raw headers, so hostile names survive (tar::Builder refuses `..`).
fn raw_archive(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_old();
        {
            let bytes = h.as_mut_bytes();
            let n = name.len().min(99);
            bytes[..n].copy_from_slice(&name[..n]);
            if let Some(l) = link {
                let m = l.len().min(99);
                bytes[157..157 + m].copy_from_slice(&l[..m]);
            }
        }
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

use tar::EntryType as T;

#[test]
fn roundtrip_file_and_tree() {
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("tree");
    fs::create_dir_all(tree.join("a/b")).unwrap();
    fs::create_dir_all(tree.join("empty")).unwrap();
    fs::write(tree.join("a/b/f"), [0u8, 1, 255]).unwrap();
    fs::write(tree.join("e"), b"").unwrap();
    symlink("a/b/f", tree.join("inside")).unwrap();
    let ar = build(&tree, "tree").unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("copy");
    extract(&ar[..], &dest).unwrap();
    assert_eq!(fs::read(dest.join("a/b/f")).unwrap(), [0u8, 1, 255]);
    assert_eq!(fs::read(dest.join("e")).unwrap(), b"");
    assert!(dest.join("empty").is_dir());
    assert_eq!(
        fs::read_link(dest.join("inside")).unwrap(),
        Path::new("a/b/f")
    );
    assert_eq!(listing(out.path()), ["copy"]);
    // A single file, replacing an existing one.
    fs::write(src.path().join("one"), b"data").unwrap();
    let ar = build(&src.path().join("one"), "one").unwrap();
    fs::write(out.path().join("f"), b"old").unwrap();
    extract(&ar[..], &out.path().join("f")).unwrap();
    assert_eq!(fs::read(out.path().join("f")).unwrap(), b"data");
    // A directory replacing a non-empty directory.
    extract(&build(&tree, "x").unwrap()[..], &out.path().join("f")).unwrap();
    let ar = build(&tree.join("a"), "a").unwrap();
    extract(&ar[..], &dest).unwrap();
    assert_eq!(listing(&dest), ["b"]);
    assert_eq!(listing(out.path()), ["copy", "f"]);
}

fn rejects(entries: &[Raw<'_>]) {
    let ar = raw_archive(entries);
    let out = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let r = extract(&ar[..], &out.path().join("dest"));
    assert!(r.is_err(), "{entries:?} was accepted");
    assert!(
        listing(out.path()).is_empty(),
        "left {:?}",
        listing(out.path())
    );
    assert!(listing(outside.path()).is_empty());
}

#[test]
fn hostile_archives_are_rejected_and_leave_nothing() {
    rejects(&[(b"../evil", T::Regular, b"x", None)]);
    rejects(&[(b"/etc/evil", T::Regular, b"x", None)]);
    rejects(&[
        (b"top/", T::Directory, b"", None),
        (b"top/../../evil", T::Regular, b"x", None),
    ]);
    rejects(&[
        (b"top/a", T::Regular, b"x", None),
        (b"other/b", T::Regular, b"x", None),
    ]);
    rejects(&[
        (b"top/", T::Directory, b"", None),
        (b"top/l", T::Symlink, b"", Some(b"/etc")),
    ]);
    rejects(&[
        (b"top/", T::Directory, b"", None),
        (b"top/l", T::Symlink, b"", Some(b"../x")),
    ]);
    rejects(&[
        (b"top/", T::Directory, b"", None),
        (b"top/d/l", T::Symlink, b"", Some(b"../../x")),
    ]);
    // A link chain: lexically inside, really outside.
    rejects(&[
        (b"top/", T::Directory, b"", None),
        (b"top/sub", T::Symlink, b"", Some(b".")),
        (b"top/d", T::Directory, b"", None),
        (b"top/d/s", T::Symlink, b"", Some(b"../sub/..")),
    ]);
    // Writing through a symlink, even one that points inside.
    rejects(&[
        (b"top/", T::Directory, b"", None),
        (b"top/l", T::Symlink, b"", Some(b".")),
        (b"top/l/f", T::Regular, b"x", None),
    ]);
    // Hard links out of the archive.
    rejects(&[
        (b"top/", T::Directory, b"", None),
        (b"top/h", T::Link, b"", Some(b"/etc/passwd")),
    ]);
    rejects(&[
        (b"top/", T::Directory, b"", None),
        (b"top/h", T::Link, b"", Some(b"../x")),
    ]);
    rejects(&[
        (b"top/", T::Directory, b"", None),
        (b"top/h", T::Link, b"", Some(b"other/x")),
    ]);
    // The copied path itself as a symlink.
    rejects(&[(b"top", T::Symlink, b"", Some(b"/etc"))]);
    // Duplicates.
    rejects(&[
        (b"top/", T::Directory, b"", None),
        (b"top/f", T::Regular, b"x", None),
        (b"top/f", T::Regular, b"y", None),
    ]);
    rejects(&[]);
}

#[test]
fn inside_links_are_kept() {
    let ar = raw_archive(&[
        (b"top/", T::Directory, b"", None),
        (b"top/f", T::Regular, b"data", None),
        (b"top/d/", T::Directory, b"", None),
        (b"top/d/l", T::Symlink, b"", Some(b"../f")),
        (b"top/h", T::Link, b"", Some(b"top/f")),
    ]);
    let out = tempfile::tempdir().unwrap();
    extract(&ar[..], &out.path().join("dest")).unwrap();
    assert_eq!(fs::read(out.path().join("dest/d/l")).unwrap(), b"data");
    assert_eq!(fs::read(out.path().join("dest/h")).unwrap(), b"data");
    assert_eq!(listing(out.path()), ["dest"]);
}

proptest! {
    #[test]
    fn extraction_never_escapes(
        names in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![
                    Just("..".to_string()), Just(".".to_string()), Just("".to_string()),
                    Just("top".to_string()), Just("/".to_string()), "[a-c]{1,3}"
                ], 1..5),
            1..6),
        link_targets in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![Just("..".to_string()), Just("/".to_string()), "[a-c]{1,2}"], 1..4),
            0..3),
    ) {
        let base = tempfile::tempdir().unwrap();
        let out = base.path().join("out");
        fs::create_dir(&out).unwrap();
        let mut entries: Vec<RawOwned> = Vec::new();
        for n in &names {
            entries.push((n.join("/").into_bytes(), T::Regular, b"x".to_vec(), None));
        }
        for (i, t) in link_targets.iter().enumerate() {
            entries.push((format!("top/l{i}").into_bytes(), T::Symlink, Vec::new(), Some(t.join("/").into_bytes())));
        }
        let refs: Vec<Raw<'_>> = entries
            .iter()
            .map(|(a, k, d, l)| (a.as_slice(), *k, d.as_slice(), l.as_deref()))
            .collect();
        let ar = raw_archive(&refs);
        let dest = out.join("dest");
        let ok = extract(&ar[..], &dest).is_ok();
        // Nothing ever lands beside `out` (in base) ...
        prop_assert_eq!(listing(base.path()), vec!["out".to_string()]);
        // ... and inside `out` only `dest` (on success) or nothing.
        let expect: Vec<String> = if ok { vec!["dest".into()] } else { vec![] };
        prop_assert_eq!(listing(&out), expect);
        if ok {
            // Every symlink left resolves inside dest.
            let root = dest.canonicalize().unwrap();
            fn walk(root: &Path, dir: &Path) {
                for e in fs::read_dir(dir).unwrap() {
                    let p = e.unwrap().path();
                    let md = fs::symlink_metadata(&p).unwrap();
                    let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                    if md.file_type().is_symlink() {
                        let comps: Vec<String> = rel.split('/').map(str::to_string).collect();
                        assert!(resolve_inside(root, &comps).is_ok(), "{rel}");
                    } else if md.is_dir() {
                        walk(root, &p);
                    }
                }
            }
            if root.is_dir() { walk(&root, &root); }
        }
    }

    #[test]
    fn entry_components_reject_dotdot_and_absolute(name in "[a-z./]{0,20}") {
        let r = entry_components(name.as_bytes());
        let has_dotdot = name.split('/').any(|c| c == "..");
        if name.starts_with('/') || has_dotdot {
            prop_assert!(r.is_err());
        }
        if let Ok(c) = r {
            prop_assert!(c.iter().all(|c| c != ".." && c != "." && !c.is_empty() && !c.contains('/')));
        }
    }
}

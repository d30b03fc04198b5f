//! Tar archives between the host and containers.
//!
//! [`build`] packs a host file or directory under one top-level name
//! (symlinks are stored as symlinks, special files are skipped, ownership is
//! normalised to root). [`extract`] unpacks an archive that comes from a
//! container, which must be treated as hostile: it is written by our own
//! loop over the entries (never `unpack`), every entry must stay under the
//! archive's single top-level name, `..` and absolute names are rejected,
//! nothing is ever written through a symlink, symlinks and hard links that
//! lead outside the destination are rejected, and everything lands in a
//! staging directory next to the destination that is renamed into place
//! only when the whole archive was extracted.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::DockerOrchestratorError as E;

fn unsafe_entry(entry: &str, reason: impl Into<String>) -> E {
    E::UnsafeArchive {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

fn new_header(kind: tar::EntryType, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h
}

fn mtime_of(md: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    md.mtime().max(0) as u64
}

fn add_path<W: Write>(b: &mut tar::Builder<W>, host: &Path, name: &Path) -> Result<(), E> {
    let md =
        fs::symlink_metadata(host).map_err(|e| E::io(format!("stat {}", host.display()), e))?;
    let ft = md.file_type();
    let mode = md.permissions().mode();
    if ft.is_symlink() {
        let target =
            fs::read_link(host).map_err(|e| E::io(format!("readlink {}", host.display()), e))?;
        let mut h = new_header(tar::EntryType::Symlink, 0o777, mtime_of(&md));
        b.append_link(&mut h, name, &target)
            .map_err(|e| E::io(format!("archive {}", host.display()), e))?;
    } else if ft.is_dir() {
        let mut h = new_header(tar::EntryType::Directory, mode, mtime_of(&md));
        b.append_data(&mut h, name, std::io::empty())
            .map_err(|e| E::io(format!("archive {}", host.display()), e))?;
        let mut entries: Vec<_> = fs::read_dir(host)
            .map_err(|e| E::io(format!("read {}", host.display()), e))?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| E::io(format!("read {}", host.display()), e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            add_path(b, &e.path(), &name.join(e.file_name()))?;
        }
    } else if ft.is_file() {
        let f = fs::File::open(host).map_err(|e| E::io(format!("open {}", host.display()), e))?;
        let mut h = new_header(tar::EntryType::Regular, mode, mtime_of(&md));
        h.set_size(md.len());
        b.append_data(&mut h, name, f)
            .map_err(|e| E::io(format!("archive {}", host.display()), e))?;
    } else {
        tracing::warn!(path = %host.display(), "skipping special file (fifo, socket or device)");
    }
    Ok(())
}

/// Packs `host` (file or directory) as `name` (a single path component).
pub(crate) fn build(host: &Path, name: &str) -> Result<Vec<u8>, E> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    add_path(&mut b, host, Path::new(name))?;
    b.into_inner()
        .map_err(|e| E::io(format!("archive {}", host.display()), e))
}

/// Splits an archive entry name into normal components, rejecting absolute
/// names, `..`, NUL and non-UTF-8 oddities that cannot be checked.
fn entry_components(raw: &[u8]) -> Result<Vec<String>, E> {
    let shown = String::from_utf8_lossy(raw).to_string();
    if raw.is_empty() {
        return Err(unsafe_entry(&shown, "empty name"));
    }
    if raw.contains(&0) {
        return Err(unsafe_entry(&shown, "NUL byte in name"));
    }
    if raw[0] == b'/' {
        return Err(unsafe_entry(&shown, "absolute path"));
    }
    let s = std::str::from_utf8(raw).map_err(|_| unsafe_entry(&shown, "name is not UTF-8"))?;
    let mut out = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(unsafe_entry(&shown, "'..' in name")),
            c => out.push(c.to_string()),
        }
    }
    if out.is_empty() {
        return Err(unsafe_entry(&shown, "name has no components"));
    }
    Ok(out)
}

/// Makes sure every directory on the way to `rel` under `root` exists as a
/// real directory (created when missing); a symlink or a file on the way is
/// rejected, so nothing is ever written through a link.
fn ensure_dirs(root: &Path, rel: &[String], entry: &str) -> Result<PathBuf, E> {
    let mut cur = root.to_path_buf();
    for c in rel {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_dir() => {}
            Ok(md) if md.file_type().is_symlink() => {
                return Err(unsafe_entry(entry, "a parent directory is a symlink"))
            }
            Ok(_) => return Err(unsafe_entry(entry, "a parent is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(|e| E::io(format!("mkdir {}", cur.display()), e))?;
            }
            Err(e) => return Err(E::io(format!("stat {}", cur.display()), e)),
        }
    }
    Ok(cur)
}

/// Lexically resolves a symlink target from the link's directory
/// (`link_dir`, relative to the destination root); `None` when it would
/// leave the root or is absolute.
fn lexical_target(link_dir: &[String], target: &Path) -> Option<Vec<String>> {
    if target.is_absolute() {
        return None;
    }
    let mut cur: Vec<String> = link_dir.to_vec();
    for c in target.components() {
        match c {
            Component::Normal(n) => cur.push(n.to_string_lossy().to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                cur.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(cur)
}

/// Follows `rel` under `root` the way the kernel would (the core's
/// [`orchestrator_core::paths::resolve_in_root`]); Err when the path leaves
/// `root`, uses an absolute link, or loops.
pub(crate) fn resolve_inside(root: &Path, rel: &[String]) -> Result<(), String> {
    orchestrator_core::paths::resolve_in_root(root, &rel.join("/"))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Extracts `archive` into a fresh staging directory under `stage_parent`
/// and returns the staged top-level entry. All entries must share one
/// top-level name. On error the staging directory is removed.
fn extract_staged(archive: impl Read, stage_root: &Path) -> Result<PathBuf, E> {
    let stage = stage_root.join("x");
    let mut a = tar::Archive::new(archive);
    let mut top: Option<String> = None;
    let mut seen_files: HashSet<Vec<String>> = HashSet::new();
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut links: Vec<Vec<String>> = Vec::new();
    let mut hardlinks: Vec<(Vec<String>, Vec<String>, String)> = Vec::new();
    let entries = a
        .entries()
        .map_err(|e| E::Archive(format!("cannot read archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| E::Archive(format!("cannot read archive entry: {e}")))?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).to_string();
        let mut comps = entry_components(&raw)?;
        let first = comps.remove(0);
        match &top {
            None => top = Some(first),
            Some(t) if *t == first => {}
            Some(t) => {
                return Err(unsafe_entry(
                    &shown,
                    format!("outside the archive's top-level entry {t:?}"),
                ))
            }
        }
        // comps is now relative to the staged top-level entry.
        let (parent_rel, name) = match comps.split_last() {
            Some((n, p)) => (p.to_vec(), Some(n.clone())),
            None => (Vec::new(), None),
        };
        let mode = entry.header().mode().unwrap_or(0o644) & 0o1777;
        let in_stage = |rel: &[String]| -> Vec<String> {
            let mut v = vec!["x".to_string()];
            v.extend(rel.iter().cloned());
            v
        };
        let target_path = |name: &Option<String>| -> Result<PathBuf, E> {
            let dir = if name.is_some() {
                ensure_dirs(stage_root, &in_stage(&parent_rel), &shown)?
            } else {
                stage.clone()
            };
            Ok(match name {
                Some(n) => dir.join(n),
                None => dir,
            })
        };
        match kind {
            tar::EntryType::Directory => {
                if name.is_none() {
                    match fs::symlink_metadata(&stage) {
                        Ok(md) if md.is_dir() => {}
                        Ok(_) => return Err(unsafe_entry(&shown, "duplicate top-level entry")),
                        Err(_) => fs::create_dir(&stage)
                            .map_err(|e| E::io(format!("mkdir {}", stage.display()), e))?,
                    }
                    dir_modes.push((stage.clone(), mode));
                } else {
                    let mut all = parent_rel.clone();
                    all.extend(name.clone());
                    let p = ensure_dirs(stage_root, &in_stage(&all), &shown)?;
                    dir_modes.push((p, mode));
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let p = target_path(&name)?;
                if !seen_files.insert(comps.clone()) {
                    return Err(unsafe_entry(&shown, "duplicate entry"));
                }
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&p)
                    .map_err(|e| E::io(format!("create {}", p.display()), e))?;
                std::io::copy(&mut entry, &mut f)
                    .map_err(|e| E::io(format!("write {}", p.display()), e))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(mode & 0o777))
                    .map_err(|e| E::io(format!("chmod {}", p.display()), e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| E::Archive(format!("bad link target of {shown}: {e}")))?
                    .ok_or_else(|| unsafe_entry(&shown, "symlink without a target"))?
                    .into_owned();
                let Some(n) = name.clone() else {
                    return Err(unsafe_entry(&shown, "the copied path itself is a symlink"));
                };
                if lexical_target(&parent_rel, &target).is_none() {
                    return Err(unsafe_entry(
                        &shown,
                        format!(
                            "symlink to {} leads outside the destination",
                            target.display()
                        ),
                    ));
                }
                let p = target_path(&Some(n))?;
                symlink(&target, &p).map_err(|e| E::io(format!("symlink {}", p.display()), e))?;
                links.push(comps.clone());
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&shown, "hard link without a target"))?
                    .into_owned();
                let mut tcomps = entry_components(&target)?;
                if tcomps.remove(0) != *top.as_deref().unwrap_or_default() {
                    return Err(unsafe_entry(&shown, "hard link to outside the archive"));
                }
                if name.is_none() {
                    return Err(unsafe_entry(
                        &shown,
                        "the copied path itself is a hard link",
                    ));
                }
                hardlinks.push((comps.clone(), tcomps, shown.clone()));
            }
            other => {
                tracing::warn!(entry = %shown, kind = ?other, "skipping special archive entry");
            }
        }
    }
    if top.is_none() {
        return Err(E::Archive("empty archive".into()));
    }
    // Hard links: only to regular files extracted above, never through links.
    for (at, to, shown) in hardlinks {
        let (tname, tparent) = to
            .split_last()
            .ok_or_else(|| unsafe_entry(&shown, "hard link to the top-level entry"))?;
        let mut tp = vec!["x".to_string()];
        tp.extend(tparent.iter().cloned());
        let src = ensure_dirs(stage_root, &tp, &shown)?.join(tname);
        match fs::symlink_metadata(&src) {
            Ok(md) if md.file_type().is_file() => {}
            _ => {
                return Err(unsafe_entry(
                    &shown,
                    "hard link target is not a file in the archive",
                ))
            }
        }
        let (aname, aparent) = at
            .split_last()
            .ok_or_else(|| unsafe_entry(&shown, "hard link without a name"))?;
        let mut ap = vec!["x".to_string()];
        ap.extend(aparent.iter().cloned());
        let dst = ensure_dirs(stage_root, &ap, &shown)?.join(aname);
        fs::hard_link(&src, &dst).map_err(|e| E::io(format!("link {}", dst.display()), e))?;
    }
    // Symlinks: with every link in place, each must still resolve inside.
    if !links.is_empty() {
        let root = stage
            .canonicalize()
            .map_err(|e| E::io(format!("resolve {}", stage.display()), e))?;
        for l in links {
            let rel = l.join("/");
            if let Err(why) = resolve_inside(&root, &l) {
                return Err(unsafe_entry(&rel, why));
            }
        }
    }
    // Directory modes last (a read-only directory would block its children),
    // deepest first; keep them writable and searchable by the owner.
    dir_modes.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (p, mode) in dir_modes {
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode((mode | 0o700) & 0o1777));
    }
    Ok(stage)
}

/// Extracts an archive holding one top-level entry (a file or a directory)
/// to `dest`, replacing what is there. Nothing is left behind on failure.
pub(crate) fn extract(archive: impl Read, dest: &Path) -> Result<(), E> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if dest.file_name().is_none() {
        return Err(E::Archive(format!(
            "destination {} has no file name",
            dest.display()
        )));
    }
    fs::create_dir_all(&parent).map_err(|e| E::io(format!("mkdir {}", parent.display()), e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".runbox-copy-")
        .tempdir_in(&parent)
        .map_err(|e| {
            E::io(
                format!("create a staging directory in {}", parent.display()),
                e,
            )
        })?;
    let staged = extract_staged(archive, tmp.path())?;
    if let Ok(md) = fs::symlink_metadata(dest) {
        if md.is_dir() || staged.is_dir() {
            // rename(2) cannot replace a non-empty directory: move it aside
            // into the staging directory, which is removed on drop.
            let aside = tmp.path().join("old");
            fs::rename(dest, &aside)
                .map_err(|e| E::io(format!("replace {}", dest.display()), e))?;
        }
    }
    fs::rename(&staged, dest).map_err(|e| E::io(format!("rename into {}", dest.display()), e))?;
    Ok(())
}

/// Test hook: builds the tar archive the backend would upload for `host`,
/// its top entry named `name`.
pub fn build_archive_for_tests(host: &Path, name: &str) -> Result<Vec<u8>, E> {
    build(host, name)
}

/// Test hook: extracts an archive from a container under `dest` with the
/// backend's hostile-archive checks (entries with `..`, absolute paths, or
/// links out of `dest` are rejected; nothing is left half-written).
pub fn extract_archive_for_tests(archive: &[u8], dest: &Path) -> Result<(), E> {
    extract(archive, dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
}

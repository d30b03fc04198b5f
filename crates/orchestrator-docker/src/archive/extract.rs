//! Unpacking an archive that comes from a container, which must be treated
//! as hostile: it is written by our own loop over the entries (never
//! `unpack`), every entry must stay under the archive's single top-level
//! name, `..` and absolute names are rejected, nothing is ever written
//! through a symlink, symlinks and hard links that lead outside the
//! destination are rejected, and everything lands in a staging directory
//! next to the destination that is renamed into place only when the whole
//! archive was extracted.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use orchestrator_core::SandboxPath;

use crate::error::DockerOrchestratorError as E;

fn unsafe_entry(entry: &str, reason: impl Into<String>) -> E {
    E::UnsafeArchive {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// Splits an archive entry name into normal components, rejecting absolute
/// names, `..`, NUL and non-UTF-8 oddities that cannot be checked.
pub(super) fn entry_components(raw: &[u8]) -> Result<Vec<String>, E> {
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
    let rel = SandboxPath::new(rel.join("/")).map_err(|e| e.to_string())?;
    orchestrator_core::paths::resolve_in_root(root, &rel)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Extracts `archive` into a fresh staging directory under `stage_root`
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

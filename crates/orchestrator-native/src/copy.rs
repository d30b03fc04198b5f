//! Copying files and directories into and out of a workspace.
//!
//! Every copy is staged under a temporary name next to its destination and
//! renamed into place at the end, so a failure (a full disk, an escaping
//! symlink found half-way) leaves nothing half-written. Symlinks are copied
//! as symlinks, never followed; copying out refuses links that lead outside
//! the sandbox. FIFOs, sockets and devices are skipped (opening a FIFO would
//! block).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use orchestrator_core::{paths, Error, Result, SandboxPath, WorkspaceId};

use crate::error::NativeOrchestratorError;
use crate::sync::maybe_blocking;
use crate::NativeOrchestrator;

impl NativeOrchestrator {
    /// `copy_to`: host path `p` to `to` in workspace `id`.
    pub(crate) async fn import(&self, id: &WorkspaceId, p: &Path, to: &SandboxPath) -> Result<()> {
        let ws = self.get_existing(id)?;
        let dest = paths::resolve_in_root(&ws.dir, to)?;
        let src = p.to_path_buf();
        let (md, quick) = small_file(&src);
        maybe_blocking(quick, move || copy_in(&src, &dest, &ws.dir, md)).await
    }

    /// `copy_from`: `p` in workspace `id` to host path `to`.
    pub(crate) async fn export(&self, id: &WorkspaceId, p: &SandboxPath, to: &Path) -> Result<()> {
        let ws = self.get_existing(id)?;
        let src = paths::resolve_in_root(&ws.dir, p)?;
        let dest = paths::host_copy_target(to, p.file_name())?;
        let (md, quick) = small_file(&src);
        maybe_blocking(quick, move || copy_out(&src, &dest, &ws.dir, md)).await
    }
}

/// The lstat of a copy's source, and whether it is a regular file small
/// enough to copy inline.
fn small_file(p: &Path) -> (Option<std::fs::Metadata>, bool) {
    let md = std::fs::symlink_metadata(p).ok();
    let small = md
        .as_ref()
        .is_some_and(|m| m.is_file() && m.len() <= SMALL_FILE_MAX);
    (md, small)
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        return Error::NotFound {
            what: "path",
            id: path.display().to_string(),
        };
    }
    NativeOrchestratorError::io(op, path, e).into()
}

fn staging_name(dest: &Path) -> Result<PathBuf> {
    let parent = dest
        .parent()
        .ok_or_else(|| Error::invalid("destination has no parent"))?;
    let name = dest.file_name().ok_or_else(|| {
        Error::invalid(format!("destination {} has no file name", dest.display()))
    })?;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(parent.join(format!(
        ".{}.runbox-tmp-{}-{n}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn remove_any(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// How a symlink met during a copy is treated.
#[derive(Clone, Copy)]
enum Links<'a> {
    /// Copy every link verbatim (host → sandbox: the caller's own files).
    Verbatim,
    /// Copy only links that stay inside this sandbox root; `rel` of each
    /// entry is checked with [`paths::resolve_in_root`].
    InsideRoot(&'a Path),
}

fn copy_tree(src: &Path, dst: &Path, links: Links<'_>) -> Result<()> {
    let md = std::fs::symlink_metadata(src).map_err(|e| io("stat", src, e))?;
    let ft = md.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| io("readlink", src, e))?;
        if let Links::InsideRoot(root) = links {
            let rel = src
                .strip_prefix(root)
                .map_err(|_| Error::invalid("source outside the workspace"))?;
            paths::resolve_in_root(root, &SandboxPath::new(rel.to_string_lossy())?)?;
        }
        symlink(&target, dst).map_err(|e| io("symlink", dst, e))?;
    } else if ft.is_dir() {
        std::fs::create_dir(dst).map_err(|e| io("mkdir", dst, e))?;
        let mut entries: Vec<_> = std::fs::read_dir(src)
            .map_err(|e| io("read_dir", src, e))?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| io("read_dir", src, e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            copy_tree(&e.path(), &dst.join(e.file_name()), links)?;
        }
        let _ = std::fs::set_permissions(dst, md.permissions());
    } else if ft.is_file() {
        std::fs::copy(src, dst).map_err(|e| io("copy", src, e))?;
    } else {
        tracing::warn!(path = %src.display(), "skipping special file");
    }
    Ok(())
}

/// Copies `src` to `dest` (replacing it), staged and renamed into place.
/// `md`: `src`'s lstat when the caller already has it.
fn staged_copy(
    src: &Path,
    dest: &Path,
    links: Links<'_>,
    md: Option<std::fs::Metadata>,
) -> Result<()> {
    let md = match md {
        Some(md) => md,
        None => std::fs::symlink_metadata(src).map_err(|e| io("stat", src, e))?,
    };
    if md.is_file() && md.len() <= SMALL_FILE_MAX {
        match copy_small_file(src, dest, &md, matches!(links, Links::Verbatim))? {
            Small::Done => return Ok(()),
            Small::Fallback => {}
        }
    }
    if let Some(parent) = dest.parent().filter(|p| !p.is_dir()) {
        std::fs::create_dir_all(parent).map_err(|e| io("mkdir", parent, e))?;
    }
    let stage = staging_name(dest)?;
    if let Err(e) = copy_tree(src, &stage, links) {
        remove_any(&stage);
        return Err(e);
    }
    place(&stage, dest)
}

/// Renames a finished stage onto `dest`, moving a directory that is in the
/// way aside first (rename(2) cannot replace a non-empty directory).
fn place(stage: &Path, dest: &Path) -> Result<()> {
    if let Ok(md) = std::fs::symlink_metadata(dest) {
        if md.is_dir() {
            let old = staging_name(dest)?;
            if let Err(e) = std::fs::rename(dest, &old) {
                remove_any(stage);
                return Err(io("rename", dest, e));
            }
            remove_any(&old);
        }
    }
    std::fs::rename(stage, dest).map_err(|e| {
        remove_any(stage);
        io("rename", dest, e)
    })
}

/// Regular files up to this size are copied through memory by
/// [`copy_small_file`].
const SMALL_FILE_MAX: u64 = 256 * 1024;

enum Small {
    Done,
    /// Not a plain small file any more (swapped for a link or a directory
    /// since it was looked at): take the general path.
    Fallback,
}

/// The common case, a small regular file, in about half the syscalls of
/// the general path: one read, one exclusive create of the stage, one
/// write, one rename (no separate checks of the parent and the
/// destination; their failures are handled when they happen).
///
/// `direct`: when `dest` does not exist yet, create it in place instead of
/// staging it (into a sandbox: nothing there reads it before the copy
/// returns, a failed write removes the file, and a crash loses the whole
/// workspace anyway). The host side is always staged.
fn copy_small_file(src: &Path, dest: &Path, md: &std::fs::Metadata, direct: bool) -> Result<Small> {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // O_NOFOLLOW: a link swapped in since the lstat is not followed.
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(src)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(Small::Fallback),
        Err(e) => return Err(io("open", src, e)),
    };
    // A FIFO or device swapped in since the lstat is left to the general
    // path (which skips special files).
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(Small::Fallback);
    }
    // One read of the size the lstat gave plus one byte: a regular file
    // yields all of it at once, and a short count is the end of the file
    // (a file that grew meanwhile fills the extra byte and is read on).
    let len = md.len() as usize;
    let mut data = vec![0u8; len + 1];
    let n = file.read(&mut data).map_err(|e| io("read", src, e))?;
    data.truncate(n);
    if n > len {
        (&mut file)
            .take(SMALL_FILE_MAX + 1 - n as u64)
            .read_to_end(&mut data)
            .map_err(|e| io("read", src, e))?;
    }
    if data.len() as u64 > SMALL_FILE_MAX {
        // It grew since the lstat: the general path streams it.
        return Ok(Small::Fallback);
    }
    let mode = md.permissions().mode() & 0o7777;
    let create = |path: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
    };
    let create_with_parents = |path: &Path| match create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest.parent().unwrap_or(Path::new("/")))?;
            create(path)
        }
        r => r,
    };
    let in_place = if direct {
        match create_with_parents(dest) {
            Ok(f) => Some(f),
            // Something is there already: replace it atomically, staged.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
            Err(e) => return Err(io("create", dest, e)),
        }
    } else {
        None
    };
    let stage = if in_place.is_some() {
        dest.to_path_buf()
    } else {
        staging_name(dest)?
    };
    let mut out = match in_place {
        Some(f) => f,
        None => create_with_parents(&stage).map_err(|e| io("create", &stage, e))?,
    };
    let written = out.write_all(&data).and_then(|()| {
        // The umask applied at create; the copy gets the source's mode.
        out.set_permissions(std::fs::Permissions::from_mode(mode))
    });
    drop(out);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&stage);
        return Err(io("write", &stage, e));
    }
    if stage == dest {
        return Ok(Small::Done);
    }
    match std::fs::rename(&stage, dest) {
        Ok(()) => Ok(Small::Done),
        // A directory is in the way: move it aside first.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR | libc::ENOTEMPTY)) => {
            place(&stage, dest).map(|()| Small::Done)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&stage);
            Err(io("rename", dest, e))
        }
    }
}

/// Host `src` → resolved sandbox `dest` (already checked against `root`).
/// `md`: `src`'s lstat when the caller already has it.
fn copy_in(src: &Path, dest: &Path, root: &Path, md: Option<std::fs::Metadata>) -> Result<()> {
    if dest == root {
        return Err(Error::invalid(
            "cannot replace the workspace root; name a path inside it",
        ));
    }
    staged_copy(src, dest, Links::Verbatim, md)
}

/// Resolved sandbox `src` → host `dest`; links leading out of `root` fail.
/// `md`: `src`'s lstat when the caller already has it.
fn copy_out(src: &Path, dest: &Path, root: &Path, md: Option<std::fs::Metadata>) -> Result<()> {
    staged_copy(src, dest, Links::InsideRoot(root), md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_copy_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let src = root.join("sb");
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("a/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", src.join("z-escape")).unwrap();
        let host = tempfile::tempdir().unwrap();
        let dest = host.path().join("out");
        let e = copy_out(&src, &dest, &root, None).unwrap_err();
        assert!(matches!(e, Error::PathEscapesSandbox { .. }), "{e:?}");
        assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
    }

    #[test]
    fn replaces_existing_directory() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("new"), b"n").unwrap();
        std::fs::create_dir_all(root.join("dst")).unwrap();
        std::fs::write(root.join("dst/old"), b"o").unwrap();
        copy_in(src.path(), &root.join("dst"), &root, None).unwrap();
        assert!(root.join("dst/new").exists());
        assert!(!root.join("dst/old").exists());
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
    }

    #[test]
    fn small_file_keeps_bytes_and_mode_and_replaces_a_directory() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let host = tempfile::tempdir().unwrap();
        let src = host.path().join("tool");
        std::fs::write(&src, b"#!/bin/sh\necho hi\n\0\xff").unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o751)).unwrap();
        // Into a missing parent directory.
        copy_in(&src, &root.join("bin/tool"), &root, None).unwrap();
        let got = root.join("bin/tool");
        assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&src).unwrap());
        let mode = std::fs::metadata(&got).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o751);
        // Over a non-empty directory.
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        copy_in(&src, &root.join("d"), &root, None).unwrap();
        assert!(std::fs::metadata(root.join("d")).unwrap().is_file());
        // Over an existing file, and nothing staged is left behind.
        std::fs::write(&src, b"v2").unwrap();
        copy_in(&src, &got, &root, None).unwrap();
        assert_eq!(std::fs::read(&got).unwrap(), b"v2");
        let names: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .chain(std::fs::read_dir(root.join("bin")).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains("runbox-tmp")),
            "staging left: {names:?}"
        );
    }

    #[test]
    fn small_file_copy_out_of_a_missing_source_is_not_found() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let host = tempfile::tempdir().unwrap();
        let e = copy_out(&root.join("nope"), &host.path().join("x"), &root, None).unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
        assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
    }
}

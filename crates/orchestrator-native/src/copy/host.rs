//! The host side of a copy out: staged writes by path (the caller's own
//! directory, which nothing in the sandbox can reach).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use orchestrator_core::{Error, Result};

use super::io;

/// The stage path for a copy onto `dest`, beside it.
pub(super) fn staging_name(dest: &Path) -> Result<PathBuf> {
    let parent = dest
        .parent()
        .ok_or_else(|| Error::invalid("destination has no parent"))?;
    let name = dest.file_name().ok_or_else(|| {
        Error::invalid(format!("destination {} has no file name", dest.display()))
    })?;
    Ok(parent.join(super::stage_name(name)))
}

/// Removes `p` (a directory with everything in it), ignoring errors.
pub(super) fn remove_any(p: &Path) {
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

/// Creates the parent of `dest` when it is missing.
pub(super) fn create_parent(dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent().filter(|p| !p.is_dir()) {
        std::fs::create_dir_all(parent).map_err(|e| io("mkdir", parent, e))?;
    }
    Ok(())
}

/// Renames a finished stage onto `dest`, moving a directory that is in the
/// way aside first (rename(2) cannot replace a non-empty directory).
pub(super) fn place(stage: &Path, dest: &Path) -> Result<()> {
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

/// Writes `data` with permission bits `mode` to `dest`, staged beside it
/// (parents created when missing) and renamed into place.
pub(super) fn write_small(dest: &Path, data: &[u8], mode: u32) -> Result<()> {
    let stage = staging_name(dest)?;
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&stage)
    };
    let mut out = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_parent(dest)?;
            create()
        }
        r => r,
    }
    .map_err(|e| io("create", &stage, e))?;
    let written = out.write_all(data).and_then(|()| {
        // The umask applied at create; the copy gets the source's mode.
        out.set_permissions(std::fs::Permissions::from_mode(mode))
    });
    drop(out);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&stage);
        return Err(io("write", &stage, e));
    }
    match std::fs::rename(&stage, dest) {
        Ok(()) => Ok(()),
        // A directory is in the way: move it aside first.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR | libc::ENOTEMPTY)) => {
            place(&stage, dest)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&stage);
            Err(io("rename", dest, e))
        }
    }
}

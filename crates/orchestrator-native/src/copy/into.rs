//! Copying into a workspace: a host source read by path, written by
//! descriptors beneath the workspace descriptor.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use orchestrator_core::{Result, SandboxPath};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::beneath::{self, Dest, Root};
use super::io;

/// Host `src` → sandbox `to`, staged and renamed into place.
/// `md`: `src`'s lstat when the caller already has it.
pub(super) fn copy_in(
    src: &Path,
    root: &Root,
    to: &SandboxPath,
    md: Option<std::fs::Metadata>,
) -> Result<()> {
    let md = match md {
        Some(md) => md,
        None => std::fs::symlink_metadata(src).map_err(|e| io("stat", src, e))?,
    };
    let dest = root.dest(to)?;
    let shown = root.host_path(to.as_str());
    let owner = root.owner;
    if md.is_file()
        && md.len() <= super::SMALL_FILE_MAX
        && copy_small(src, &md, &dest, &shown, owner)?
    {
        return Ok(());
    }
    let dir = dest.parent.as_fd();
    let stage = super::stage_name(&dest.name);
    if let Err(e) = tree(src, dir, &stage, &shown, owner) {
        beneath::remove_at(dir, &stage);
        return Err(e);
    }
    beneath::place_at(dir, &stage, &dest.name, &shown)
}

/// The small regular file fast path: one read, one exclusive create, one
/// write (and one rename when something is in the way). `Ok(false)`: the
/// file is no longer small and regular; take the general path.
///
/// When nothing is at the destination yet the file is created in place
/// instead of staged: nothing in the sandbox reads it before the copy
/// returns, a failed write removes it, and a crash loses the whole
/// workspace anyway.
fn copy_small(
    src: &Path,
    md: &std::fs::Metadata,
    dest: &Dest,
    shown: &Path,
    owner: Option<(u32, u32)>,
) -> Result<bool> {
    // O_NOFOLLOW: a link swapped in since the lstat is not followed;
    // O_NONBLOCK: nor does a FIFO swapped in block.
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(src)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(false),
        Err(e) => return Err(io("open", src, e)),
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(false);
    }
    let Some(data) = super::read_small(&mut file, md.len(), src)? else {
        return Ok(false);
    };
    let mode = md.permissions().mode() & 0o7777;
    let parent = dest.parent.as_fd();
    if dest.existing.is_none() {
        match write_new(parent, &dest.name, &data, mode, owner) {
            Err(e) if e == Errno::EXIST => {}
            r => return r.map(|()| true).map_err(|e| io("create", shown, e.into())),
        }
    }
    let stage = super::stage_name(&dest.name);
    write_new(parent, &stage, &data, mode, owner).map_err(|e| io("create", shown, e.into()))?;
    match rustix::fs::renameat(parent, &stage, parent, &dest.name) {
        Ok(()) => Ok(true),
        // A directory is in the way: move it aside first.
        Err(Errno::ISDIR | Errno::NOTEMPTY) => {
            beneath::place_at(parent, &stage, &dest.name, shown).map(|()| true)
        }
        Err(e) => {
            beneath::remove_at(parent, &stage);
            Err(io("rename", shown, e.into()))
        }
    }
}

/// Creates `name` in `dir` exclusively (never through a link) with `data`,
/// permission bits `mode` and `owner`; a failed write removes it.
fn write_new(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::result::Result<(), Errno> {
    let mut out = create(dir, name, mode)?;
    let written = out
        .write_all(data)
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
        .and_then(|()| beneath::give_at(dir, name, owner))
        .and_then(|()| rustix::fs::fchmod(&out, beneath::mode(mode)));
    if written.is_err() {
        drop(out);
        let _ = rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty());
    }
    written
}

/// Creates `name` in `dir` for writing, exclusively, never through a link.
fn create(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    mode: u32,
) -> std::result::Result<std::fs::File, Errno> {
    beneath::open_entry(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
        beneath::mode(mode),
    )
    .map(std::fs::File::from)
}

/// Copies host `src` to `name` in sandbox directory `dir`, each entry given
/// to `owner`; symlinks are copied verbatim (they are the caller's own).
fn tree(
    src: &Path,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let md = std::fs::symlink_metadata(src).map_err(|e| io("stat", src, e))?;
    let ft = md.file_type();
    let mode = md.permissions().mode() & 0o7777;
    let err = |op, e: Errno| io(op, shown, e.into());
    if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| io("readlink", src, e))?;
        rustix::fs::symlinkat(target.as_os_str().as_bytes(), dir, name.as_bytes())
            .map_err(|e| err("symlink", e))?;
        beneath::give_at(dir, name, owner).map_err(|e| err("chown", e))?;
    } else if ft.is_dir() {
        rustix::fs::mkdirat(dir, name.as_bytes(), Mode::from_bits_truncate(0o700))
            .map_err(|e| err("mkdir", e))?;
        beneath::give_at(dir, name, owner).map_err(|e| err("chown", e))?;
        let sub = beneath::open_entry(dir, name, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| err("open", e))?;
        let mut entries: Vec<_> = std::fs::read_dir(src)
            .map_err(|e| io("read_dir", src, e))?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| io("read_dir", src, e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            tree(
                &e.path(),
                sub.as_fd(),
                &e.file_name(),
                &shown.join(e.file_name()),
                owner,
            )?;
        }
        let _ = rustix::fs::fchmod(&sub, beneath::mode(mode));
    } else if ft.is_file() {
        let mut from = std::fs::File::open(src).map_err(|e| io("open", src, e))?;
        let mut out = create(dir, name, mode).map_err(|e| err("create", e))?;
        beneath::give_at(dir, name, owner).map_err(|e| err("chown", e))?;
        std::io::copy(&mut from, &mut out).map_err(|e| io("copy", src, e))?;
        out.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("chmod", shown, e))?;
    } else {
        tracing::warn!(path = %src.display(), "skipping special file");
    }
    Ok(())
}

//! Copying files and directories into and out of a workspace, every
//! sandbox path resolved beneath a descriptor of the workspace directory.
//!
//! A process in the workspace can rename and replace anything there while a
//! copy runs, so no sandbox path is ever checked as a string and then used:
//! the workspace directory is opened once per copy, every sandbox path is
//! resolved beneath that descriptor by the kernel ([`beneath`]: openat2 with
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`), and every
//! further step is relative to a descriptor (mkdirat, openat with
//! `O_NOFOLLOW`, renameat). A symlink or a mount point that leads out is
//! [`Error::PathEscapesSandbox`]. The host side is the caller's own and is
//! handled by path ([`host`]).
//!
//! Every copy is staged under a temporary name next to its destination and
//! renamed into place at the end, so a failure (a full disk, an escaping
//! symlink found half-way) leaves nothing half-written. Symlinks inside a
//! copied directory are copied as symlinks, never followed; copying out
//! refuses links that lead outside the sandbox. A FIFO, socket or device
//! named as the source of `copy_from` is refused ([`beneath::Root::source`]);
//! inside a copied directory they are skipped, never opened.

mod beneath;
mod host;
mod into;
mod out;
#[cfg(test)]
mod tests;

use std::io::Read as _;
use std::path::Path;

use orchestrator_core::{paths, Error, Result, SandboxPath, WorkspaceId};

use crate::error::NativeOrchestratorError;
use crate::sync::maybe_blocking;
use crate::NativeOrchestrator;

impl NativeOrchestrator {
    /// `copy_to`: host path `p` to `to` in workspace `id`.
    pub(crate) async fn import(&self, id: &WorkspaceId, p: &Path, to: &SandboxPath) -> Result<()> {
        let ws = self.get_existing(id)?;
        // As root the sandbox user is not the caller: it gets what is
        // copied in (as non-root it is the caller already).
        let owner = ws.sandbox_ids.filter(|_| crate::isolation::is_root());
        let root = beneath::Root::open(&ws.dir)?.owned_by(owner);
        let src = p.to_path_buf();
        let to = to.clone();
        let md = std::fs::symlink_metadata(&src).ok();
        let quick = md
            .as_ref()
            .is_some_and(|m| m.is_file() && m.len() <= SMALL_FILE_MAX);
        maybe_blocking(quick, move || into::copy_in(&src, &root, &to, md)).await
    }

    /// `copy_from`: `p` in workspace `id` to host path `to`.
    pub(crate) async fn export(&self, id: &WorkspaceId, p: &SandboxPath, to: &Path) -> Result<()> {
        let ws = self.get_existing(id)?;
        let root = beneath::Root::open(&ws.dir)?;
        let src = root.source(p)?;
        let dest = paths::host_copy_target(to, p.file_name())?;
        let quick = src.is_small_file();
        maybe_blocking(quick, move || out::copy_out(&root, src, &dest)).await
    }
}

/// Regular files up to this size are copied through memory, in about half
/// the syscalls of the general path.
const SMALL_FILE_MAX: u64 = 256 * 1024;

fn io(op: &'static str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        return Error::NotFound {
            what: "path",
            id: path.display().to_string(),
        };
    }
    NativeOrchestratorError::io(op, path, e).into()
}

/// The name a copy onto `name` is staged under, in the same directory.
fn stage_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        ".{}.runbox-tmp-{}-{n}",
        name.to_string_lossy(),
        std::process::id()
    )
    .into()
}

/// Reads a regular file whose lstat gave `len` bytes, or `None` when it has
/// grown past [`SMALL_FILE_MAX`] since (the general path streams it).
///
/// One read of `len` plus one byte: a regular file yields all of it at once,
/// and a short count is the end of the file (a file that grew meanwhile
/// fills the extra byte and is read on).
fn read_small(file: &mut std::fs::File, len: u64, path: &Path) -> Result<Option<Vec<u8>>> {
    let mut data = vec![0u8; len as usize + 1];
    let n = file.read(&mut data).map_err(|e| io("read", path, e))?;
    data.truncate(n);
    if n as u64 > len {
        file.take(SMALL_FILE_MAX + 1 - n as u64)
            .read_to_end(&mut data)
            .map_err(|e| io("read", path, e))?;
    }
    Ok((data.len() as u64 <= SMALL_FILE_MAX).then_some(data))
}

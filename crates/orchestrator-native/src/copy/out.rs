//! Copying out of a workspace: a source opened beneath the workspace
//! descriptor, walked by descriptors, written to the host by path.

use std::ffi::{OsStr, OsString};
use std::io::Seek as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path};

use orchestrator_core::{Error, Result};
use rustix::fs::{AtFlags, FileType, OFlags};
use rustix::io::Errno;

use super::beneath::{self, Root, Source, SourceKind};
use super::{host, io};

/// Opened sandbox `src` → host `dest` (already decided by
/// `paths::host_copy_target`), staged and renamed into place.
pub(super) fn copy_out(root: &Root, src: Source, dest: &Path) -> Result<()> {
    let shown = root.host_path(src.path.as_str());
    let Source { path, kind, mode } = src;
    match kind {
        SourceKind::File(mut file, len) => {
            if len <= super::SMALL_FILE_MAX {
                if let Some(data) = super::read_small(&mut file, len, &shown)? {
                    return host::write_small(dest, &data, mode);
                }
                file.rewind().map_err(|e| io("seek", &shown, e))?;
            }
            staged(dest, |stage| copy_file(&mut file, mode, stage, &shown))
        }
        SourceKind::Dir(fd) => {
            let walk = Walk {
                root,
                top: path.as_str(),
            };
            staged(dest, |stage| walk.dir(fd, mode, Path::new(""), stage))
        }
    }
}

/// Runs `copy` onto a stage beside `dest` and renames the stage into place;
/// a failed copy leaves nothing.
fn staged(dest: &Path, copy: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    host::create_parent(dest)?;
    let stage = host::staging_name(dest)?;
    if let Err(e) = copy(&stage) {
        host::remove_any(&stage);
        return Err(e);
    }
    host::place(&stage, dest)
}

fn copy_file(from: &mut std::fs::File, mode: u32, to: &Path, shown: &Path) -> Result<()> {
    let mut out = std::fs::File::create_new(to).map_err(|e| io("create", to, e))?;
    std::io::copy(from, &mut out).map_err(|e| io("copy", shown, e))?;
    out.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("chmod", to, e))
}

/// A directory walk under sandbox path `top`.
struct Walk<'a> {
    root: &'a Root,
    top: &'a str,
}

impl Walk<'_> {
    /// The sandbox path of `rel` (relative to the copied directory).
    fn sandbox_path(&self, rel: &Path) -> String {
        let rel = rel.to_string_lossy();
        match (self.top.is_empty(), rel.is_empty()) {
            (_, true) => self.top.to_string(),
            (true, false) => rel.into_owned(),
            (false, false) => format!("{}/{rel}", self.top),
        }
    }

    /// Copies open directory `fd` (at `rel` under the copied one) to `to`.
    fn dir(&self, fd: OwnedFd, mode: u32, rel: &Path, to: &Path) -> Result<()> {
        let shown = self.root.host_path(&self.sandbox_path(rel));
        std::fs::create_dir(to).map_err(|e| io("mkdir", to, e))?;
        let mut names: Vec<OsString> = rustix::fs::Dir::read_from(&fd)
            .map_err(|e| io("read_dir", &shown, e.into()))?
            .map(|e| {
                e.map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
                    .map_err(|e| io("read_dir", &shown, e.into()))
            })
            .collect::<Result<_>>()?;
        names.retain(|n| n != "." && n != "..");
        names.sort();
        for name in names {
            self.entry(fd.as_fd(), &name, &rel.join(&name), &to.join(&name))?;
        }
        let _ = std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode));
        Ok(())
    }

    /// Copies entry `name` of open directory `dir` (at `rel`) to `to`.
    fn entry(&self, dir: BorrowedFd<'_>, name: &OsStr, rel: &Path, to: &Path) -> Result<()> {
        let sandbox = self.sandbox_path(rel);
        let shown = self.root.host_path(&sandbox);
        let err = |op, e: Errno| io(op, &shown, e.into());
        let st =
            rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| err("stat", e))?;
        if !self.root.same_dev(&st) {
            return Err(mount_point(&sandbox));
        }
        let flags = match beneath::file_type(&st) {
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| err("readlink", e))?;
                let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                self.check_link(rel, target, &sandbox)?;
                return std::os::unix::fs::symlink(target, to).map_err(|e| io("symlink", to, e));
            }
            FileType::Directory => OFlags::RDONLY | OFlags::DIRECTORY,
            FileType::RegularFile => OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            _ => {
                tracing::warn!(path = %shown.display(), "skipping special file");
                return Ok(());
            }
        };
        let fd = match beneath::open_entry(dir, name, flags, rustix::fs::Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::XDEV) => return Err(mount_point(&sandbox)),
            Err(e) => return Err(err("open", e)),
        };
        let now = rustix::fs::fstat(&fd).map_err(|e| err("stat", e))?;
        if !self.root.same_dev(&now) {
            return Err(mount_point(&sandbox));
        }
        if beneath::file_type(&now) != beneath::file_type(&st) {
            return Err(Error::invalid(format!(
                "{sandbox} changed type while it was being copied"
            )));
        }
        let mode = beneath::mode_bits(&now);
        if beneath::file_type(&now) == FileType::Directory {
            return self.dir(fd, mode, rel, to);
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(|e| err("fcntl", e))?;
        copy_file(&mut std::fs::File::from(fd), mode, to, &shown)
    }

    /// A symlink at `rel` with `target` is copied when it stays inside the
    /// copied directory (checked on the text that is copied, so nothing can
    /// swap it in between) or, failing that, when the kernel resolves it
    /// beneath the workspace to something that exists. Absolute targets
    /// lead out (the sandbox's paths mean nothing on the host).
    fn check_link(&self, rel: &Path, target: &Path, sandbox: &str) -> Result<()> {
        let out = || escape_link(sandbox);
        if target.is_absolute() {
            return Err(out());
        }
        let mut depth = rel.components().count() as isize - 1;
        let inside_tree = target.components().all(|c| {
            depth += match c {
                Component::ParentDir => -1,
                Component::Normal(_) => 1,
                _ => 0,
            };
            depth >= 0
        });
        if inside_tree {
            return Ok(());
        }
        match self.root.open_beneath(sandbox, OFlags::PATH) {
            Ok(_) => Ok(()),
            Err(Errno::NOENT | Errno::XDEV | Errno::LOOP | Errno::NOTDIR) => Err(out()),
            Err(e) => Err(self.root.lookup_error("open", sandbox, e)),
        }
    }
}

fn escape_link(sandbox: &str) -> Error {
    beneath::escape(sandbox, "a symlink leads outside the sandbox")
}

fn mount_point(sandbox: &str) -> Error {
    beneath::escape(
        sandbox,
        "a mount point inside the workspace is not crossed by copies",
    )
}

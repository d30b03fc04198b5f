//! Resolving sandbox paths beneath a descriptor of the workspace directory,
//! so a process in the workspace cannot redirect a copy out of it by
//! swapping a directory for a symlink while the copy runs.
//!
//! The kernel resolves each path (openat2) with `RESOLVE_BENEATH` (a symlink
//! or `..` that leads above the workspace fails, absolute link targets
//! included: BENEATH rather than IN_ROOT, because a link that leads out is
//! an error for runbox, not something to reinterpret), `RESOLVE_NO_MAGICLINKS`
//! (no `/proc/*/fd` jumps) and `RESOLVE_NO_XDEV` (a mount point inside the
//! workspace is not crossed). What it returns is a descriptor; nothing is
//! looked up by that path again.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use orchestrator_core::paths::MAX_SYMLINK_HOPS;
use orchestrator_core::{Error, Result, SandboxPath};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

use crate::error::NativeOrchestratorError;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// How often a lookup is retried when openat2 answers EAGAIN (a rename
/// elsewhere on the file system raced the `..` check).
const EAGAIN_RETRIES: usize = 32;

/// The workspace directory, open as an `O_PATH` descriptor.
pub(super) struct Root {
    fd: OwnedFd,
    dev: u64,
    ino: u64,
    /// For messages only.
    dir: PathBuf,
    /// Who owns what a copy creates, when not the caller: the sandbox user
    /// of an isolated workspace, as root (it must be able to change and
    /// remove what was copied in).
    pub owner: Option<(u32, u32)>,
}

/// A copy's destination inside the workspace: a name in an open directory.
pub(super) struct Dest {
    /// The directory the destination is (to be) created in.
    pub parent: OwnedFd,
    /// Its name there; never `.` or `..`.
    pub name: OsString,
    /// What is there now (not followed), if anything.
    pub existing: Option<Stat>,
}

/// The source of a `copy_from`, opened beneath the root.
pub(super) struct Source {
    /// The sandbox path, for messages and for checking links under it.
    pub path: SandboxPath,
    /// The regular file or directory.
    pub kind: SourceKind,
    /// Its permission bits.
    pub mode: u32,
}

/// What a [`Source`] is.
pub(super) enum SourceKind {
    /// A regular file of this many bytes, open for reading (blocking).
    File(std::fs::File, u64),
    /// A directory, open for reading its entries.
    Dir(OwnedFd),
}

impl Source {
    /// A regular file small enough to copy inline.
    pub fn is_small_file(&self) -> bool {
        matches!(self.kind, SourceKind::File(_, len) if len <= super::SMALL_FILE_MAX)
    }
}

/// The type of a stat.
pub(super) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode as _)
}

/// `st`'s permission bits.
pub(super) fn mode_bits(st: &Stat) -> u32 {
    st.st_mode & 0o7777
}

/// A [`Mode`] from permission bits.
pub(super) fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits as _)
}

pub(super) fn escape(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
    Error::PathEscapesSandbox {
        path: path.into(),
        reason: reason.into(),
    }
}

impl Root {
    /// Opens the workspace directory `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let fd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| NativeOrchestratorError::io("open", dir, e.into()))?;
        let st = rustix::fs::fstat(&fd)
            .map_err(|e| NativeOrchestratorError::io("stat", dir, e.into()))?;
        Ok(Self {
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
            dir: dir.to_path_buf(),
            owner: None,
        })
    }

    /// The same root, giving what copies create to `owner`.
    pub fn owned_by(mut self, owner: Option<(u32, u32)>) -> Self {
        self.owner = owner;
        self
    }

    /// Whether `st` is on the workspace's own file system (not below a mount
    /// point inside it).
    pub fn same_dev(&self, st: &Stat) -> bool {
        st.st_dev == self.dev
    }

    /// The host path of `rel`, for messages.
    pub fn host_path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// openat2 of `rel` ("" is the root) beneath the root, following links
    /// that stay beneath it.
    pub fn open_beneath(&self, rel: &str, flags: OFlags) -> std::result::Result<OwnedFd, Errno> {
        let rel = if rel.is_empty() { "." } else { rel };
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(
                &self.fd,
                rel,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                RESOLVE,
            ) {
                Err(Errno::AGAIN) if tries < EAGAIN_RETRIES => tries += 1,
                r => return r,
            }
        }
    }

    /// The error for a failed lookup of sandbox path `rel`.
    pub fn lookup_error(&self, op: &'static str, rel: &str, e: Errno) -> Error {
        match e {
            Errno::XDEV | Errno::LOOP => escape(
                rel,
                "a symlink, '..' or a mount point leads outside the sandbox",
            ),
            e => super::io(op, &self.host_path(rel), e.into()),
        }
    }

    /// Opens the source of a `copy_from`: a regular file or a directory,
    /// following symlinks that stay in the workspace.
    ///
    /// A FIFO, socket or device is [`Error::InvalidInput`]: it is not an
    /// escape (it is inside the workspace) but nothing a copy can take
    /// bytes from, and a FIFO would block the copy until a writer came. It
    /// is opened with `O_NONBLOCK` (a FIFO opens at once; a socket fails
    /// with ENXIO) and `O_NOCTTY`, and its type taken from the descriptor.
    pub fn source(&self, p: &SandboxPath) -> Result<Source> {
        let rel = p.as_str();
        let special = |what: &str| {
            Error::invalid(format!(
                "{p} is {what}; copy_from copies regular files, directories and symlinks"
            ))
        };
        let fd = match self.open_beneath(rel, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY) {
            Ok(fd) => fd,
            Err(Errno::NXIO) => return Err(special("a socket")),
            Err(e) => return Err(self.lookup_error("open", rel, e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.lookup_error("stat", rel, e))?;
        let kind = match file_type(&st) {
            FileType::RegularFile => {
                // Regular files ignore O_NONBLOCK on local file systems; cleared
                // so that none (FUSE, network) answers EAGAIN to a read.
                rustix::fs::fcntl_setfl(&fd, OFlags::empty())
                    .map_err(|e| self.lookup_error("fcntl", rel, e))?;
                SourceKind::File(fd.into(), st.st_size as u64)
            }
            FileType::Directory => SourceKind::Dir(fd),
            FileType::Fifo => return Err(special("a FIFO")),
            FileType::Socket => return Err(special("a socket")),
            _ => return Err(special("a device file")),
        };
        Ok(Source {
            path: p.clone(),
            kind,
            mode: mode_bits(&st),
        })
    }

    /// Resolves the destination of a `copy_to`, creating missing parent
    /// directories. A symlink as the last component is followed (the copy
    /// lands at its target) as long as it stays beneath the root.
    pub fn dest(&self, to: &SandboxPath) -> Result<Dest> {
        let shown = to.as_str();
        let mut path = to.as_str().to_string();
        for _ in 0..=MAX_SYMLINK_HOPS {
            let path_now = normalise_tail(&path);
            if path_now.is_empty() {
                return Err(Error::invalid(
                    "cannot replace the workspace root; name a path inside it",
                ));
            }
            let (parent_rel, name) = match path_now.rsplit_once('/') {
                Some((p, n)) => (p, n),
                None => ("", path_now),
            };
            if name == ".." {
                return Err(self.dotdot_dest(shown, path_now));
            }
            let parent = self.dir_creating(parent_rel, shown)?;
            match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if file_type(&st) == FileType::Symlink => {
                    let target = rustix::fs::readlinkat(&parent, name, Vec::new())
                        .map_err(|e| self.lookup_error("readlink", shown, e))?;
                    let target = target.to_string_lossy();
                    if target.starts_with('/') {
                        return Err(escape(shown, "a symlink leads outside the sandbox"));
                    }
                    path = if parent_rel.is_empty() {
                        target.into_owned()
                    } else {
                        format!("{parent_rel}/{target}")
                    };
                }
                Ok(st) => {
                    return Ok(Dest {
                        parent,
                        name: name.into(),
                        existing: Some(st),
                    })
                }
                Err(Errno::NOENT) => {
                    return Ok(Dest {
                        parent,
                        name: name.into(),
                        existing: None,
                    })
                }
                Err(e) => return Err(self.lookup_error("stat", shown, e)),
            }
        }
        Err(escape(shown, "too many levels of symbolic links"))
    }

    /// The error for a destination whose link ends in `..`: the directory
    /// it names has no name to replace.
    fn dotdot_dest(&self, shown: &str, path: &str) -> Error {
        match self.open_beneath(path, OFlags::PATH | OFlags::DIRECTORY) {
            Err(e) => self.lookup_error("open", shown, e),
            Ok(fd) => match rustix::fs::fstat(&fd) {
                Ok(st) if st.st_dev == self.dev && st.st_ino == self.ino => {
                    Error::invalid("cannot replace the workspace root; name a path inside it")
                }
                _ => Error::invalid(format!(
                    "{shown} leads through a symlink to '..'; name the directory directly"
                )),
            },
        }
    }

    /// Opens directory `rel` beneath the root (`O_PATH`), creating what is
    /// missing one component at a time, each looked up from the root again.
    fn dir_creating(&self, rel: &str, shown: &str) -> Result<OwnedFd> {
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        match self.open_beneath(rel, flags) {
            Err(Errno::NOENT) => {}
            r => return r.map_err(|e| self.lookup_error("open", shown, e)),
        }
        let mut cur = self
            .open_beneath("", flags)
            .map_err(|e| self.lookup_error("open", "", e))?;
        let mut prefix = String::new();
        for comp in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            cur = match self.open_beneath(&prefix, flags) {
                Err(Errno::NOENT) if comp != ".." => {
                    match rustix::fs::mkdirat(&cur, comp, mode(0o777)) {
                        Ok(()) => give_at(cur.as_fd(), OsStr::new(comp), self.owner)
                            .map_err(|e| self.lookup_error("chown", &prefix, e))?,
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.lookup_error("mkdir", &prefix, e)),
                    }
                    self.open_beneath(&prefix, flags)
                }
                r => r,
            }
            .map_err(|e| self.lookup_error("open", shown, e))?;
        }
        Ok(cur)
    }
}

/// `path` without trailing `/` and `.` components (`a/./` is `a`).
fn normalise_tail(mut path: &str) -> &str {
    loop {
        let trimmed = path.trim_end_matches('/');
        let trimmed = match trimmed.strip_suffix("/.") {
            Some(t) => t,
            None if trimmed == "." => "",
            None => trimmed,
        };
        if trimmed == path {
            return path;
        }
        path = trimmed;
    }
}

/// Gives entry `name` of `dir` (never followed) to `owner`, if any.
pub(super) fn give_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    owner: Option<(u32, u32)>,
) -> std::result::Result<(), Errno> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    let name = std::ffi::CString::new(name.as_bytes()).map_err(|_| Errno::INVAL)?;
    // SAFETY: a NUL-terminated name relative to a descriptor we hold.
    let r = unsafe {
        libc::fchownat(
            std::os::fd::AsRawFd::as_raw_fd(&dir),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
    }
}

/// Opens entry `name` of directory `dir` (created with `mode` when `flags`
/// say so), never through a symlink or into a mount point (EXDEV).
pub(super) fn open_entry(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlags,
    mode: Mode,
) -> std::result::Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        dir,
        name.as_bytes(),
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        mode,
        RESOLVE | ResolveFlags::NO_SYMLINKS,
    )
}

/// Removes `name` in `dir`, a directory with everything in it, never
/// following a symlink; errors are ignored (it is clean-up after a failure).
pub(super) fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        _ => return,
    }
    if let Ok(sub) = open_entry(dir, name, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) {
        if let Ok(entries) = rustix::fs::Dir::read_from(&sub) {
            let names: Vec<OsString> = entries
                .filter_map(|e| e.ok())
                .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
                .filter(|n| n != "." && n != "..")
                .collect();
            for n in names {
                remove_at(sub.as_fd(), &n);
            }
        }
    }
    let _ = rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR);
}

/// Renames finished stage `stage` onto `name` in `dir`, moving a directory
/// that is in the way aside first (rename(2) cannot replace a non-empty
/// directory). The stage is removed on failure.
pub(super) fn place_at(
    dir: BorrowedFd<'_>,
    stage: &OsStr,
    name: &OsStr,
    shown: &Path,
) -> Result<()> {
    let fail = |e: Errno| {
        remove_at(dir, stage);
        super::io("rename", shown, e.into())
    };
    if let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        if file_type(&st) == FileType::Directory {
            let old = super::stage_name(name);
            rustix::fs::renameat(dir, name, dir, &old).map_err(fail)?;
            remove_at(dir, &old);
        }
    }
    rustix::fs::renameat(dir, stage, dir, name).map_err(fail)
}

//! Thin wrappers over the system calls the sandbox processes make (mount,
//! pivot_root, id changes, namespaces), each turning -1 into an
//! [`std::io::Error`] that names the step.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A failed step of building or running the sandbox: what was done, and
/// the errno.
#[derive(Debug)]
pub(crate) struct StepError {
    pub stage: String,
    pub source: io::Error,
}

impl StepError {
    pub fn errno(&self) -> i32 {
        self.source.raw_os_error().unwrap_or(libc::EIO)
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.stage, self.source)
    }
}

/// Attaches a stage name to an I/O result.
pub(crate) trait Step<T> {
    fn step(self, stage: impl FnOnce() -> String) -> Result<T, StepError>;
}

impl<T> Step<T> for io::Result<T> {
    fn step(self, stage: impl FnOnce() -> String) -> Result<T, StepError> {
        self.map_err(|source| StepError {
            stage: stage(),
            source,
        })
    }
}

/// -1 → the last OS error.
pub(crate) fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `check` for the `c_int` returning calls.
pub(crate) fn check_int(ret: libc::c_int) -> io::Result<libc::c_int> {
    check(ret as libc::c_long).map(|r| r as libc::c_int)
}

pub(crate) fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// mount(2); `source`, `fstype` and `data` optional.
pub(crate) fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = source.map(cstr).transpose()?;
    let tgt = cstr(target)?;
    let fs = fstype
        .map(|f| CString::new(f).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL)))
        .transpose()?;
    let dat = data
        .map(|d| CString::new(d).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL)))
        .transpose()?;
    let p = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string we own.
    check_int(unsafe {
        libc::mount(
            p(&src),
            tgt.as_ptr(),
            p(&fs),
            flags,
            dat.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    })
    .map(drop)
}

/// The mount flags of the filesystem `fd` is on that a bind remount must
/// keep (in a user namespace they are locked: dropping one is EPERM).
pub(crate) fn locked_flags(fd: libc::c_int) -> io::Result<libc::c_ulong> {
    // SAFETY: fstatvfs writes only into the struct we pass.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    check_int(unsafe { libc::fstatvfs(fd, &mut st) })?;
    let mut flags = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    Ok(flags)
}

/// Writes all of `data` to `fd`, retrying on EINTR.
pub(crate) fn write_all(fd: libc::c_int, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: data is a valid buffer of its length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// Adds `flags` (MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC) to the mount at
/// `target` and to every mount below it (mount_setattr with AT_RECURSIVE):
/// a bind's submounts get them too. Flags are only added, never cleared,
/// so what a user namespace locks stays as it is.
pub(crate) fn restrict_recursively(target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let mut set = 0;
    for (ms, attr) in [
        (libc::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
    ] {
        if flags & ms != 0 {
            set |= attr;
        }
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let path = cstr(target)?;
    // SAFETY: a NUL-terminated path and a struct of the size passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

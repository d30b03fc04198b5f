//! The sandbox's view of the filesystem, built by the init in its own
//! mount namespace: a tmpfs root with read-only binds of the system
//! directories, a small /etc, a minimal /dev, its own /proc, a private
//! /tmp, the workspace at /workspace; then pivot_root, the old root
//! detached and `/` read-only.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::protocol::Setup;
use super::sys::{self, check_int, locked_flags, Step, StepError};

/// Where the new root is assembled before pivot_root (any existing
/// directory works: the mount is private to the sandbox's namespace, and
/// every source was opened before it hides what is beneath).
const STAGING: &str = "/tmp";

/// The uid and gid of the sandbox user inside.
pub(crate) const SANDBOX_ID: u32 = 1000;

/// A host path as the init first saw it, before anything was mounted over
/// its ancestors.
enum Source {
    Dir(OwnedFd),
    File(OwnedFd),
    Symlink(PathBuf),
}

fn open_source(path: &Path) -> io::Result<Source> {
    let md = std::fs::symlink_metadata(path)?;
    if md.file_type().is_symlink() {
        return Ok(Source::Symlink(std::fs::read_link(path)?));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    Ok(if md.is_dir() {
        Source::Dir(f.into())
    } else {
        Source::File(f.into())
    })
}

/// An /etc entry: a symlink is recreated when its target is visible in the
/// sandbox (under /etc or a system bind, as /etc/localtime's zoneinfo);
/// otherwise (resolv.conf into /run, say) what it leads to is bound.
fn open_etc(path: &Path, system: &[PathBuf]) -> io::Result<Source> {
    let source = open_source(path)?;
    if let Source::Symlink(_) = source {
        let real = path.canonicalize()?;
        let visible = real.starts_with("/etc") || system.iter().any(|s| real.starts_with(s));
        if !visible {
            return open_source(&real);
        }
    }
    Ok(source)
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Everything the root is built from, opened while the host's paths are
/// still visible (and, as root, before the init becomes the sandbox user).
pub(crate) struct Sources {
    workspace: OwnedFd,
    system: Vec<(PathBuf, Source)>,
    etc: Vec<(String, Source)>,
    mounts: Vec<(Source, String, bool)>,
}

/// Opens every source `setup` names. Missing system directories and /etc
/// entries are skipped (a host without /lib64, say); a missing workspace
/// or mount source is an error.
pub(crate) fn open_sources(setup: &Setup) -> Result<Sources, StepError> {
    let workspace = match open_source(&setup.workspace).step(|| "open the workspace".into())? {
        Source::Dir(fd) => fd,
        _ => {
            return Err(StepError {
                stage: "open the workspace".into(),
                source: io::Error::from_raw_os_error(libc::ENOTDIR),
            })
        }
    };
    let mut system = Vec::new();
    for p in &setup.system {
        match open_source(p) {
            Ok(s) => system.push((p.clone(), s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).step(|| format!("open {}", p.display())),
        }
    }
    let mut etc = Vec::new();
    for name in &setup.etc {
        let p = Path::new("/etc").join(name);
        match open_etc(&p, &setup.system) {
            Ok(s) => etc.push((name.clone(), s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).step(|| format!("open {}", p.display())),
        }
    }
    let mut mounts = Vec::new();
    for (host, inside, ro) in &setup.mounts {
        let s = open_source(host).step(|| format!("open mount source {}", host.display()))?;
        if let Source::Symlink(_) = s {
            return Err(StepError {
                stage: format!("open mount source {}", host.display()),
                source: io::Error::from_raw_os_error(libc::ELOOP),
            });
        }
        mounts.push((s, inside.clone(), *ro));
    }
    Ok(Sources {
        workspace,
        system,
        etc,
        mounts,
    })
}

fn mkdir(p: &Path, mode: u32) -> Result<(), StepError> {
    match std::fs::DirBuilder::new().mode(mode).create(p) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(e).step(|| format!("mkdir {}", p.display()))
        }
        _ => Ok(()),
    }
}

fn touch(p: &Path) -> Result<(), StepError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(p)
        .map(drop)
        .step(|| format!("create {}", p.display()))
}

fn write_file(p: &Path, content: &str) -> Result<(), StepError> {
    std::fs::write(p, content).step(|| format!("write {}", p.display()))
}

/// Binds `fd`'s file or directory, with every mount below it, at `target`
/// (which exists), `flags` (read-only, nosuid, nodev) added to all of them.
fn bind(fd: &OwnedFd, target: &Path, flags: libc::c_ulong) -> Result<(), StepError> {
    let what = || format!("bind {}", target.display());
    sys::mount(
        Some(&fd_path(fd)),
        target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .step(what)?;
    // Every mount of the bound tree gets the flags (kernels since 5.12);
    // an older kernel gets them on the top mount only.
    match sys::restrict_recursively(target, flags) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
        r => return r.step(|| format!("restrict {}", target.display())),
    }
    let keep = locked_flags(fd.as_raw_fd()).step(what)?;
    sys::mount(
        None,
        target,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | flags | keep,
        None,
    )
    .step(|| format!("remount {}", target.display()))
}

const RO: libc::c_ulong = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;

/// Places a source at `target`: a directory or file bound with `flags`, a
/// symlink recreated.
fn place(source: &Source, target: &Path, flags: libc::c_ulong) -> Result<(), StepError> {
    match source {
        Source::Dir(fd) => {
            mkdir(target, 0o755)?;
            bind(fd, target, flags)
        }
        Source::File(fd) => {
            touch(target)?;
            bind(fd, target, flags)
        }
        Source::Symlink(to) => symlink(to, target).step(|| format!("symlink {}", target.display())),
    }
}

fn tmpfs(target: &Path, flags: libc::c_ulong, options: &str) -> Result<(), StepError> {
    sys::mount(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        flags,
        Some(options),
    )
    .step(|| format!("mount tmpfs on {}", target.display()))
}

const PASSWD: &str = "root:x:0:0:root:/root:/usr/sbin/nologin\n\
sandbox:x:1000:1000:runbox sandbox:/workspace:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n";
const HOSTS: &str = "127.0.0.1\tlocalhost runbox\n::1\tlocalhost ip6-localhost ip6-loopback\n";
/// The sandbox's hostname (its own UTS namespace).
pub(crate) const HOSTNAME: &str = "runbox";

/// The /dev entries bound from the host.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn build_dev(root: &Path, setup: &Setup) -> Result<(), StepError> {
    let dev = root.join("dev");
    mkdir(&dev, 0o755)?;
    tmpfs(
        &dev,
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "mode=0755,size=64k",
    )?;
    for d in DEVICES {
        let host = Path::new("/dev").join(d);
        let Ok(src) = open_source(&host) else {
            continue;
        };
        let target = dev.join(d);
        touch(&target)?;
        if let Source::File(fd) = &src {
            bind(fd, &target, libc::MS_NOSUID | libc::MS_NOEXEC)?;
        }
    }
    let pts = dev.join("pts");
    mkdir(&pts, 0o755)?;
    sys::mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .step(|| "mount devpts".into())?;
    for (name, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(to, dev.join(name)).step(|| format!("symlink /dev/{name}"))?;
    }
    let shm = dev.join("shm");
    mkdir(&shm, 0o1777)?;
    tmpfs(
        &shm,
        libc::MS_NOSUID | libc::MS_NODEV,
        &format!(
            "mode=1777,size={},nr_inodes={}",
            setup.tmp_bytes, setup.tmp_inodes
        ),
    )?;
    sys::mount(
        None,
        &dev,
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )
    .step(|| "remount /dev read-only".into())
}

/// Builds the root from `sources` and switches to it. Runs in the init,
/// as the sandbox user with every capability of its user namespace.
pub(crate) fn build(setup: &Setup, sources: &Sources) -> Result<(), StepError> {
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .step(|| "make mounts private".into())?;
    let root = Path::new(STAGING);
    tmpfs(root, libc::MS_NOSUID | libc::MS_NODEV, "mode=0755,size=4m")?;

    for (path, src) in &sources.system {
        let rel = path.strip_prefix("/").unwrap_or(path);
        place(src, &root.join(rel), RO)?;
    }

    let etc = root.join("etc");
    mkdir(&etc, 0o755)?;
    for (name, src) in &sources.etc {
        place(src, &etc.join(name), RO)?;
    }
    write_file(&etc.join("passwd"), PASSWD)?;
    write_file(&etc.join("group"), GROUP)?;
    write_file(&etc.join("hostname"), &format!("{HOSTNAME}\n"))?;
    if !etc.join("hosts").exists() {
        write_file(&etc.join("hosts"), HOSTS)?;
    }

    build_dev(root, setup)?;

    let proc = root.join("proc");
    mkdir(&proc, 0o555)?;
    sys::mount(
        Some(Path::new("proc")),
        &proc,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .step(|| "mount /proc".into())?;

    let tmp = root.join("tmp");
    mkdir(&tmp, 0o1777)?;
    tmpfs(
        &tmp,
        libc::MS_NOSUID | libc::MS_NODEV,
        &format!(
            "mode=1777,size={},nr_inodes={}",
            setup.tmp_bytes, setup.tmp_inodes
        ),
    )?;

    let ws = root.join("workspace");
    mkdir(&ws, 0o755)?;
    bind(&sources.workspace, &ws, libc::MS_NOSUID | libc::MS_NODEV)?;
    for (src, inside, ro) in &sources.mounts {
        let target = ws.join(inside);
        if let Some(parent) = target.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .step(|| format!("mkdir {}", parent.display()))?;
        }
        let flags = if *ro {
            RO
        } else {
            libc::MS_NOSUID | libc::MS_NODEV
        };
        place(src, &target, flags)?;
    }
    mkdir(&root.join("root"), 0o700)?;

    pivot(root)?;
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REMOUNT | libc::MS_BIND | RO,
        None,
    )
    .step(|| "remount / read-only".into())
}

/// pivot_root into `root` with the old root stacked on the new one, then
/// detached: nothing of the host's tree stays reachable.
fn pivot(root: &Path) -> Result<(), StepError> {
    let dir = File::open(root).step(|| "open the new root".into())?;
    // SAFETY: fchdir/pivot_root/umount2/chdir take a descriptor we own and
    // NUL-terminated strings.
    unsafe {
        check_int(libc::fchdir(dir.as_raw_fd())).step(|| "chdir to the new root".into())?;
        sys::check(libc::syscall(
            libc::SYS_pivot_root,
            c".".as_ptr(),
            c".".as_ptr(),
        ))
        .step(|| "pivot_root".into())?;
        check_int(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))
            .step(|| "detach the old root".into())?;
        check_int(libc::chdir(c"/".as_ptr())).step(|| "chdir /".into())?;
    }
    Ok(())
}

/// Sets the hostname and, with a network namespace, brings loopback up.
pub(crate) fn identity(setup: &Setup) -> Result<(), StepError> {
    // SAFETY: the name is a valid buffer of its length.
    check_int(unsafe { libc::sethostname(HOSTNAME.as_ptr().cast(), HOSTNAME.len()) })
        .step(|| "sethostname".into())?;
    if !setup.host_network {
        loopback_up().step(|| "bring loopback up".into())?;
    }
    Ok(())
}

fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket; ifreq is zeroed and its name NUL-terminated.
    unsafe {
        let s = check_int(libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let s = OwnedFd::from_raw_fd(s);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        check_int(libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check_int(libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

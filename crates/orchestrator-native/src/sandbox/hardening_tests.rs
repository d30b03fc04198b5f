//! Tests of a command's hardening (privileges dropped, seccomp filter) in
//! real child processes. Each child first enters a user namespace of its own,
//! so it holds capabilities to drop whether the tests run as root or not and
//! nothing it does reaches the host; then it hardens; then it either execs a
//! command or runs a probe: raw system calls whose results it writes to a
//! pipe before `_exit`, without allocating (it is a fork of a threaded
//! process). A denial is shown to come from the filter by a control child
//! without it, or by a filter built with an errno no kernel path returns.

use std::ffi::{CStr, CString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Output, Stdio};

use super::privileges;
use super::seccomp::{Filter, DENIED, WHOLE};

/// The errno of the marker filter: hardware memory corruption, which none of
/// the probed calls can report on its own.
const MARK: i32 = libc::EHWPOISON;

/// An all-ones argument: invalid for every probed call, and typed so that
/// the variadic syscall(3) passes a full register.
const BAD: libc::c_long = -1;

/// CAP_SYS_ADMIN's number (linux/capability.h).
const CAP_SYS_ADMIN: libc::c_ulong = 21;

/// How a child prepares before its exec or probe, after entering a user
/// namespace of its own.
#[derive(Clone, Copy, Default)]
struct Setup {
    /// More namespaces to enter with the user namespace (CLONE_NEW* flags).
    ns: libc::c_int,
    /// Map uid and gid 0 inside to the caller's own ids.
    map_root: bool,
    /// Run [`privileges::drop_all`].
    drop: bool,
}

/// Makes `cmd`'s child enter a user namespace and prepare as `setup` says,
/// then apply `filter`.
fn harden(cmd: &mut Command, setup: Setup, filter: Option<Filter>) {
    // SAFETY: geteuid and getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let uid_map = format!("0 {uid} 1");
    let gid_map = format!("0 {gid} 1");
    // SAFETY: the closure makes raw system calls on data prepared before the
    // fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWUSER | setup.ns) != 0 {
                return Err(io::Error::last_os_error());
            }
            if setup.map_root {
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", uid_map.as_bytes())?;
                write_file(c"/proc/self/gid_map", gid_map.as_bytes())?;
            }
            if setup.drop {
                privileges::drop_all()?;
            }
            if let Some(f) = &filter {
                f.apply()?;
            }
            Ok(())
        });
    }
}

/// open, write, close: async-signal-safe.
fn write_file(path: &CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: a valid path; the descriptor is closed before returning.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let e = io::Error::last_os_error();
        libc::close(fd);
        if n != data.len() as isize {
            return Err(e);
        }
    }
    Ok(())
}

/// Runs `argv` in a child prepared by [`harden`].
fn run(argv: &[&str], setup: Setup, filter: Option<Filter>) -> Output {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    harden(&mut cmd, setup, filter);
    cmd.output()
        .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"))
}

/// What a probe child ended with.
struct Probe<const N: usize> {
    status: ExitStatus,
    /// The probe's results, if it got to write them.
    values: Option<[i64; N]>,
}

/// Forks a child prepared by [`harden`] that runs `f` instead of an exec and
/// reports its results through a pipe.
fn probe<const N: usize>(
    setup: Setup,
    filter: Option<Filter>,
    f: impl Fn() -> [i64; N] + Send + Sync + 'static,
) -> Probe<N> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for both ends.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just opened both; each is owned once.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let wfd = w.as_raw_fd();
    let mut cmd = Command::new("/bin/true");
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    harden(&mut cmd, setup, filter);
    // SAFETY: `f` makes raw system calls only; write(2) and _exit(2) are
    // async-signal-safe; nothing allocates.
    unsafe {
        cmd.pre_exec(move || {
            let out = f();
            let bytes = std::slice::from_raw_parts(out.as_ptr().cast::<u8>(), size_of_val(&out));
            libc::write(wfd, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(0)
        });
    }
    let mut child = cmd.spawn().expect("spawn a probe");
    drop(w);
    let status = child.wait().expect("wait for a probe");
    let mut buf = Vec::new();
    std::fs::File::from(r).read_to_end(&mut buf).unwrap();
    let values = (buf.len() == N * 8).then(|| {
        let mut v = [0i64; N];
        for (x, c) in v.iter_mut().zip(buf.chunks_exact(8)) {
            *x = i64::from_ne_bytes(c.try_into().unwrap());
        }
        v
    });
    Probe { status, values }
}

impl<const N: usize> Probe<N> {
    /// The results of a probe that ran to its end.
    fn values(&self) -> [i64; N] {
        assert!(self.status.success(), "probe ended {:?}", self.status);
        self.values.expect("the probe wrote its results")
    }
}

/// A raw system call's result: the value, or minus errno.
fn ret(r: libc::c_long) -> i64 {
    if r == -1 {
        // SAFETY: errno of this thread.
        -i64::from(unsafe { *libc::__errno_location() })
    } else {
        r
    }
}

/// Whether a child can enter a user namespace here; says so when not, and
/// the caller then skips visibly.
fn userns(test: &str) -> bool {
    let mut cmd = Command::new("/bin/true");
    harden(&mut cmd, Setup::default(), None);
    match cmd.status() {
        Ok(s) if s.success() => true,
        r => {
            eprintln!("{test}: SKIPPED, no user namespace for an unprivileged child here ({r:?})");
            false
        }
    }
}

fn hardened() -> Setup {
    Setup {
        map_root: true,
        drop: true,
        ..Setup::default()
    }
}

fn filter() -> Option<Filter> {
    Some(Filter::build().expect("build the filter"))
}

fn marker() -> Option<Filter> {
    Some(Filter::build_with(MARK).expect("build the marker filter"))
}

/// A field of /proc/<pid>/status text.
fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .trim()
}

#[test]
fn the_deny_list_is_named_and_compiles() {
    for (name, _) in WHOLE {
        assert!(DENIED.contains(name), "{name} missing from DENIED");
    }
    let mut names = DENIED.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), DENIED.len(), "duplicates in DENIED");
    Filter::build().unwrap();
    for errno in [-1, 0, 4096] {
        let bad = Filter::build_with(errno).unwrap_err();
        assert!(bad.contains("out of range"), "{bad}");
    }
}

/// (a) CapInh/CapPrm/CapEff/CapBnd/CapAmb 0, NoNewPrivs 1, Seccomp 2.
#[test]
fn a_hardened_command_holds_no_privilege() {
    if !userns("a_hardened_command_holds_no_privilege") {
        return;
    }
    let control = run(
        &["cat", "/proc/self/status"],
        Setup {
            map_root: true,
            ..Setup::default()
        },
        None,
    );
    let text = String::from_utf8(control.stdout).unwrap();
    assert_ne!(
        field(&text, "CapBnd"),
        "0000000000000000",
        "the control has caps to drop"
    );
    assert_eq!(field(&text, "Seccomp"), "0");

    let out = run(&["cat", "/proc/self/status"], hardened(), filter());
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(&text, set), "0000000000000000", "{set}");
    }
    assert_eq!(field(&text, "NoNewPrivs"), "1");
    assert_eq!(field(&text, "Seccomp"), "2");
    assert_eq!(field(&text, "Seccomp_filters"), "1");
}

/// drop_all leaves the securebits locked and nothing to raise back.
#[test]
fn dropped_privileges_cannot_come_back() {
    if !userns("dropped_privileges_cannot_come_back") {
        return;
    }
    let p = probe(hardened(), None, || {
        use rustix::thread::{self, CapabilitySet, CapabilitySets};
        let rret =
            |r: rustix::io::Result<()>| r.map_or_else(|e| -i64::from(e.raw_os_error()), |()| 0);
        let prctl = |op: libc::c_int, arg: libc::c_ulong| {
            // SAFETY: a raw prctl with integer arguments.
            ret(unsafe {
                libc::prctl(
                    op,
                    arg,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                )
            }
            .into())
        };
        let admin = CapabilitySet::SYS_ADMIN;
        [
            prctl(libc::PR_GET_SECUREBITS, 0),
            prctl(libc::PR_GET_NO_NEW_PRIVS, 0),
            prctl(libc::PR_SET_SECUREBITS, 0),
            rret(thread::set_capabilities(
                None,
                CapabilitySets {
                    effective: admin,
                    permitted: admin,
                    inheritable: CapabilitySet::empty(),
                },
            )),
            rret(thread::configure_capability_in_ambient_set(
                CapabilitySet::CHOWN,
                true,
            )),
            prctl(libc::PR_CAPBSET_READ, 0),
            prctl(libc::PR_CAPBSET_READ, CAP_SYS_ADMIN),
        ]
    });
    let v = p.values();
    // NOROOT, NO_SETUID_FIXUP, NO_CAP_AMBIENT_RAISE set, KEEP_CAPS clear,
    // all four locked.
    assert_eq!(v[0] & 0xff, 0b1110_1111, "securebits {:#x}", v[0]);
    assert_eq!(v[1], 1, "no_new_privs");
    let eperm = -i64::from(libc::EPERM);
    assert_eq!(v[2], eperm, "securebits unlocked");
    assert_eq!(v[3], eperm, "capset raised CAP_SYS_ADMIN");
    assert_eq!(v[4], eperm, "ambient raise");
    assert_eq!((v[5], v[6]), (0, 0), "bounding set");
}

/// (b) `unshare -U true` fails hardened, and works in the same user
/// namespace without hardening.
#[test]
fn b_unshare_fails() {
    if !userns("b_unshare_fails") {
        return;
    }
    let argv = ["unshare", "-U", "true"];
    if Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("b_unshare_fails: SKIPPED, no unshare(1) here");
        return;
    }
    // A nested user namespace needs the caller's ids mapped, hence map_root.
    let mapped = Setup {
        map_root: true,
        ..Setup::default()
    };
    let control = run(&argv, mapped, None);
    assert!(control.status.success(), "control {control:?}");
    let out = run(&argv, hardened(), filter());
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Operation not permitted"), "{err}");
}

/// (c) mount(8) of a tmpfs fails hardened, in a user and mount namespace of
/// its own where the same command without hardening succeeds; the host's
/// mount table never sees it either way.
#[test]
fn c_mount_command_fails() {
    if !userns("c_mount_command_fails") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().to_str().unwrap().to_string();
    let script = format!("mount -t tmpfs t {target} && grep -q ' {target} ' /proc/self/mountinfo");
    let argv = ["sh", "-c", script.as_str()];
    let ns = Setup {
        ns: libc::CLONE_NEWNS,
        map_root: true,
        drop: false,
    };
    let control = run(&argv, ns, None);
    assert!(control.status.success(), "control {control:?}");
    let out = run(&argv, Setup { drop: true, ..ns }, filter());
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ermission denied") || err.contains("not permitted"),
        "{err}"
    );
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host.contains(&format!(" {target} ")),
        "a mount leaked to the host"
    );
}

/// The raw mount(2): EPERM under the filter, in a user and mount namespace
/// where without it the same calls succeed.
#[test]
fn mount_syscall_is_denied_by_the_filter() {
    if !userns("mount_syscall_is_denied_by_the_filter") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
    let ns = Setup {
        ns: libc::CLONE_NEWNS,
        ..Setup::default()
    };
    let calls = move || {
        // SAFETY: raw calls with valid strings. The child is in a mount
        // namespace of its own (or its setup failed and it never got here).
        unsafe {
            let private = libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            );
            let tmpfs = libc::mount(
                c"t".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            );
            let nr = libc::syscall(libc::SYS_mount, BAD, BAD, BAD, BAD, BAD);
            [ret(private.into()), ret(tmpfs.into()), ret(nr)]
        }
    };
    let control = probe(ns, None, calls.clone()).values();
    assert_eq!(control[..2], [0, 0], "control mounts");
    let denied = probe(Setup { drop: true, ..ns }, filter(), calls).values();
    assert_eq!(denied, [-i64::from(libc::EPERM); 3]);
}

/// Every call denied whole answers the filter's errno whatever its
/// arguments, and none does so without the filter.
#[test]
fn every_call_denied_whole_answers_the_filter() {
    if !userns("every_call_denied_whole_answers_the_filter") {
        return;
    }
    const N: usize = WHOLE.len();
    let calls = || {
        let mut out = [0i64; N];
        for (o, &(_, nr)) in out.iter_mut().zip(WHOLE) {
            // Invalid arguments throughout: harmless even were a call let
            // through, and the child is in a user namespace of its own.
            // SAFETY: a raw call; the kernel checks every argument.
            *o = ret(unsafe { libc::syscall(nr, BAD, BAD, BAD, BAD, BAD, BAD) });
        }
        out
    };
    let without = probe(Setup::default(), None, calls).values();
    let with = probe(Setup::default(), marker(), calls).values();
    for (i, (name, _)) in WHOLE.iter().enumerate() {
        assert_ne!(without[i], -i64::from(MARK), "{name} without the filter");
        assert_eq!(with[i], -i64::from(MARK), "{name} under the filter");
    }
}

/// (d) AF_PACKET and AF_VSOCK sockets are denied (also with upper bits set
/// in the domain, which the kernel drops); AF_UNIX and AF_INET work.
#[test]
fn d_packet_and_vsock_sockets_are_denied() {
    if !userns("d_packet_and_vsock_sockets_are_denied") {
        return;
    }
    let hi = 1 << 32;
    let calls = move || {
        let s = |domain: libc::c_long, ty: libc::c_int| {
            // SAFETY: a raw call; a socket made is closed with the child.
            ret(unsafe {
                libc::syscall(
                    libc::SYS_socket,
                    domain,
                    libc::c_long::from(ty),
                    0 as libc::c_long,
                )
            })
        };
        [
            s(libc::AF_PACKET.into(), libc::SOCK_RAW),
            s(libc::AF_VSOCK.into(), libc::SOCK_STREAM),
            s(hi | libc::c_long::from(libc::AF_PACKET), libc::SOCK_RAW),
            s(hi | libc::c_long::from(libc::AF_VSOCK), libc::SOCK_STREAM),
            s(libc::AF_UNIX.into(), libc::SOCK_STREAM),
            s(libc::AF_INET.into(), libc::SOCK_DGRAM),
        ]
    };
    let m = probe(hardened(), marker(), calls).values();
    assert_eq!(m[..4], [-i64::from(MARK); 4], "{m:?}");
    assert!(m[4] >= 0 && m[5] >= 0, "unix and inet sockets: {m:?}");
    let v = probe(hardened(), filter(), calls).values();
    assert_eq!(v[..4], [-i64::from(libc::EPERM); 4], "{v:?}");
}

/// (e) clone3 answers ENOSYS (EINVAL without the filter for the same bad
/// arguments); a plain fork-like clone works; clone with any namespace flag
/// (also with upper bits set) is EPERM.
#[test]
fn e_clone3_is_enosys_and_namespace_clones_are_denied() {
    if !userns("e_clone3_is_enosys_and_namespace_clones_are_denied") {
        return;
    }
    const FLAGS: [libc::c_int; 7] = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
    ];
    let calls = || {
        // A clone like fork(2): a child on a copy of this stack that exits at
        // once; returns the child's wait status, or minus errno.
        let fork = |flags: libc::c_long| -> i64 {
            // SAFETY: raw calls; without CLONE_VM the child has its own copy
            // of memory and leaves through _exit.
            unsafe {
                let pid = libc::syscall(
                    libc::SYS_clone,
                    flags | libc::c_long::from(libc::SIGCHLD),
                    0 as libc::c_long,
                    0 as libc::c_long,
                    0 as libc::c_long,
                    0 as libc::c_long,
                );
                if pid == 0 {
                    libc::_exit(7);
                }
                if pid < 0 {
                    return ret(pid);
                }
                let mut status = 0;
                libc::waitpid(pid as libc::pid_t, &mut status, 0);
                i64::from(status)
            }
        };
        let mut out = [0i64; 10];
        // SAFETY: clone3 with no arguments fails before creating anything.
        out[0] =
            ret(unsafe { libc::syscall(libc::SYS_clone3, 0 as libc::c_long, 0 as libc::c_long) });
        out[1] = fork(0);
        for (o, f) in out[2..9].iter_mut().zip(FLAGS) {
            *o = fork(f.into());
        }
        out[9] = fork((1 << 32) | libc::c_long::from(libc::CLONE_NEWUSER));
        out
    };
    let control = probe(Setup::default(), None, calls).values();
    assert_eq!(
        control[0],
        -i64::from(libc::EINVAL),
        "clone3 without the filter"
    );
    let v = probe(hardened(), filter(), calls).values();
    assert_eq!(v[0], -i64::from(libc::ENOSYS), "clone3");
    assert!(
        libc::WIFEXITED(v[1] as i32) && libc::WEXITSTATUS(v[1] as i32) == 7,
        "plain clone: {:#x}",
        v[1]
    );
    assert_eq!(v[2..], [-i64::from(libc::EPERM); 8], "{v:?}");
}

/// Runs as the hardened child of [`e_spawning_falls_back_to_clone`]: std's
/// spawn (glibc posix_spawn, which tries clone3 first), a fork with
/// pre_exec, and a thread (glibc's pthread_create, also clone3 first).
#[test]
#[ignore = "run by e_spawning_falls_back_to_clone inside a hardened child"]
fn spawn_helper() {
    if std::env::var_os("RUNBOX_SPAWN_HELPER").is_none() {
        return;
    }
    assert!(Command::new("/bin/true").status().unwrap().success());
    let mut cmd = Command::new("/bin/true");
    // SAFETY: an empty closure.
    unsafe { cmd.pre_exec(|| Ok(())) };
    assert!(cmd.status().unwrap().success());
    assert_eq!(std::thread::spawn(|| 5).join().unwrap(), 5);
}

/// (e) With clone3 answering ENOSYS, glibc and std still spawn processes
/// and threads: the test binary itself, hardened, runs [`spawn_helper`].
#[test]
fn e_spawning_falls_back_to_clone() {
    if !userns("e_spawning_falls_back_to_clone") {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "sandbox::hardening_tests::spawn_helper",
        "--ignored",
        "--test-threads=1",
    ])
    .env("RUNBOX_SPAWN_HELPER", "1")
    .stdin(Stdio::null());
    harden(&mut cmd, hardened(), filter());
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

/// (f) TIOCSTI and TIOCLINUX are denied (also with upper bits set in the
/// request, which the kernel drops: it reads an unsigned int); other ioctls
/// pass. The descriptor is invalid, so nothing is ever injected.
#[test]
fn f_tiocsti_and_tioclinux_are_denied() {
    if !userns("f_tiocsti_and_tioclinux_are_denied") {
        return;
    }
    let calls = || {
        let ioctl = |req: u64| {
            // SAFETY: fd -1: every ioctl that gets through fails with EBADF.
            ret(unsafe { libc::syscall(libc::SYS_ioctl, BAD, req, 0 as libc::c_long) })
        };
        let hi = 1u64 << 32;
        [
            ioctl(u64::from(libc::TIOCSTI as u32)),
            ioctl(u64::from(libc::TIOCLINUX as u32)),
            ioctl(hi | u64::from(libc::TIOCSTI as u32)),
            ioctl(hi | u64::from(libc::TIOCLINUX as u32)),
            ioctl(u64::from(libc::FIONREAD as u32)),
        ]
    };
    let m = probe(hardened(), marker(), calls).values();
    assert_eq!(m[..4], [-i64::from(MARK); 4], "{m:?}");
    assert_eq!(m[4], -i64::from(libc::EBADF), "FIONREAD");
    let v = probe(hardened(), filter(), calls).values();
    assert_eq!(v[..4], [-i64::from(libc::EPERM); 4], "{v:?}");
}

/// A system call of another ABI kills the process: i386's `int 0x80` and
/// x32 numbers. Without the filter the same calls return.
#[cfg(target_arch = "x86_64")]
#[test]
fn foreign_abis_kill() {
    if !userns("foreign_abis_kill") {
        return;
    }
    let int80 = || {
        let mut eax: u32 = 20; // i386 getpid
                               // SAFETY: a 32-bit getpid through the compat entry; it reads and
                               // writes eax only.
        unsafe { std::arch::asm!("int 0x80", inout("eax") eax => eax, options(nostack)) };
        [i64::from(eax as i32)]
    };
    let x32 = || {
        // SAFETY: getpid numbered with the x32 bit.
        [ret(unsafe {
            libc::syscall(0x4000_0000 | libc::SYS_getpid)
        })]
    };
    let control = probe(Setup::default(), None, int80);
    // Kernels without IA-32 emulation fault on int 0x80 instead.
    if control.status.signal() == Some(libc::SIGSEGV) {
        eprintln!("foreign_abis_kill: no IA-32 emulation, int 0x80 part SKIPPED");
    } else {
        assert!(
            control.values()[0] > 0,
            "int 0x80 getpid without the filter"
        );
        let p = probe(Setup::default(), filter(), int80);
        assert_eq!(p.status.signal(), Some(libc::SIGSYS), "{:?}", p.status);
    }
    let control = probe(Setup::default(), None, x32).values()[0];
    assert!(
        control > 0 || control == -i64::from(libc::ENOSYS),
        "{control}"
    );
    let p = probe(Setup::default(), filter(), x32);
    assert_eq!(p.status.signal(), Some(libc::SIGSYS), "{:?}", p.status);
    assert!(p.values.is_none());
}

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

mod filter;

//! Hardening tests of the seccomp filter's denials, each shown to come from
//! the filter (a control child without it, or the marker errno): unshare,
//! mount, the calls denied whole, socket families, clone flags, ioctls,
//! foreign ABIs.

use super::*;

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
        "sandbox::hardening_tests::filter::spawn_helper",
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

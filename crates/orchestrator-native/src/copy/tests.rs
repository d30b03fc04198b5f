//! Unit tests of copies: staging, the small-file paths, and what a hostile
//! workspace can put in a copy's way (links, FIFOs, sockets, races, mounts).

use std::path::{Path, PathBuf};
use std::time::Duration;

use orchestrator_core::{Error, Result, SandboxPath};

use super::beneath::Root;

/// A workspace directory (canonical) and a host directory.
struct Fixture {
    _ws: tempfile::TempDir,
    _host: tempfile::TempDir,
    root: PathBuf,
    host: PathBuf,
}

fn fixture() -> Fixture {
    let ws = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    Fixture {
        root: ws.path().canonicalize().unwrap(),
        host: host.path().canonicalize().unwrap(),
        _ws: ws,
        _host: host,
    }
}

/// copy_from of sandbox path `p` in `root` to host `dest`.
fn copy_out(root: &Path, p: &str, dest: &Path) -> Result<()> {
    let r = Root::open(root)?;
    let src = r.source(&SandboxPath::new(p)?)?;
    super::out::copy_out(&r, src, dest)
}

/// copy_to of host `src` to sandbox path `to` in `root`.
fn copy_in(src: &Path, root: &Path, to: &str) -> Result<()> {
    let r = Root::open(root)?;
    super::into::copy_in(src, &r, &SandboxPath::new(to)?, None)
}

/// Runs `f` on a thread and fails the test when it takes over 10 s.
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the copy hung")
}

fn is_escape<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(Error::PathEscapesSandbox { .. }))
}

#[test]
fn failed_copy_leaves_nothing() {
    let f = fixture();
    std::fs::create_dir_all(f.root.join("sb/a")).unwrap();
    std::fs::write(f.root.join("sb/a/f"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc", f.root.join("sb/z-escape")).unwrap();
    let e = copy_out(&f.root, "sb", &f.host.join("out")).unwrap_err();
    assert!(matches!(e, Error::PathEscapesSandbox { .. }), "{e:?}");
    assert_eq!(std::fs::read_dir(&f.host).unwrap().count(), 0);
}

#[test]
fn links_inside_a_copied_directory_are_copied_as_links() {
    let f = fixture();
    std::fs::create_dir_all(f.root.join("t/sub")).unwrap();
    std::fs::write(f.root.join("t/sub/f"), b"f").unwrap();
    std::fs::write(f.root.join("sibling"), b"s").unwrap();
    std::os::unix::fs::symlink("sub/f", f.root.join("t/in-tree")).unwrap();
    std::os::unix::fs::symlink("../sibling", f.root.join("t/in-sandbox")).unwrap();
    std::os::unix::fs::symlink("../../../../x", f.root.join("t/sub/out")).unwrap();
    let e = copy_out(&f.root, "t", &f.host.join("t")).unwrap_err();
    assert!(matches!(e, Error::PathEscapesSandbox { .. }), "{e:?}");
    std::fs::remove_file(f.root.join("t/sub/out")).unwrap();
    copy_out(&f.root, "t", &f.host.join("t")).unwrap();
    for (l, target) in [("in-tree", "sub/f"), ("in-sandbox", "../sibling")] {
        let got = std::fs::read_link(f.host.join("t").join(l)).unwrap();
        assert_eq!(got, Path::new(target));
    }
}

#[test]
fn replaces_existing_directory() {
    let f = fixture();
    std::fs::write(f.host.join("new"), b"n").unwrap();
    std::fs::create_dir_all(f.root.join("dst")).unwrap();
    std::fs::write(f.root.join("dst/old"), b"o").unwrap();
    copy_in(&f.host, &f.root, "dst").unwrap();
    assert!(f.root.join("dst/new").exists());
    assert!(!f.root.join("dst/old").exists());
    assert_eq!(std::fs::read_dir(&f.root).unwrap().count(), 1);
}

#[test]
fn small_file_keeps_bytes_and_mode_and_replaces_a_directory() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let root = &f.root;
    let src = f.host.join("tool");
    std::fs::write(&src, b"#!/bin/sh\necho hi\n\0\xff").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o751)).unwrap();
    // Into a missing parent directory.
    copy_in(&src, root, "bin/tool").unwrap();
    let got = root.join("bin/tool");
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&src).unwrap());
    let mode = std::fs::metadata(&got).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o751);
    // Over a non-empty directory.
    std::fs::create_dir_all(root.join("d/sub")).unwrap();
    copy_in(&src, root, "d").unwrap();
    assert!(std::fs::metadata(root.join("d")).unwrap().is_file());
    // Over an existing file, and nothing staged is left behind.
    std::fs::write(&src, b"v2").unwrap();
    copy_in(&src, root, "bin/tool").unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), b"v2");
    // And back out, mode kept.
    copy_out(root, "bin/tool", &f.host.join("back")).unwrap();
    let mode = std::fs::metadata(f.host.join("back"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o751);
    let names: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .chain(std::fs::read_dir(root.join("bin")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("runbox-tmp")),
        "staging left: {names:?}"
    );
}

#[test]
fn copy_out_of_a_missing_source_is_not_found() {
    let f = fixture();
    let e = copy_out(&f.root, "nope", &f.host.join("x")).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert_eq!(std::fs::read_dir(&f.host).unwrap().count(), 0);
}

#[test]
fn the_workspace_root_cannot_be_replaced() {
    let f = fixture();
    std::fs::write(f.host.join("x"), b"x").unwrap();
    std::os::unix::fs::symlink(".", f.root.join("dot")).unwrap();
    for to in ["dot", "dot/."] {
        let e = copy_in(&f.host.join("x"), &f.root, to).unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{to}: {e:?}");
    }
}

#[test]
fn a_fifo_is_refused_without_hanging() {
    let f = fixture();
    let fifo = f.root.join("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    let (root, dest) = (f.root.clone(), f.host.join("out"));
    let r = within_10s(move || copy_out(&root, "fifo", &dest));
    assert!(matches!(r, Err(Error::InvalidInput(_))), "{r:?}");
    // Inside a copied directory it is skipped, never opened.
    std::fs::create_dir(f.root.join("d")).unwrap();
    std::fs::rename(&fifo, f.root.join("d/fifo")).unwrap();
    std::fs::write(f.root.join("d/f"), b"f").unwrap();
    let (root, dest) = (f.root.clone(), f.host.join("d"));
    within_10s(move || copy_out(&root, "d", &dest)).unwrap();
    assert_eq!(std::fs::read(f.host.join("d/f")).unwrap(), b"f");
    assert!(!f.host.join("d/fifo").exists());
    assert!(!f.host.join("out").exists());
}

#[test]
fn a_socket_is_refused() {
    let f = fixture();
    let _l = std::os::unix::net::UnixListener::bind(f.root.join("sock")).unwrap();
    let r = copy_out(&f.root, "sock", &f.host.join("out"));
    assert!(matches!(r, Err(Error::InvalidInput(_))), "{r:?}");
    assert!(!f.host.join("out").exists());
}

#[test]
fn links_to_host_files_lead_nowhere() {
    let f = fixture();
    let ln = |target: &str, name: &str| {
        std::os::unix::fs::symlink(target, f.root.join(name)).unwrap();
    };
    ln("/etc/hostname", "abs-file");
    ln("/etc", "abs-dir");
    ln("../../../../../../../etc/hostname", "rel-file");
    ln("../../../../../../../etc", "rel-dir");
    ln(&f.host.display().to_string(), "host");
    for p in [
        "abs-file",
        "abs-dir/hostname",
        "rel-file",
        "rel-dir/hostname",
        "abs-dir",
    ] {
        let r = copy_out(&f.root, p, &f.host.join("out"));
        assert!(is_escape(r), "copy_from {p}");
    }
    std::fs::write(f.host.join("payload"), b"p").unwrap();
    for to in ["host/planted", "host", "rel-dir/planted"] {
        let r = copy_in(&f.host.join("payload"), &f.root, to);
        assert!(is_escape(r), "copy_to {to}");
    }
    assert!(!f.host.join("out").exists());
    assert!(!f.host.join("planted").exists());
    assert!(std::fs::symlink_metadata(f.root.join("host"))
        .unwrap()
        .is_symlink());
}

#[test]
fn links_that_stay_inside_are_followed() {
    let f = fixture();
    std::fs::create_dir_all(f.root.join("a/b")).unwrap();
    std::fs::write(f.root.join("a/b/f"), b"inside").unwrap();
    std::os::unix::fs::symlink("a/b", f.root.join("l")).unwrap();
    std::os::unix::fs::symlink("b/../b/f", f.root.join("a/lf")).unwrap();
    copy_out(&f.root, "l/f", &f.host.join("one")).unwrap();
    copy_out(&f.root, "a/lf", &f.host.join("two")).unwrap();
    assert_eq!(std::fs::read(f.host.join("one")).unwrap(), b"inside");
    assert_eq!(std::fs::read(f.host.join("two")).unwrap(), b"inside");
    // copy_to through a link lands at its target.
    std::fs::write(f.host.join("new"), b"new").unwrap();
    copy_in(&f.host.join("new"), &f.root, "a/lf").unwrap();
    assert_eq!(std::fs::read(f.root.join("a/b/f")).unwrap(), b"new");
    copy_in(&f.host.join("new"), &f.root, "l/g").unwrap();
    assert_eq!(std::fs::read(f.root.join("a/b/g")).unwrap(), b"new");
}

/// A thread swaps a workspace directory with a symlink to a host directory
/// (renameat2 RENAME_EXCHANGE, so one of the two is always there) while
/// copies run: each copy gets the workspace's content or fails; none reads
/// or writes the host directory.
#[test]
fn a_racing_symlink_swap_never_reaches_the_host() {
    let f = fixture();
    std::fs::create_dir(f.root.join("d")).unwrap();
    std::fs::write(f.root.join("d/f"), b"workspace").unwrap();
    let secret = f.host.join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("f"), b"host").unwrap();
    std::os::unix::fs::symlink(&secret, f.root.join("l")).unwrap();
    let payload = f.host.join("payload");
    std::fs::write(&payload, b"payload").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, root) = (stop.clone(), f.root.clone());
        std::thread::spawn(move || {
            let (d, l) = (root.join("d"), root.join("l"));
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &d,
                    rustix::fs::CWD,
                    &l,
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let out = f.host.join("out");
    let (mut ok, mut failed) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        for p in ["d/f", "d"] {
            let _ = std::fs::remove_file(&out);
            let _ = std::fs::remove_dir_all(&out);
            match copy_out(&f.root, p, &out) {
                Ok(()) => {
                    ok += 1;
                    let file = if p == "d" { out.join("f") } else { out.clone() };
                    assert_eq!(std::fs::read(&file).unwrap(), b"workspace", "{p}");
                }
                Err(_) => failed += 1,
            }
        }
        if copy_in(&payload, &f.root, "d/planted").is_ok() {
            ok += 1;
        }
        assert!(
            !secret.join("planted").exists(),
            "copy_to wrote to the host"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(
        swaps > 0 && ok > 0,
        "swaps {swaps}, ok {ok}, failed {failed}"
    );
    assert_eq!(std::fs::read(secret.join("f")).unwrap(), b"host");
    assert_eq!(std::fs::read_dir(&secret).unwrap().count(), 1);
}

/// A mount point inside the workspace is not crossed: a bind mount of a host
/// directory (same file system, caught by RESOLVE_NO_XDEV) and a tmpfs
/// (another device, caught by the walk's st_dev check as well), made in a
/// private mount namespace of a thread of its own, which ends with it.
/// Skipped (with a note) where that namespace cannot be made (not root).
#[test]
fn mount_points_are_not_crossed() {
    let f = fixture();
    let secret = f.host.join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("f"), b"host").unwrap();
    std::fs::create_dir_all(f.root.join("bind")).unwrap();
    std::fs::create_dir_all(f.root.join("t/tmpfs")).unwrap();
    std::fs::write(f.root.join("t/in"), b"in").unwrap();
    let (root, host) = (f.root.clone(), f.host.clone());
    let done = std::thread::spawn(move || {
        use rustix::mount::{mount_bind, mount_change, MountFlags, MountPropagationFlags};
        // SAFETY: NEWNS only; the descriptor table stays shared.
        let unshared =
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) };
        if unshared.is_err() {
            return false;
        }
        mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .unwrap();
        mount_bind(&secret, root.join("bind")).unwrap();
        rustix::mount::mount(
            "tmpfs",
            root.join("t/tmpfs"),
            "tmpfs",
            MountFlags::empty(),
            None,
        )
        .unwrap();
        std::fs::write(root.join("t/tmpfs/f"), b"tmpfs").unwrap();
        for p in ["bind/f", "bind", "", "t", "t/tmpfs/f"] {
            let r = copy_out(&root, p, &host.join("out"));
            assert!(is_escape(r), "copy_from {p:?}");
        }
        std::fs::write(host.join("payload"), b"p").unwrap();
        let r = copy_in(&host.join("payload"), &root, "bind/planted");
        assert!(is_escape(r), "copy_to through a bind mount");
        assert!(!secret.join("planted").exists());
        assert!(!host.join("out").exists());
        true
    })
    .join()
    .unwrap();
    if !done {
        eprintln!("mount_points_are_not_crossed: no private mount namespace here; skipped");
    }
}

//! Cases: a fully isolated workspace ([`Capabilities::isolation`](crate::Capabilities::isolation))
//! cannot see or touch its host: files, processes, system paths, /tmp,
//! privileges, namespaces, and copies a hostile sandbox tries to redirect
//! (its network: [`super::network`]).
//!
//! The commands use only what busybox provides (the Docker test image) and a
//! Debian host's /usr has (native): sh, cat, ls, grep, kill, touch, mkdir,
//! ln, mkfifo, and `nc`, `mount`, `unshare` where present (a missing one is
//! said on stderr and its sub-check skipped). Every case that would harm the
//! host if its commands ran there first proves, in the same workspace, that
//! they do not ([`prove_isolated`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Result;
use crate::orchestrator::Orchestrator;
use crate::paths::SandboxPath;
use crate::types::{CommandSpec, IsolationLevel, NetworkMode, WorkspaceId};

use crate::conformance::harness::scaled;
use crate::conformance::support::*;

/// A workspace's isolation report says full isolation, with the mechanisms
/// that enforce it (and no network when the backend claims network
/// isolation); a cleaned workspace's report is NotFound.
pub async fn isolation_is_reported_full(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let report = o.isolation(&id).await.expect("isolation report");
    assert_eq!(report.level, IsolationLevel::Full, "{report:?}");
    assert!(!report.enforced_by.is_empty(), "no mechanism: {report:?}");
    if o.capabilities().network_isolation {
        assert_eq!(report.network, NetworkMode::None, "{report:?}");
    }
    done(o, &id).await;
    expect_workspace_not_found(o.isolation(&id).await, "isolation of a cleaned workspace");
}

/// A canary file in a fresh host directory, and another in the service's
/// home (when it can be written), cannot be read or listed from inside:
/// `cat` fails and the token never shows.
pub async fn host_canary_files_are_invisible(o: &dyn Orchestrator) {
    let secret = token("canary");
    let tmp = host_dir();
    let mut canaries = vec![write_canary(tmp.path(), &secret)];
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    let in_home = tempfile::Builder::new()
        .prefix(".runbox-canary-")
        .tempdir_in(&home);
    match &in_home {
        Ok(d) => canaries.push(write_canary(d.path(), &secret)),
        Err(e) => eprintln!(
            "host_canary_files_are_invisible: no canary in {} ({e}); that sub-check is skipped",
            home.display()
        ),
    }
    let id = new_ws(o).await;
    for canary in &canaries {
        let dir = canary.parent().expect("canary dir");
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("canary dir name");
        let parent = dir.parent().expect("canary parent");
        let script = format!(
            "cat {c}; echo \"cat $?\"; ls -a {d}; echo \"ls $?\"; ls -a {p}",
            c = canary.display(),
            d = dir.display(),
            p = parent.display()
        );
        let out = sh(o, &id, &script).await;
        let all = format!(
            "{}{}",
            out.stdout_str(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(&secret),
            "the host canary {} was read: {}",
            canary.display(),
            describe(&out)
        );
        assert!(
            !out.stdout_str()
                .lines()
                .any(|l| l == "cat 0" || l == "ls 0"),
            "the host canary {} is there: {}",
            canary.display(),
            describe(&out)
        );
        assert!(
            !out.stdout_str().contains(name),
            "the host directory {} is listed: {}",
            dir.display(),
            describe(&out)
        );
    }
    done(o, &id).await;
}

/// A host process is not in the workspace's /proc (which shows the
/// command's own), `kill -0` and `kill -9` of its pid fail, and it is still
/// alive afterwards.
pub async fn host_processes_are_invisible_and_unsignalable(o: &dyn Orchestrator) {
    let mut host = HostProcess::spawn();
    let pid = host.pid();
    let id = new_ws(o).await;
    let script = format!(
        "[ -e /proc/self/status ] && echo proc; [ -e /proc/{pid} ] && echo visible; \
         kill -0 {pid} 2>/dev/null && echo signalable; kill -9 {pid} 2>/dev/null && echo killed; \
         echo end"
    );
    let out = sh(o, &id, &script).await;
    expect_exit(&out, 0);
    assert_eq!(
        out.stdout_str().split_whitespace().collect::<Vec<_>>(),
        ["proc", "end"],
        "host pid {pid}: {}",
        describe(&out)
    );
    assert!(host.is_alive(), "the host process {pid} was killed");
    done(o, &id).await;
}

/// `kill -9 -1` inside kills only the workspace's own processes. It runs
/// only once isolation is proven in that workspace (and in a second one);
/// afterwards a host process and the second workspace are alive and a new
/// workspace runs commands.
pub async fn kill_all_inside_harms_nothing_outside(o: &dyn Orchestrator) {
    let mut host = HostProcess::spawn();
    let other = new_ws(o).await;
    let id = new_ws(o).await;
    prove_isolated(o, &id, &mut host).await;
    prove_isolated(o, &other, &mut host).await;
    let cmd = command(
        CommandSpec::shell("kill -9 -1; echo done").timeout(scaled(Duration::from_secs(30))),
    );
    let bound = scaled(Duration::from_secs(90));
    match tokio::time::timeout(bound, o.run_command(&id, &cmd)).await {
        Err(_) => panic!("kill -9 -1 did not return within {bound:?}"),
        // Whether the command itself survives its own kill is the
        // backend's business (a container whose init's child died stops).
        Ok(r) => eprintln!("kill -9 -1 answered {r:?}"),
    }
    assert!(host.is_alive(), "kill -9 -1 inside killed a host process");
    let out = sh(o, &other, "echo still here").await;
    expect_exit(&out, 0);
    assert_eq!(
        out.stdout,
        b"still here\n",
        "another workspace: {}",
        describe(&out)
    );
    let next = new_ws(o).await;
    let out = sh(o, &next, "echo alive").await;
    expect_exit(&out, 0);
    assert_eq!(
        out.stdout,
        b"alive\n",
        "a new workspace: {}",
        describe(&out)
    );
    done(o, &next).await;
    done(o, &other).await;
    done(o, &id).await;
}

/// /usr, /etc and / refuse new files and directories (only after isolation
/// is proven, so a failure never writes the host's), while /tmp and the
/// workspace take them.
pub async fn system_paths_are_read_only(o: &dyn Orchestrator) {
    let mut host = HostProcess::spawn();
    let id = new_ws(o).await;
    prove_isolated(o, &id, &mut host).await;
    let name = token("ro");
    let targets = [
        format!("/usr/{name}"),
        format!("/etc/{name}"),
        format!("/{name}"),
    ];
    let mut script =
        String::from("for d in /usr /etc /; do [ -d $d ] || echo \"missing $d\"; done; ");
    for t in &targets {
        script.push_str(&format!(
            "touch {t} 2>/dev/null && echo \"wrote {t}\"; mkdir {t}.d 2>/dev/null && echo \"made {t}.d\"; \
             [ -e {t} ] && echo \"exists {t}\"; rm -rf {t} {t}.d 2>/dev/null; "
        ));
    }
    script.push_str(&format!(
        "touch /tmp/{name} || echo \"tmp refused\"; touch ./{name} || echo \"workspace refused\"; echo checked"
    ));
    let out = sh(o, &id, &script).await;
    expect_exit(&out, 0);
    let leaked: Vec<String> = targets
        .iter()
        .flat_map(|t| [t.clone(), format!("{t}.d")])
        .filter(|t| Path::new(t).exists())
        .collect();
    for t in &leaked {
        let _ = std::fs::remove_file(t);
        let _ = std::fs::remove_dir(t);
    }
    assert!(leaked.is_empty(), "written on the host: {leaked:?}");
    assert_eq!(out.stdout_str().trim(), "checked", "{}", describe(&out));
    done(o, &id).await;
}

/// A file written to /tmp in one workspace is there for its later commands,
/// absent in another workspace and absent from the host's /tmp.
pub async fn tmp_is_private_to_each_workspace(o: &dyn Orchestrator) {
    let name = token("tmp");
    let path = format!("/tmp/{name}");
    let a = new_ws(o).await;
    let b = new_ws(o).await;
    expect_exit(&sh(o, &a, &format!("echo {name} > {path}")).await, 0);
    let out = sh(o, &b, &format!("cat {path}")).await;
    assert!(
        !out.status.success(),
        "workspace b sees a's /tmp: {}",
        describe(&out)
    );
    assert!(!out.stdout_str().contains(&name), "{}", describe(&out));
    assert!(!Path::new(&path).exists(), "{path} is on the host");
    let out = sh(o, &a, &format!("cat {path}")).await;
    expect_exit(&out, 0);
    assert_eq!(out.stdout_str().trim(), name, "{}", describe(&out));
    done(o, &a).await;
    done(o, &b).await;
}

/// A command runs with no effective capabilities, under no_new_privs and
/// a seccomp filter.
pub async fn commands_run_without_privileges(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let out = sh(o, &id, "cat /proc/self/status").await;
    expect_exit(&out, 0);
    let status = out.stdout_str();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {k} in /proc/self/status: {status}"))
    };
    assert_eq!(field("CapEff"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs"), "1", "{status}");
    assert_eq!(field("Seccomp"), "2", "{status}");
    done(o, &id).await;
}

/// `mount` and `unshare` (user, mount and network namespaces) fail inside,
/// and nothing gets mounted; only after isolation is proven.
pub async fn mount_and_unshare_fail_inside(o: &dyn Orchestrator) {
    let mut host = HostProcess::spawn();
    let id = new_ws(o).await;
    prove_isolated(o, &id, &mut host).await;
    let target = format!("/tmp/{}", token("mnt"));
    let script = format!(
        "if command -v mount >/dev/null 2>&1; then mkdir -p {target} || echo \"no target\"; \
         mount -t tmpfs runbox {target} 2>/dev/null && echo mounted; grep -q ' {target} ' /proc/self/mounts && echo listed; \
         else echo no-mount; fi; \
         if command -v unshare >/dev/null 2>&1; then for f in -U -m -n; do unshare $f true 2>/dev/null && echo \"unshared $f\"; done; \
         else echo no-unshare; fi; echo checked"
    );
    let out = sh(o, &id, &script).await;
    expect_exit(&out, 0);
    let text = out.stdout_str();
    let mut lines: Vec<&str> = text.lines().collect();
    for tool in ["no-mount", "no-unshare"] {
        if let Some(i) = lines.iter().position(|l| *l == tool) {
            eprintln!("mount_and_unshare_fail_inside: {tool} inside; that sub-check is skipped");
            lines.remove(i);
        }
    }
    assert_eq!(lines, ["checked"], "{}", describe(&out));
    done(o, &id).await;
}

/// copy_from of a symlink to a host canary (directly, as a directory, and
/// through /proc/1/root), of a directory holding such a link, of a FIFO,
/// and of a path a command swaps between a directory and such a link in a
/// loop meanwhile: each returns within a bound, and nothing it writes on
/// the host holds or leads to the canary's content.
pub async fn copy_from_never_yields_host_content_or_hangs(o: &dyn Orchestrator) {
    let secret = token("copy-canary");
    let host = host_dir();
    let canary_dir = host.path().join("canary");
    std::fs::create_dir(&canary_dir).expect("canary dir");
    let canary = write_canary(&canary_dir, &secret);
    let out_root = host.path().join("out");
    std::fs::create_dir(&out_root).expect("out dir");
    let id = new_ws(o).await;
    let c = canary.display();
    let cd = canary_dir.display();
    let setup = format!(
        "ln -s {c} to-file && ln -s {cd} to-dir && ln -s /proc/1/root{c} via-proc && \
         mkdir d && ln -s {c} d/link && mkfifo fifo && echo set"
    );
    let out = sh(o, &id, &setup).await;
    expect_exit(&out, 0);
    let mut n = 0;
    for p in [
        "to-file",
        "to-dir",
        "to-dir/canary",
        "via-proc",
        "d",
        "d/link",
        "fifo",
    ] {
        n += 1;
        let dest = out_root.join(format!("c{n}"));
        let r = bounded_copy_from(o, &id, &sandbox(p), &dest).await;
        expect_no_host_content(
            &dest,
            &canary_dir,
            &secret,
            &format!("copy_from {p} ({r:?})"),
        );
    }

    // The swap loop runs until a stop file appears (or its timeout).
    let swap = format!(
        "touch started; i=0; while [ ! -e stop ]; do rm -rf race; mkdir race; echo inside > race/canary; \
         rm -rf race; ln -s {cd} race; i=$((i + 1)); done; rm -rf race; echo \"swapped $i\""
    );
    let swap_cmd = command(CommandSpec::shell(swap).timeout(scaled(Duration::from_secs(120))));
    let swapping = o.run_command(&id, &swap_cmd);
    let copying = async {
        let mut started = false;
        for _ in 0..100 {
            if sh(o, &id, "test -e started").await.status.success() {
                started = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut results = Vec::new();
        if started {
            for i in 0..40 {
                let p = if i % 2 == 0 { "race/canary" } else { "race" };
                let dest = out_root.join(format!("race{i}"));
                let r = bounded_copy_from(o, &id, &sandbox(p), &dest).await;
                expect_no_host_content(
                    &dest,
                    &canary_dir,
                    &secret,
                    &format!("racing copy_from {p} ({r:?})"),
                );
                results.push(r.is_ok());
            }
        }
        expect_exit(&sh(o, &id, "touch stop").await, 0);
        (started, results)
    };
    let (swapped, (started, results)) = tokio::join!(swapping, copying);
    let swapped = swapped.expect("the swap loop");
    assert!(
        started,
        "the swap loop never started: {}",
        describe(&swapped)
    );
    expect_exit(&swapped, 0);
    let rounds: u64 = swapped
        .stdout_str()
        .trim()
        .strip_prefix("swapped ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        rounds > 0,
        "the swap loop did not run: {}",
        describe(&swapped)
    );
    eprintln!(
        "copy_from under a swap loop of {rounds} rounds: {} of {} copies succeeded",
        results.iter().filter(|ok| **ok).count(),
        results.len()
    );
    assert_eq!(
        std::fs::read(&canary).expect("canary"),
        secret.as_bytes(),
        "the host canary changed"
    );
    done(o, &id).await;
}

/// Writes `dir/canary` holding `secret`; returns its path.
fn write_canary(dir: &Path, secret: &str) -> PathBuf {
    let p = dir.join("canary");
    std::fs::write(&p, secret).expect("write canary");
    p
}

/// copy_from bounded in time: a hang fails the case.
async fn bounded_copy_from(
    o: &dyn Orchestrator,
    id: &WorkspaceId,
    src: &SandboxPath,
    dest: &Path,
) -> Result<()> {
    let bound = scaled(Duration::from_secs(30));
    match tokio::time::timeout(bound, o.copy_from(id, src, dest)).await {
        Ok(r) => r,
        Err(_) => panic!("copy_from {src} did not return within {bound:?}"),
    }
}

/// Nothing under `dest` (which may not exist) is a FIFO, socket or device,
/// holds `secret`, or is a link to a file holding it or to a directory
/// under `canary_dir`. Never opens anything but regular files.
fn expect_no_host_content(dest: &Path, canary_dir: &Path, secret: &str, what: &str) {
    let Ok(md) = std::fs::symlink_metadata(dest) else {
        return;
    };
    let ft = md.file_type();
    if ft.is_dir() {
        for e in std::fs::read_dir(dest).expect("read_dir").flatten() {
            expect_no_host_content(&e.path(), canary_dir, secret, what);
        }
    } else if ft.is_file() {
        let data = std::fs::read(dest).expect("read a copied file");
        assert!(
            !String::from_utf8_lossy(&data).contains(secret),
            "{what}: {} holds the host canary",
            dest.display()
        );
    } else if ft.is_symlink() {
        if let Ok(target) = std::fs::canonicalize(dest) {
            assert!(
                !target.starts_with(canary_dir),
                "{what}: {} leads to the host canary",
                dest.display()
            );
        }
    } else {
        panic!("{what}: {} is a special file ({ft:?})", dest.display());
    }
}

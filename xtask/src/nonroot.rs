//! `cargo xtask nonroot [--user NAME]`: the native conformance suite (and
//! crates/orchestrator-native/tests/nonroot.rs) run as an unprivileged user.
//!
//! As root it creates the user if missing (default `runbox-ci`, a system
//! user without a home or login shell), copies the test binaries into a
//! directory that user owns and runs them through `setpriv` with a clean
//! environment whose HOME, TMPDIR and RUNBOX_WORKSPACE_ROOT point there (so
//! the workspace root is the user's and is removed afterwards). Not as root, it runs them as
//! the current user.
//!
//! Without writable cgroups the backend falls back to rlimits. The task
//! asserts: at least 30 cases passed, none failed, and the ignored cases are
//! exactly the cgroup-only ones (OOM detection, CPU bandwidth), so the
//! isolation cases ran (rootless, `RUNBOX_NATIVE_ISOLATION=full`); the fork
//! bomb case must pass (RLIMIT_NPROC binds non-root users); the nonroot
//! tests all pass; the user has no process left afterwards.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

use crate::{is_root, run};

/// Cases that need a cgroup and are ignored on the rlimit fallback.
const CGROUP_ONLY: [&str; 2] = ["memory_limit_reports_oom", "cpus_limit_throttles"];
/// Cases that must pass unprivileged even though they concern limits.
const MUST_PASS: [&str; 4] = [
    "pids_limit_contains_fork_bomb",
    "cpu_time_limit_ends_busy_loop",
    "file_size_limit",
    "open_files_limit",
];
const MIN_PASSED: u64 = 30;
/// The case run on its own (see below).
const ALONE: &str = "pids_limit_contains_fork_bomb";

fn output_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn ensure_user(user: &str) -> Result<(u32, u32)> {
    if !Command::new("id")
        .arg("-u")
        .arg(user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success()
    {
        run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            user,
        ]))?;
    }
    let uid = output_of(Command::new("id").args(["-u", user]))?.parse()?;
    let gid = output_of(Command::new("id").args(["-g", user]))?.parse()?;
    ensure!(uid != 0, "user {user} is root");
    Ok((uid, gid))
}

struct Outcome {
    passed: u64,
    failed: u64,
    ignored: BTreeSet<String>,
    ok: BTreeSet<String>,
}

/// Runs a libtest(-mimic) binary, echoing its output, and parses it.
fn run_suite(bin: &Path, args: &[&str], work: &Path, user: Option<&str>) -> Result<Outcome> {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={u}"))
                .arg(format!("--regid={u}"))
                .arg("--init-groups")
                .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", work)
        .env("TMPDIR", work)
        .env("RUNBOX_WORKSPACE_ROOT", work.join("workspaces"))
        .env("LANG", "C.UTF-8")
        .env("RUST_BACKTRACE", "1")
        // Rootless full isolation: a fallback to host processes would
        // leave the isolation cases ignored and fail the lane.
        .env("RUNBOX_NATIVE_ISOLATION", "full")
        .current_dir(work);
    if let Ok(scale) = std::env::var("RUNBOX_TEST_TIME_SCALE") {
        cmd.env("RUNBOX_TEST_TIME_SCALE", scale);
    }
    eprintln!("xtask: running {cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let mut o = Outcome {
        passed: 0,
        failed: 0,
        ignored: BTreeSet::new(),
        ok: BTreeSet::new(),
    };
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, result)) = rest.split_once(" ... ") {
                let name = name.trim().to_string();
                let result = result.trim();
                if result.starts_with("ignored") {
                    o.ignored.insert(name);
                } else if result == "ok" {
                    o.ok.insert(name);
                }
            }
        }
    }
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains("test result:"))
        .context("the suite printed no summary")?;
    let count = |what: &str| -> Result<u64> {
        let end = summary
            .find(&format!(" {what}"))
            .with_context(|| format!("no {what} count in {summary:?}"))?;
        Ok(summary[..end]
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap_or("")
            .parse()?)
    };
    o.passed = count("passed")?;
    o.failed = count("failed")?;
    ensure!(
        count("ignored")? == o.ignored.len() as u64,
        "ignored count does not match the ignored lines"
    );
    if !out.status.success() && o.failed == 0 {
        bail!("{} failed: {}", bin.display(), out.status);
    }
    Ok(o)
}

/// Pids of processes whose real uid is `uid` (zombies included when
/// `zombies`).
fn processes_of(uid: u32, zombies: bool) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let ruid = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|u| u.parse::<u32>().ok());
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("zombie"));
        if ruid == Some(uid) && (zombies || !zombie) {
            v.push(pid);
        }
    }
    v
}

pub fn nonroot(args: &[String]) -> Result<()> {
    let mut user = "runbox-ci".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--user" => user = it.next().context("--user needs a name")?.clone(),
            other => bail!("cargo xtask nonroot: unknown argument {other:?}; usage: cargo xtask nonroot [--user NAME]"),
        }
    }
    let conformance = crate::vm_test::build_native_test("conformance")?;
    let nonroot_tests = crate::vm_test::build_native_test("nonroot")?;

    let work = std::env::temp_dir().join(format!("runbox-nonroot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir(&work).with_context(|| format!("mkdir {}", work.display()))?;
    let result = (|| -> Result<()> {
        let (as_user, uid) = if is_root() {
            let (uid, gid) = ensure_user(&user)?;
            run(Command::new("chown").arg(format!("{uid}:{gid}")).arg(&work))?;
            run(Command::new("chmod").arg("0700").arg(&work))?;
            (Some(user.as_str()), uid)
        } else {
            eprintln!("xtask nonroot: not root; running the suites as the current user");
            (None, output_of(Command::new("id").arg("-u"))?.parse()?)
        };
        let mut bins = Vec::new();
        for (src, name) in [(&conformance, "conformance"), (&nonroot_tests, "nonroot")] {
            let dst = work.join(name);
            std::fs::copy(src, &dst)
                .with_context(|| format!("copy {} to {}", src.display(), dst.display()))?;
            if as_user.is_some() {
                run(Command::new("chown").arg(&user).arg(&dst))?;
            }
            run(Command::new("chmod").arg("0755").arg(&dst))?;
            bins.push(dst);
        }

        // RLIMIT_NPROC counts every process and thread of the user: the
        // suite's own threads and the processes of cases running at the
        // same time. So the fork bomb case runs alone, after the rest.
        let mut conf = run_suite(&bins[0], &["--skip", ALONE], &work, as_user)?;
        // Zombies count too, and orphans are reaped by pid 1, which may
        // take its time (seconds, on our machines): wait until the user
        // has no task left.
        if as_user.is_some() {
            let t = std::time::Instant::now();
            while !processes_of(uid, true).is_empty() && t.elapsed().as_secs() < 60 {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            eprintln!(
                "xtask nonroot: {} tasks of uid {uid} left after {:.1}s of waiting",
                processes_of(uid, true).len(),
                t.elapsed().as_secs_f64()
            );
        }
        let alone = run_suite(
            &bins[0],
            &["--exact", ALONE, "--test-threads=1"],
            &work,
            as_user,
        )?;
        ensure!(
            alone.passed + alone.failed == 1,
            "{ALONE} did not run on its own"
        );
        conf.passed += alone.passed;
        conf.failed += alone.failed;
        conf.ok.extend(alone.ok);
        conf.ignored.extend(alone.ignored);
        let expected: BTreeSet<String> = CGROUP_ONLY.iter().map(|s| s.to_string()).collect();
        println!(
            "nonroot: conformance as uid {uid}: {} passed, {} failed, ignored {:?}",
            conf.passed, conf.failed, conf.ignored
        );
        ensure!(
            conf.failed == 0,
            "{} conformance cases failed unprivileged",
            conf.failed
        );
        ensure!(
            conf.passed >= MIN_PASSED,
            "only {} conformance cases passed unprivileged (at least {MIN_PASSED} expected)",
            conf.passed
        );
        ensure!(
            conf.ignored == expected,
            "ignored cases {:?}, expected exactly the cgroup-only ones {:?}",
            conf.ignored,
            expected
        );
        for case in MUST_PASS {
            ensure!(conf.ok.contains(case), "{case} did not pass unprivileged");
        }

        let nr = run_suite(&bins[1], &[], &work, as_user)?;
        ensure!(
            nr.failed == 0 && nr.ignored.is_empty() && nr.passed >= 4,
            "nonroot tests: {} passed, {} failed, ignored {:?}",
            nr.passed,
            nr.failed,
            nr.ignored
        );
        println!("nonroot: rlimit-fallback tests: {} passed", nr.passed);

        if as_user.is_some() {
            let left = processes_of(uid, false);
            if !left.is_empty() {
                for pid in &left {
                    // Processes of the test user that the suite left: ours.
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                bail!("processes of {user} left after the suites: {left:?}");
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result?;
    println!("nonroot: PASSED");
    Ok(())
}

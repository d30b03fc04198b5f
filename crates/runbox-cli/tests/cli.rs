//! Black-box tests of the `runbox` binary: exit codes, the `--json` schema,
//! copies, stdin, live output, flag errors, isolation and mounts,
//! `backends`, `list`/`show` and `gc` after a killed run, and a docker run.
//!
//! Every test has its own state directory and workspace root (temp dirs)
//! and checks that no workspace, metadata or process is left behind.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_runbox");
/// No single runbox invocation in these tests may take longer.
const DEADLINE: Duration = Duration::from_secs(120);

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("runbox-cli-test-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("ws")).expect("ws root");
        Self { dir }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn ws_root(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `runbox` with this test's state dir and workspace root, a clean
    /// environment otherwise (no RUST_LOG, no inherited state dir).
    fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_remove("RUST_LOG")
            .env_remove("RUNBOX_STATE_DIR")
            .env("RUNBOX_WORKSPACE_ROOT", self.ws_root())
            .env("RUNBOX_STATE_DIR", self.state())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        output(self.cmd().args(args))
    }

    /// `runbox run --json ARGS`: the exit code and the parsed object.
    fn json(&self, args: &[&str]) -> (i32, Value) {
        let mut a = vec!["run", "--json"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        (code(&out), parse_one_json(&out))
    }

    /// Asserts nothing is left in the workspace root.
    fn assert_clean(&self) {
        let mut left = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.ws_root()) {
            for e in rd.flatten() {
                left.push(format!("workspace {}", e.path().display()));
            }
        }
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_clean();
        }
    }
}

fn wait_deadline(child: &mut Child, deadline: Duration) -> bool {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if start.elapsed() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return false,
        }
    }
}

/// Runs to the end, killing it after [`DEADLINE`]; reads the pipes on
/// threads so a full pipe cannot deadlock.
fn output(cmd: &mut Command) -> Output {
    let mut child = cmd.spawn().expect("spawn runbox");
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    if !wait_deadline(&mut child, DEADLINE) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("runbox did not finish within {DEADLINE:?}: {cmd:?}");
    }
    let status = child.wait().expect("wait");
    Output {
        status,
        stdout: t1.join().unwrap_or_default(),
        stderr: t2.join().unwrap_or_default(),
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or_else(|| {
        panic!(
            "runbox was killed by a signal: {:?}; stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn parse_one_json(out: &Output) -> Value {
    let s = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one JSON line on stdout, got {s:?} (stderr {:?})",
        stderr(out)
    );
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {s:?}"))
}

/// Asserts a runbox failure: exit 125, exactly one line on stderr that
/// names `flag` (and contains `needle`).
fn assert_flag_error(out: &Output, flag: &str, needle: &str) {
    let err = stderr(out);
    assert_eq!(code(out), 125, "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got {err:?}");
    assert!(
        lines[0].starts_with("runbox: ") && lines[0].contains(flag),
        "{flag} not named in {err:?}"
    );
    assert!(lines[0].contains(needle), "{needle:?} not in {err:?}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
}

/// Pids of processes whose whole command line (argv joined by spaces) is
/// `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
                let s = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if s.trim_end() == needle {
                    v.push(pid);
                }
            }
        }
    }
    v
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// exit codes
// ---------------------------------------------------------------------------

#[test]
fn exit_code_is_the_commands_own() {
    let sb = Sandbox::new();
    assert_eq!(code(&sb.run(&["run", "--", "true"])), 0);
    assert_eq!(code(&sb.run(&["run", "--", "sh", "-c", "exit 7"])), 7);
    assert_eq!(code(&sb.run(&["run", "--", "sh", "-c", "exit 255"])), 255);
}

#[test]
fn exit_code_for_a_signal_is_128_plus_n() {
    let sb = Sandbox::new();
    let (c, j) = sb.json(&["--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(c, 143);
    assert_eq!(j["status"], "signaled");
    assert_eq!(j["signal"], 15);
    assert_eq!(j["exit_code"], Value::Null);
    assert_eq!(
        code(&sb.run(&["run", "--", "sh", "-c", "kill -KILL $$"])),
        137
    );
}

#[test]
fn timeout_gives_124_and_kills_escaped_children() {
    let sb = Sandbox::new();
    let marker = "9871";
    let start = Instant::now();
    let (c, j) = sb.json(&[
        "--timeout",
        "500ms",
        "--",
        "sh",
        "-c",
        &format!("(sleep {marker} &) ; setsid sleep {marker} & sleep {marker}"),
    ]);
    assert_eq!(c, 124, "{j}");
    assert_eq!(j["status"], "timed_out");
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(j["limits"]["timeout"]["requested"], 500);
    wait_until("escaped children to die", Duration::from_secs(10), || {
        processes_with(&format!("sleep {marker}")).is_empty()
    });
}

#[test]
fn command_not_found_gives_127_and_one_line() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--", "runbox-no-such-command-xyz"]);
    assert_eq!(code(&out), 127);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains("runbox-no-such-command-xyz"), "{err}");
    let (c, j) = sb.json(&["--", "runbox-no-such-command-xyz"]);
    assert_eq!(c, 127);
    assert_eq!(j["status"], "failed_to_start");
    assert_eq!(j["exit_code"], Value::Null);
    assert!(j["error"].is_string());
}

#[test]
fn command_that_cannot_be_invoked_gives_126() {
    let sb = Sandbox::new();
    let script = sb.path("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let spec = format!("{}:script.sh", script.display());
    let (c, j) = sb.json(&["--copy-in", &spec, "--", "./script.sh"]);
    assert_eq!(c, 126, "{j}");
    assert_eq!(j["status"], "failed_to_start");
}

#[test]
fn memory_limit_kill_gives_137() {
    let sb = Sandbox::new();
    let (c, j) = sb.json(&[
        "--memory",
        "32M",
        "--",
        "sh",
        "-c",
        "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(j["limits"]["memory"]["requested"], 32 << 20);
    let by = j["limits"]["memory"]["enforced_by"].as_str().unwrap_or("");
    if by.starts_with("cgroup") || by == "docker" {
        assert_eq!(c, 137, "{j}");
        assert_eq!(j["status"], "memory_limit_exceeded");
    } else {
        // rlimit fallback: the allocation fails inside the command instead.
        assert_ne!(c, 0, "{j}");
        assert_ne!(j["stdout"], "survived\n");
    }
}

#[test]
fn output_limit_stops_the_command_with_137() {
    let sb = Sandbox::new();
    let (c, j) = sb.json(&["--output-limit", "1K", "--", "sh", "-c", "yes"]);
    assert_eq!(c, 137, "{j}");
    assert_eq!(j["status"], "output_limit_exceeded");
    assert_eq!(j["stdout_truncated"], true);
    assert!(j["stdout"].as_str().unwrap().len() <= 1024);
    assert_eq!(j["limits"]["output_limit"]["requested"], 1024);
    assert_eq!(j["limits"]["output_limit"]["enforced_by"], "runbox");
}

#[test]
fn runbox_failures_give_125_with_one_line_naming_the_flag() {
    let sb = Sandbox::new();
    let input = sb.path("in.txt");
    std::fs::write(&input, "x").unwrap();
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (vec!["--memory".into(), "64X".into()], "--memory", "64X"),
        (
            vec!["--memory".into(), "0".into()],
            "--memory",
            "out of range",
        ),
        (
            vec!["--memory".into(), "-1".into()],
            "--memory",
            "invalid size",
        ),
        (
            vec!["--file-size".into(), "lots".into()],
            "--file-size",
            "invalid size",
        ),
        (
            vec!["--output-limit".into(), "1.2.3K".into()],
            "--output-limit",
            "invalid size",
        ),
        (
            vec!["--timeout".into(), "10x".into()],
            "--timeout",
            "invalid duration",
        ),
        (
            vec!["--timeout".into(), "0".into()],
            "--timeout",
            "greater than zero",
        ),
        (
            vec!["--cpu-time".into(), "soon".into()],
            "--cpu-time",
            "invalid duration",
        ),
        (vec!["--cpus".into(), "lots".into()], "--cpus", "invalid"),
        (vec!["--cpus".into(), "0".into()], "--cpus", "out of range"),
        (
            vec!["--pids".into(), "-5".into()],
            "--pids",
            "invalid number",
        ),
        (
            vec!["--open-files".into(), "0".into()],
            "--open-files",
            "out of range",
        ),
        (
            vec!["--copy-in".into(), "nocolon".into()],
            "--copy-in",
            "malformed copy spec",
        ),
        (
            vec!["--copy-in".into(), format!("{}:../x", input.display())],
            "--copy-in",
            "invalid sandbox path",
        ),
        (
            vec!["--copy-in".into(), "/no/such/file/xyz:x".into()],
            "--copy-in",
            "cannot read",
        ),
        (
            vec!["--copy-out".into(), "out.txt".into()],
            "--copy-out",
            "malformed copy spec",
        ),
        (
            vec!["--copy-out".into(), "/etc/passwd:/tmp/x".into()],
            "--copy-out",
            "invalid sandbox path",
        ),
        (
            vec!["--env".into(), "NOEQUALS".into()],
            "--env",
            "KEY=VALUE",
        ),
        (vec!["--workdir".into(), "../up".into()], "--workdir", ".."),
        (
            vec!["--backend".into(), "nosuchbackend".into()],
            "--backend",
            "unknown backend",
        ),
        (
            vec!["--image".into(), "busybox".into()],
            "--image",
            "native",
        ),
        (
            vec!["--stdin".into(), "/no/such/stdin/file".into()],
            "--stdin",
            "cannot read",
        ),
        (vec!["--bogus-flag".into()], "--bogus-flag", "unknown flag"),
    ];
    for (flags, flag, needle) in cases {
        let mut args: Vec<&str> = vec!["run"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(["--", "echo", "must-not-run"]);
        let out = sb.run(&args);
        assert_flag_error(&out, flag, needle);
    }
    // A missing value.
    let out = sb.run(&["run", "--memory"]);
    assert_flag_error(&out, "--memory", "value");
    // No command.
    let out = sb.run(&["run", "--memory", "64M"]);
    assert_eq!(code(&out), 125);
    assert_eq!(stderr(&out).lines().count(), 1);
    // Nothing was recorded by failed flag checks.
    let listed = parse_one_json(&sb.run(&["list", "--json"]));
    assert_eq!(listed["executions"].as_array().map(Vec::len), Some(0));
}

#[test]
fn runbox_failure_with_json_prints_one_error_object() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--json", "--timeout", "forever", "--", "true"]);
    assert_eq!(code(&out), 125);
    let j = parse_one_json(&out);
    assert_eq!(j["status"], "error");
    assert_eq!(j["error"]["flag"], "--timeout");
    assert!(j["error"]["message"].as_str().unwrap().contains("forever"));
    assert!(j.as_object().unwrap().contains_key("isolation"), "{j}");
    assert!(j["isolation"].is_null(), "{j}");
    assert_eq!(stderr(&out).lines().count(), 1);
}

#[test]
fn strict_fails_before_running_when_a_limit_is_not_enforced() {
    let sb = Sandbox::new();
    let marker = sb.path("ran");
    let script = format!("touch {}", marker.display());
    // Find a limit this host does not enforce (none, as root with cgroups).
    let (_, j) = sb.json(&[
        "--cpus", "0.5", "--pids", "64", "--memory", "64M", "--", "true",
    ]);
    let unenforced: Vec<String> = j["limits"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["enforced_by"].is_null())
        .map(|(k, _)| k.clone())
        .collect();
    // Host processes: the marker is a host path (an isolated command could
    // not reach it).
    let out = sb.run(&[
        "run",
        "--strict",
        "--isolation",
        "none",
        "--cpus",
        "0.5",
        "--pids",
        "64",
        "--memory",
        "64M",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    if unenforced.is_empty() {
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(marker.exists());
        eprintln!("note: every limit is enforced here; strict passes");
    } else {
        let flag = format!("--{}", unenforced[0].replace('_', "-"));
        assert_flag_error(&out, &flag, "cannot be enforced");
        assert!(!marker.exists(), "the command ran despite --strict");
    }
}

// ---------------------------------------------------------------------------
// --json schema
// ---------------------------------------------------------------------------

#[test]
fn json_has_every_field_with_its_type() {
    let sb = Sandbox::new();
    let (c, j) = sb.json(&[
        "--memory",
        "64M",
        "--cpus",
        "0.5",
        "--pids",
        "100",
        "--timeout",
        "10s",
        "--cpu-time",
        "5s",
        "--file-size",
        "1M",
        "--open-files",
        "64",
        "--output-limit",
        "1M",
        "--",
        "sh",
        "-c",
        "echo out; printf 'bad \\377 utf8' >&2; exit 3",
    ]);
    assert_eq!(c, 3);
    let o = j.as_object().expect("an object");
    let fields = [
        "status",
        "exit_code",
        "signal",
        "stdout",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
        "wall_time_ms",
        "cpu_time_ms",
        "peak_memory_bytes",
        "backend",
        "workspace_id",
        "execution_id",
        "limits",
        "isolation",
    ];
    for f in fields {
        assert!(o.contains_key(f), "missing {f}: {j}");
    }
    assert_eq!(j["status"], "exited");
    assert_eq!(j["exit_code"], 3);
    assert!(j["signal"].is_null());
    assert_eq!(j["stdout"], "out\n");
    assert_eq!(j["stderr"], "bad \u{fffd} utf8");
    assert_eq!(j["stdout_truncated"], false);
    assert_eq!(j["stderr_truncated"], false);
    assert!(j["wall_time_ms"].is_u64());
    assert!(j["cpu_time_ms"].is_u64() || j["cpu_time_ms"].is_null());
    assert!(j["peak_memory_bytes"].is_u64() || j["peak_memory_bytes"].is_null());
    assert_eq!(j["backend"], "native");
    assert!(j["workspace_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(j["execution_id"].as_str().is_some_and(|s| !s.is_empty()));
    let limits = j["limits"].as_object().expect("limits object");
    let expected = [
        ("memory", serde_json::json!(64u64 << 20)),
        ("cpus", serde_json::json!(0.5)),
        ("pids", serde_json::json!(100)),
        ("timeout", serde_json::json!(10_000)),
        ("cpu_time", serde_json::json!(5_000)),
        ("file_size", serde_json::json!(1u64 << 20)),
        ("open_files", serde_json::json!(64)),
        ("output_limit", serde_json::json!(1u64 << 20)),
    ];
    assert_eq!(limits.len(), expected.len(), "{j}");
    let mechanisms = ["cgroup-v2", "cgroup-v1", "rlimit", "docker", "runbox"];
    for (k, v) in expected {
        let e = &limits[k];
        assert_eq!(e["requested"], v, "{k}: {e}");
        assert!(
            e["enforced_by"].is_null()
                || mechanisms.contains(&e["enforced_by"].as_str().unwrap_or("?")),
            "{k}: {e}"
        );
        assert!(e["note"].is_null() || e["note"].is_string(), "{k}: {e}");
        assert!(e.as_object().unwrap().contains_key("note"));
    }
    // No limits asked: an empty object.
    let (_, j) = sb.json(&["--", "true"]);
    assert_eq!(j["limits"], serde_json::json!({}));
}

// ---------------------------------------------------------------------------
// output, copies, stdin, env
// ---------------------------------------------------------------------------

#[test]
fn output_passes_through_byte_for_byte() {
    let sb = Sandbox::new();
    let out = sb.run(&[
        "run",
        "--",
        "sh",
        "-c",
        "printf 'a\\000b\\377\\n'; printf 'to-err\\001' >&2; printf 'no newline'",
    ]);
    assert_eq!(code(&out), 0);
    assert_eq!(out.stdout, b"a\0b\xff\nno newline");
    assert_eq!(out.stderr, b"to-err\x01");
}

#[test]
fn output_is_live() {
    let sb = Sandbox::new();
    let mut child = sb
        .cmd()
        .args(["run", "--", "sh", "-c", "echo first; sleep 5; echo second"])
        .spawn()
        .expect("spawn");
    let mut so = child.stdout.take().expect("stdout");
    let start = Instant::now();
    let mut buf = [0u8; 6];
    so.read_exact(&mut buf).expect("first line");
    assert_eq!(&buf, b"first\n");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "first line came only after {:?}",
        start.elapsed()
    );
    let mut rest = Vec::new();
    so.read_to_end(&mut rest).expect("rest");
    assert_eq!(rest, b"second\n");
    assert!(wait_deadline(&mut child, DEADLINE));
}

#[test]
fn copy_in_and_copy_out_whatever_the_status() {
    let sb = Sandbox::new();
    let input = sb.path("input.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&input, &data).unwrap();
    let dir = sb.path("tree");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/f.txt"), "nested").unwrap();

    let out_file = sb.path("copied.bin");
    let out_dir = sb.path("outdir");
    let out = sb.run(&[
        "run",
        "--copy-in",
        &format!("{}:data/input.bin", input.display()),
        "--copy-in",
        &format!("{}:tree", dir.display()),
        "--copy-out",
        &format!("result.bin:{}", out_file.display()),
        "--copy-out",
        &format!("tree:{}", out_dir.display()),
        "--",
        "sh",
        "-c",
        "cat data/input.bin > result.bin && echo more > tree/sub/g.txt && exit 3",
    ]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(std::fs::read(&out_file).unwrap(), data);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("sub/f.txt")).unwrap(),
        "nested"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("sub/g.txt")).unwrap(),
        "more\n"
    );

    // After a timeout too.
    let partial = sb.path("partial.txt");
    let (c, _) = sb.json(&[
        "--timeout",
        "500ms",
        "--copy-out",
        &format!("p.txt:{}", partial.display()),
        "--",
        "sh",
        "-c",
        "echo partial > p.txt; sleep 30",
    ]);
    assert_eq!(c, 124);
    assert_eq!(std::fs::read_to_string(&partial).unwrap(), "partial\n");
}

#[test]
fn copy_out_of_a_missing_file_fails_with_125_naming_the_flag() {
    let sb = Sandbox::new();
    let out = sb.run(&[
        "run",
        "--copy-out",
        &format!("never-made.txt:{}", sb.path("x").display()),
        "--",
        "true",
    ]);
    let err = stderr(&out);
    assert_eq!(code(&out), 125, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--copy-out"), "{err}");
    // The command's own result is kept.
    let (c, j) = sb.json(&[
        "--copy-out",
        &format!("never-made.txt:{}", sb.path("y").display()),
        "--",
        "sh",
        "-c",
        "echo ran; exit 3",
    ]);
    assert_eq!(c, 125);
    assert_eq!(j["status"], "exited");
    assert_eq!(j["exit_code"], 3);
    assert_eq!(j["stdout"], "ran\n");
    assert!(j["execution_id"].is_string());
    assert_eq!(j["error"]["flag"], "--copy-out");
}

#[test]
fn copy_out_through_a_symlink_escape_is_refused() {
    let sb = Sandbox::new();
    let out = sb.run(&[
        "run",
        "--copy-out",
        &format!("link:{}", sb.path("stolen").display()),
        "--",
        "ln",
        "-s",
        "/etc/passwd",
        "link",
    ]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("--copy-out"));
    assert!(!sb.path("stolen").exists());
}

#[test]
fn stdin_from_a_file_and_from_runbox_stdin() {
    let sb = Sandbox::new();
    let f = sb.path("stdin.txt");
    std::fs::write(&f, "from file\n").unwrap();
    let out = sb.run(&["run", "--stdin", f.to_str().unwrap(), "--", "cat"]);
    assert_eq!(code(&out), 0);
    assert_eq!(out.stdout, b"from file\n");

    let mut child = sb
        .cmd()
        .args([
            "run",
            "--stdin",
            "-",
            "--",
            "sh",
            "-c",
            "wc -c; cat >/dev/null",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        let mut si = child.stdin.take().expect("stdin");
        si.write_all(&vec![b'z'; 100_000]).unwrap();
    }
    let out = {
        let mut so = child.stdout.take().expect("stdout");
        let mut v = Vec::new();
        so.read_to_end(&mut v).unwrap();
        v
    };
    assert!(wait_deadline(&mut child, DEADLINE));
    assert_eq!(String::from_utf8_lossy(&out).trim(), "100000");

    // No --stdin: empty stdin, never runbox's own.
    let out = sb.run(&["run", "--", "wc", "-c"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}

#[test]
fn env_is_set_and_runbox_environment_does_not_leak() {
    let sb = Sandbox::new();
    let out = output(sb.cmd().env("RUNBOX_TEST_SECRET", "leaked").args([
        "run",
        "--env",
        "GREETING=hello world",
        "--env",
        "EMPTY=",
        "--",
        "env",
    ]));
    assert_eq!(code(&out), 0);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.lines().any(|l| l == "GREETING=hello world"), "{s}");
    assert!(s.lines().any(|l| l == "EMPTY="), "{s}");
    assert!(!s.contains("RUNBOX_TEST_SECRET"), "{s}");
    assert!(!s.contains("RUNBOX_STATE_DIR"), "{s}");
}

#[test]
fn workdir_is_used() {
    let sb = Sandbox::new();
    let f = sb.path("w.txt");
    std::fs::write(&f, "x").unwrap();
    let out = sb.run(&[
        "run",
        "--copy-in",
        &format!("{}:sub/dir/w.txt", f.display()),
        "--workdir",
        "sub/dir",
        "--",
        "ls",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout, b"w.txt\n");
}

// ---------------------------------------------------------------------------
// isolation, network, mounts
// ---------------------------------------------------------------------------

/// A backend's entry in `runbox backends --json`.
fn backend_entry(sb: &Sandbox, name: &str) -> Value {
    let j = parse_one_json(&sb.run(&["backends", "--json"]));
    j["backends"]
        .as_array()
        .and_then(|l| l.iter().find(|b| b["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// Asserts the `isolation` object of a `--json` result has exactly its
/// keys, each with a valid value, and is consistent in itself (no
/// isolation: the host's network and no mechanism).
fn assert_isolation_shape(j: &Value) {
    let iso = j["isolation"]
        .as_object()
        .unwrap_or_else(|| panic!("no isolation object: {j}"));
    let mut keys: Vec<&str> = iso.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["enforced_by", "level", "network", "note", "requested"],
        "{j}"
    );
    let one_of = |k: &str, allowed: &[&str]| {
        let v = iso[k].as_str().unwrap_or_else(|| panic!("{k}: {j}"));
        assert!(allowed.contains(&v), "{k} = {v:?}: {j}");
    };
    one_of("requested", &["auto", "full", "none"]);
    one_of("level", &["full", "none"]);
    one_of("network", &["none", "host"]);
    let by = iso["enforced_by"].as_array().expect("enforced_by array");
    assert!(by.iter().all(Value::is_string), "{j}");
    assert!(iso["note"].is_null() || iso["note"].is_string(), "{j}");
    if iso["level"] == "none" {
        assert_eq!(iso["network"], "host", "{j}");
        assert!(by.is_empty(), "{j}");
    }
}

/// Did the backend ignore the isolation settings (the trait's default
/// report)? Such a report says nothing to check beyond its shape.
fn unreported(j: &Value) -> bool {
    j["isolation"]["note"]
        .as_str()
        .is_some_and(|n| n.contains("does not report isolation"))
}

const FALLBACK: &str = "runbox: isolation auto fell back to none: ";

#[test]
fn isolation_network_and_mount_flag_errors() {
    let sb = Sandbox::new();
    let dir = sb.path("mnt");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display().to_string();
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec!["--isolation".into(), "strong".into()],
            "--isolation",
            "unknown isolation mode \"strong\" (expected one of: auto full none)",
        ),
        (
            vec!["--isolation".into(), "Full".into()],
            "--isolation",
            "unknown isolation mode",
        ),
        (
            vec!["--network".into(), "bridge".into()],
            "--network",
            "unknown network mode \"bridge\" (expected one of: none host)",
        ),
        (
            vec!["--mount".into(), "nocolon".into()],
            "--mount",
            "malformed mount spec",
        ),
        (
            vec!["--mount".into(), format!("{d}:data:rx")],
            "--mount",
            "unknown mount mode \"rx\"",
        ),
        (
            vec!["--mount".into(), format!("{d}:data:ro:extra")],
            "--mount",
            "malformed mount spec",
        ),
        (
            vec!["--mount".into(), format!("{d}:ro")],
            "--mount",
            "no SANDBOX_PATH before :ro",
        ),
        (
            vec!["--mount".into(), ":data".into()],
            "--mount",
            "non-empty",
        ),
        (
            vec!["--mount".into(), format!("{d}:../up")],
            "--mount",
            "invalid sandbox path",
        ),
        (
            vec!["--mount".into(), format!("{d}:/abs")],
            "--mount",
            "invalid sandbox path",
        ),
        (
            vec!["--mount".into(), format!("{d}:.")],
            "--mount",
            "workspace root",
        ),
        (
            vec!["--mount".into(), "/no/such/dir/xyz:data".into()],
            "--mount",
            "cannot read host path /no/such/dir/xyz",
        ),
        // A relative host path is resolved against the current directory.
        (
            vec!["--mount".into(), "no-such-relative-dir-xyz:data".into()],
            "--mount",
            "no-such-relative-dir-xyz",
        ),
    ];
    for (flags, flag, needle) in cases {
        let mut args: Vec<&str> = vec!["run"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(["--", "echo", "must-not-run"]);
        let out = sb.run(&args);
        assert_flag_error(&out, flag, needle);
    }
    for flag in ["--isolation", "--network", "--mount"] {
        let out = sb.run(&["run", flag]);
        assert_flag_error(&out, flag, "value");
    }
    // Under --json: one error object naming the flag.
    let out = sb.run(&["run", "--json", "--network", "bridge", "--", "true"]);
    assert_eq!(code(&out), 125);
    let j = parse_one_json(&out);
    assert_eq!(j["status"], "error");
    assert_eq!(j["error"]["flag"], "--network");
    assert!(j["isolation"].is_null(), "{j}");
    let listed = parse_one_json(&sb.run(&["list", "--json"]));
    assert_eq!(listed["executions"].as_array().map(Vec::len), Some(0));
}

#[test]
fn json_reports_how_the_run_was_isolated() {
    let sb = Sandbox::new();
    let native = backend_entry(&sb, "native");
    let isolates = native["isolation"] == true;

    // Asked for none: no isolation, and no fallback to report.
    let out = sb.run(&["run", "--json", "--isolation", "none", "--", "true"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let j = parse_one_json(&out);
    assert_isolation_shape(&j);
    assert_eq!(j["isolation"]["requested"], "none", "{j}");
    assert_eq!(j["isolation"]["level"], "none", "{j}");
    assert!(!stderr(&out).contains(FALLBACK), "{}", stderr(&out));

    // The default, auto.
    let out = sb.run(&["run", "--json", "--", "true"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let j = parse_one_json(&out);
    assert_isolation_shape(&j);
    let err = stderr(&out);
    let fallback_lines = err.lines().filter(|l| l.starts_with(FALLBACK)).count();
    if isolates {
        assert_eq!(j["isolation"]["requested"], "auto", "{j}");
        assert_eq!(j["isolation"]["level"], "full", "{j}");
        assert_eq!(j["isolation"]["network"], "none", "{j}");
        assert!(
            !j["isolation"]["enforced_by"].as_array().unwrap().is_empty(),
            "{j}"
        );
        assert_eq!(fallback_lines, 0, "{err}");
    } else if unreported(&j) {
        eprintln!(
            "note: native ignores --isolation here (its report: {}); only the shape is checked",
            j["isolation"]
        );
    } else {
        // Auto without the means to isolate: it ran without, and said so
        // in one line, with the backend's reason.
        assert_eq!(j["isolation"]["requested"], "auto", "{j}");
        assert_eq!(j["isolation"]["level"], "none", "{j}");
        assert!(j["isolation"]["note"].is_string(), "{j}");
        assert_eq!(fallback_lines, 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        // `backends` says why too.
        assert!(
            native["reason"].is_string(),
            "native without isolation must say why in `backends`: {native}"
        );
        // Also without --json.
        let out = sb.run(&["run", "--", "true"]);
        assert_eq!(
            stderr(&out)
                .lines()
                .filter(|l| l.starts_with(FALLBACK))
                .count(),
            1
        );
    }

    // What was reported is what is recorded.
    let id = j["execution_id"].as_str().unwrap().to_string();
    let shown = parse_one_json(&sb.run(&["show", &id, "--json"]));
    assert_eq!(shown["isolation"], j["isolation"], "{shown}");
    assert_eq!(shown["mounts"], serde_json::json!([]), "{shown}");
    let out = sb.run(&["show", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("isolation: "))
        .unwrap_or_else(|| panic!("no isolation line: {text}"));
    let level = j["isolation"]["level"].as_str().unwrap();
    assert!(
        line.contains(&format!(
            "{level} (requested {}",
            j["isolation"]["requested"].as_str().unwrap()
        )),
        "{line}"
    );

    // Full: isolated, or a failure before anything runs.
    let marker = sb.path("ran-unisolated");
    // Isolated, the host path is not there to write (a private /tmp).
    let script = format!("touch {} 2>/dev/null; exit 0", marker.display());
    let out = sb.run(&[
        "run",
        "--json",
        "--isolation",
        "full",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let j = parse_one_json(&out);
    if isolates {
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(j["isolation"]["requested"], "full", "{j}");
        assert_eq!(j["isolation"]["level"], "full", "{j}");
        assert!(!marker.exists(), "an isolated command wrote a host path");
        let (c, j) = sb.json(&["--network", "host", "--", "true"]);
        assert_eq!(c, 0, "{j}");
        assert_eq!(j["isolation"]["network"], "host", "{j}");
    } else if unreported(&j) {
        eprintln!("note: native ignores --isolation full here; not checked");
    } else {
        assert_eq!(code(&out), 125, "{j}");
        assert_eq!(j["status"], "error");
        assert_eq!(j["error"]["flag"], "--isolation", "{j}");
        assert!(!marker.exists(), "the command ran despite --isolation full");
    }
}

#[test]
fn mounts_are_honoured_or_refused_naming_the_flag() {
    let sb = Sandbox::new();
    let native = backend_entry(&sb, "native");
    let ro = sb.path("ro");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("f.txt"), "from the host\n").unwrap();
    let rw = sb.path("rw");
    std::fs::create_dir_all(&rw).unwrap();
    // The sandbox user is not the caller: let it write here.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rw, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ro_spec = format!("{}:data", ro.display());
    let rw_spec = format!("{}:out/dir:rw", rw.display());
    let out = sb.run(&[
        "run",
        "--json",
        "--mount",
        &ro_spec,
        "--mount",
        &rw_spec,
        "--",
        "sh",
        "-c",
        "cat data/f.txt; echo no > data/g.txt; echo $?; echo yes > out/dir/h.txt",
    ]);
    let j = parse_one_json(&out);
    if native["capabilities"]["mounts"] == true {
        assert_eq!(code(&out), 0, "{j}");
        let stdout = j["stdout"].as_str().unwrap();
        assert!(stdout.starts_with("from the host\n"), "{j}");
        assert_ne!(
            stdout.lines().nth(1),
            Some("0"),
            "a read-only mount was written: {j}"
        );
        assert!(!ro.join("g.txt").exists());
        assert_eq!(std::fs::read_to_string(rw.join("h.txt")).unwrap(), "yes\n");
        let id = j["execution_id"].as_str().unwrap().to_string();
        let shown = parse_one_json(&sb.run(&["show", &id, "--json"]));
        let real = |p: &std::path::Path| std::fs::canonicalize(p).unwrap().display().to_string();
        assert_eq!(
            shown["mounts"],
            serde_json::json!([
                {"host": real(&ro), "sandbox": "data", "read_only": true},
                {"host": real(&rw), "sandbox": "out/dir", "read_only": false},
            ]),
            "{shown}"
        );
    } else {
        // Refused before anything runs, blamed on --mount.
        assert_eq!(code(&out), 125, "{j}");
        assert_eq!(j["status"], "error", "{j}");
        assert_eq!(j["error"]["flag"], "--mount", "{j}");
        assert!(!rw.join("h.txt").exists());
        let out = sb.run(&["run", "--mount", &ro_spec, "--", "true"]);
        assert_flag_error(&out, "--mount", "mount");
        eprintln!("note: native cannot mount here: {}", j["error"]["message"]);
    }
}

// ---------------------------------------------------------------------------
// backends, list, show, gc
// ---------------------------------------------------------------------------

#[test]
fn backends_lists_every_registered_backend_quickly() {
    let sb = Sandbox::new();
    // A docker daemon that is not there must be reported within seconds.
    let start = Instant::now();
    let out = output(
        sb.cmd()
            .env("DOCKER_HOST", "unix:///nonexistent/runbox-test.sock")
            .args(["backends", "--json"]),
    );
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let j = parse_one_json(&out);
    let list = j["backends"].as_array().expect("backends array");
    let names: Vec<&str> = list.iter().filter_map(|b| b["name"].as_str()).collect();
    assert_eq!(names, ["docker", "native", "swarm"]);
    for b in list {
        assert!(b["available"].is_boolean());
        assert!(b["reason"].is_null() || b["reason"].is_string());
        assert!(b["description"].is_string());
        let caps = &b["capabilities"];
        for k in [
            "copy",
            "background",
            "direct_access",
            "network_isolation",
            "isolation",
            "mounts",
            "oom_detection",
        ] {
            assert!(caps[k].is_boolean(), "{k}: {b}");
        }
        assert!(caps["limits"].is_array());
        // Whether new workspaces are fully isolated, at the top level too;
        // when not, the reason says why.
        assert_eq!(b["isolation"], caps["isolation"], "{b}");
    }
    let native = list.iter().find(|b| b["name"] == "native").unwrap();
    assert_eq!(native["available"], true);
    assert_eq!(native["default"], true);
    let docker = list.iter().find(|b| b["name"] == "docker").unwrap();
    assert_eq!(docker["available"], false);
    assert!(docker["reason"].is_string());

    let out = sb.run(&["backends"]);
    assert_eq!(code(&out), 0);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("native") && s.contains("docker"), "{s}");
    // The native block: its header line, then its indented lines.
    let native_block: Vec<&str> = s
        .lines()
        .skip_while(|l| !l.starts_with("native"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .collect();
    let native_line = native_block
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("isolation: "))
        .unwrap_or_else(|| panic!("no isolation line for native: {s}"));
    if native["isolation"] == true {
        assert_eq!(native_line, "isolation: full", "{s}");
    } else {
        assert!(native_line.starts_with("isolation: none"), "{s}");
    }
}

#[test]
fn list_and_show_after_runs() {
    let sb = Sandbox::new();
    let empty = parse_one_json(&sb.run(&["list", "--json"]));
    assert_eq!(empty["executions"], serde_json::json!([]));

    let (_, a) = sb.json(&["--memory", "64M", "--", "sh", "-c", "exit 4"]);
    let (_, b) = sb.json(&["--", "echo", "hi"]);
    let ids = [
        a["execution_id"].as_str().unwrap().to_string(),
        b["execution_id"].as_str().unwrap().to_string(),
    ];
    let listed = parse_one_json(&sb.run(&["list", "--json"]));
    let got: Vec<&str> = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["execution_id"].as_str())
        .collect();
    assert_eq!(got, ids);

    let out = sb.run(&["list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&ids[0]) && text.contains(&ids[1]), "{text}");

    let shown = parse_one_json(&sb.run(&["show", &ids[0], "--json"]));
    assert_eq!(shown["execution_id"], ids[0].as_str());
    assert_eq!(shown["state"], "completed");
    assert_eq!(shown["backend"], "native");
    assert_eq!(shown["result"]["status"], "exited");
    assert_eq!(shown["result"]["exit_code"], 4);
    assert_eq!(shown["command"], serde_json::json!(["sh", "-c", "exit 4"]));
    // The same numbers `run --json` printed (bytes), not strings.
    assert_eq!(shown["limits"]["memory"]["requested"], 64 << 20, "{shown}");
    assert_eq!(
        shown["limits"]["memory"]["enforced_by"],
        a["limits"]["memory"]["enforced_by"]
    );

    let out = sb.run(&["show", &ids[1]]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("completed"));

    let out = sb.run(&["show", "ex-does-not-exist"]);
    assert_eq!(code(&out), 1);
    assert_eq!(stderr(&out).lines().count(), 1);
    assert!(out.stdout.is_empty(), "no --json, nothing on stdout");
    // With --json, stdout still carries one JSON object: the error.
    let out = sb.run(&["show", "ex-does-not-exist", "--json"]);
    assert_eq!(code(&out), 1);
    let err = parse_one_json(&out);
    assert_eq!(err["error"]["kind"], "not_found", "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ex-does-not-exist"));
    let out = sb.run(&["show", "../bad"]);
    assert_ne!(code(&out), 0);
    assert_eq!(stderr(&out).lines().count(), 1);
}

/// Whether native runs isolate here (`runbox backends` says so).
fn native_isolates(sb: &Sandbox) -> bool {
    backend_entry(sb, "native")["isolation"] == true
}

#[test]
fn gc_reaps_a_killed_run() {
    let sb = Sandbox::new();
    let marker = "9743";
    let mut child = sb
        .cmd()
        .args(["run", "--", "sleep", marker])
        .spawn()
        .expect("spawn");
    let pattern = format!("sleep {marker}");
    wait_until("the command to start", Duration::from_secs(30), || {
        !processes_with(&pattern).is_empty()
    });
    // Kill runbox itself, without a chance to clean up. An isolated
    // command ends with it (its sandbox init sees the service's end of the
    // control socket close); a host process outlives it until gc.
    let _ = child.kill();
    let _ = child.wait();
    if native_isolates(&sb) {
        wait_until(
            "the sandbox to end with runbox",
            Duration::from_secs(10),
            || processes_with(&pattern).is_empty(),
        );
    } else {
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !processes_with(&pattern).is_empty(),
            "the command died with runbox"
        );
    }
    let listed = parse_one_json(&sb.run(&["list", "--json"]));
    assert_eq!(listed["executions"][0]["state"], "running");

    let out = sb.run(&["gc", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = parse_one_json(&out);
    let recovered = report["recovered"].as_array().expect("recovered");
    assert_eq!(recovered.len(), 1, "{report}");
    assert_eq!(recovered[0]["cleaned"], true);
    assert_eq!(recovered[0]["previous_state"], "running");

    wait_until("the orphan to die", Duration::from_secs(10), || {
        processes_with(&pattern).is_empty()
    });
    sb.assert_clean();
    let listed = parse_one_json(&sb.run(&["list", "--json"]));
    assert_eq!(listed["executions"][0]["state"], "failed");

    // Nothing left: a second gc has nothing to do.
    let out = sb.run(&["gc"]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to clean up"));
}

#[test]
fn sigterm_tears_the_sandbox_down() {
    let sb = Sandbox::new();
    let marker = "9744";
    let mut child = sb
        .cmd()
        .args(["run", "--", "sleep", marker])
        .spawn()
        .expect("spawn");
    let pattern = format!("sleep {marker}");
    wait_until("the command to start", Duration::from_secs(30), || {
        !processes_with(&pattern).is_empty()
    });
    // SAFETY: kill(2) of our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(wait_deadline(&mut child, Duration::from_secs(30)));
    let st = child.wait().unwrap();
    let mut e = String::new();
    if let Some(mut se) = child.stderr.take() {
        let _ = se.read_to_string(&mut e);
    }
    assert_eq!(st.code(), Some(143), "{st:?} {e}");
    assert!(processes_with(&pattern).is_empty());
}

// ---------------------------------------------------------------------------
// docker
// ---------------------------------------------------------------------------

#[test]
fn docker_run() {
    let required = std::env::var("RUNBOX_REQUIRE_DOCKER").as_deref() == Ok("1");
    let sb = Sandbox::new();
    let j = parse_one_json(&sb.run(&["backends", "--json"]));
    let docker = j["backends"]
        .as_array()
        .and_then(|l| l.iter().find(|b| b["name"] == "docker").cloned())
        .unwrap_or(Value::Null);
    if docker["available"] != true {
        let why = docker["reason"]
            .as_str()
            .unwrap_or("not registered")
            .to_string();
        assert!(
            !required,
            "RUNBOX_REQUIRE_DOCKER=1 but docker is unusable: {why}"
        );
        eprintln!("SKIPPED docker_run: docker unavailable: {why}");
        return;
    }
    let input = sb.path("in.txt");
    std::fs::write(&input, "into the container\n").unwrap();
    let out_file = sb.path("out.txt");
    let (c, j) = sb.json(&[
        "--backend",
        "docker",
        "--image",
        "runbox-testbox:latest",
        "--memory",
        "64M",
        "--timeout",
        "30s",
        "--copy-in",
        &format!("{}:in.txt", input.display()),
        "--copy-out",
        &format!("out.txt:{}", out_file.display()),
        "--env",
        "X=y",
        "--",
        "sh",
        "-c",
        "cat in.txt > out.txt; echo $X; exit 5",
    ]);
    if j["status"] == "error" {
        let msg = j["error"]["message"].as_str().unwrap_or("").to_string();
        assert!(!required, "docker run failed: {msg}");
        eprintln!("SKIPPED docker_run: {msg} (build the image with `cargo xtask test-image`)");
        return;
    }
    assert_eq!(c, 5, "{j}");
    assert_eq!(j["backend"], "docker");
    assert_eq!(j["stdout"], "y\n");
    assert_isolation_shape(&j);
    if unreported(&j) {
        eprintln!("note: docker does not report isolation here; only the shape is checked");
    } else {
        assert_eq!(j["isolation"]["level"], "full", "{j}");
        assert_eq!(j["isolation"]["requested"], "auto", "{j}");
    }
    assert_eq!(j["limits"]["memory"]["enforced_by"], "docker");
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "into the container\n"
    );
    let (c, j) = sb.json(&[
        "--backend",
        "docker",
        "--image",
        "runbox-testbox:latest",
        "--timeout",
        "500ms",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(c, 124, "{j}");

    // Mounts: read-only by default, read-write on request.
    let ro = sb.path("dro");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("f.txt"), "host file\n").unwrap();
    let rw = sb.path("drw");
    std::fs::create_dir_all(&rw).unwrap();
    let (c, j) = sb.json(&[
        "--backend",
        "docker",
        "--image",
        "runbox-testbox:latest",
        "--mount",
        &format!("{}:data", ro.display()),
        "--mount",
        &format!("{}:out:rw", rw.display()),
        "--",
        "sh",
        "-c",
        "cat data/f.txt; echo no > data/g.txt; echo $?; echo yes > out/h.txt",
    ]);
    assert_eq!(c, 0, "{j}");
    let stdout = j["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("host file\n"), "{j}");
    assert_ne!(stdout.lines().nth(1), Some("0"), "{j}");
    assert!(!ro.join("g.txt").exists());
    assert_eq!(std::fs::read_to_string(rw.join("h.txt")).unwrap(), "yes\n");
}

#[test]
fn docker_with_a_missing_image_fails_with_one_line() {
    let sb = Sandbox::new();
    let j = parse_one_json(&sb.run(&["backends", "--json"]));
    let available = j["backends"]
        .as_array()
        .and_then(|l| l.iter().find(|b| b["name"] == "docker").cloned())
        .is_some_and(|d| d["available"] == true);
    if !available {
        eprintln!("SKIPPED docker_with_a_missing_image_fails_with_one_line: docker unavailable");
        return;
    }
    let out = sb.run(&[
        "run",
        "--backend",
        "docker",
        "--image",
        "runbox-no-such-image-xyz:latest",
        "--",
        "true",
    ]);
    let err = stderr(&out);
    assert_eq!(code(&out), 125, "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains("runbox-no-such-image-xyz"), "{err}");
    assert!(err.starts_with("runbox: --image: "), "{err}");
}

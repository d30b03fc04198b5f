//! The CLI and the server with `--backend swarm`, on the cluster `cargo
//! xtask swarm-up` brings up: a run with copies and a limit, a run whose
//! CLI is killed (its service reaped by `runbox gc`), and a run through
//! `runbox serve`. Ignored by default (they need the cluster); `cargo xtask
//! swarm-test` runs them with `--include-ignored`.

#[path = "serve/http.rs"]
#[allow(dead_code)]
mod http;
#[path = "serve/server.rs"]
#[allow(dead_code)]
mod server;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_runbox");

/// A manager of the test cluster, for the docker CLI.
fn manager() -> String {
    let m = std::env::var("RUNBOX_SWARM_MANAGERS")
        .expect("RUNBOX_SWARM_MANAGERS is not set: run through `cargo xtask swarm-test`");
    m.split(',').next().expect("a manager").to_string()
}

fn runbox(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("RUST_LOG")
        .env("RUNBOX_STATE_DIR", dir.join("state"))
        .env("RUNBOX_WORKSPACE_ROOT", dir.join("ws"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn json_of(out: &Output) -> Value {
    let s = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(s.trim()).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {s}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The swarm services of runbox on the cluster.
fn services() -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "-H",
            &manager(),
            "service",
            "ls",
            "-q",
            "--filter",
            "label=io.runbox.backend=swarm",
        ])
        .output()
        .expect("docker service ls");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    f()
}

#[test]
#[ignore = "needs the swarm test cluster: cargo xtask swarm-test"]
fn run_with_backend_swarm_copies_and_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "into the swarm\n").expect("write");
    let out_file = dir.path().join("out.txt");
    let out = runbox(dir.path())
        .args(["run", "--json", "--backend", "swarm", "--memory", "64M", "--timeout", "60s"])
        .arg("--copy-in")
        .arg(format!("{}:in.txt", input.display()))
        .arg("--copy-out")
        .arg(format!("out.txt:{}", out_file.display()))
        .args(["--", "sh", "-c", "cat in.txt > out.txt; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; exit 3"])
        .output()
        .expect("runbox run");
    let j = json_of(&out);
    assert_eq!(out.status.code(), Some(3), "{j}");
    assert_eq!(j["backend"], "swarm", "{j}");
    assert_eq!(j["stdout"], format!("{}\n", 64u64 << 20), "{j}");
    assert_eq!(
        std::fs::read_to_string(&out_file).expect("copied out"),
        "into the swarm\n"
    );
    assert!(
        eventually(Duration::from_secs(10), || services().is_empty()),
        "{:?}",
        services()
    );
}

#[test]
#[ignore = "needs the swarm test cluster: cargo xtask swarm-test"]
fn a_killed_cli_run_leaves_a_service_that_gc_reaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(services().is_empty(), "services before: {:?}", services());
    let mut child = runbox(dir.path())
        .args(["run", "--backend", "swarm", "--", "sleep", "300"])
        .spawn()
        .expect("spawn");
    assert!(
        eventually(Duration::from_secs(60), || !services().is_empty()),
        "no service appeared"
    );
    // Give it time to start the command, then kill it without a chance to
    // clean up.
    std::thread::sleep(Duration::from_secs(1));
    child.kill().expect("kill");
    let _ = child.wait();
    assert!(!services().is_empty(), "the killed run removed its service");
    let out = runbox(dir.path())
        .args(["gc", "--json"])
        .output()
        .expect("gc");
    let j = json_of(&out);
    assert_eq!(out.status.code(), Some(0), "{j}");
    // The killed run's record leads gc to its workspace (recovered), or
    // the service is found by its labels (reaped): either way gc names
    // the swarm backend and the service is gone.
    let found = format!("{}{}", j["recovered"], j["reaped"]);
    assert!(found.contains("swarm"), "{j}");
    assert!(services().is_empty(), "{:?}", services());
}

#[test]
#[ignore = "needs the swarm test cluster: cargo xtask swarm-test"]
fn serve_runs_a_command_on_the_swarm() {
    let s = server::Server::start(&[]);
    let r = s.post(
        "/v1/runs",
        &json!({"shell": "echo from the swarm", "backend": "swarm", "limits": {"timeout_ms": 60000}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["backend"], "swarm", "{j}");
    assert_eq!(j["stdout"], "from the swarm\n", "{j}");
    assert_eq!(j["exit_code"], 0, "{j}");
    assert!(
        eventually(Duration::from_secs(10), || services().is_empty()),
        "{:?}",
        services()
    );
}

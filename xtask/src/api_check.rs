//! `cargo xtask api-check [--seconds N]`: schemathesis (from PyPI, in a
//! venv under target/) against the OpenAPI document of a real `runbox
//! serve`, checking that no answer is a 5xx and every answer matches the
//! document (status, content type, schema).
//!
//! Schemathesis sends whatever the schema allows, commands included, so
//! the server runs as an unprivileged user (as root: the `runbox-ci` system
//! user, through `setpriv`, from a copy of the binary in a directory that
//! user owns), with the native backend's rootless sandboxes, a token, and
//! a workspace root of its own that must be empty once it has shut down.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::{cargo, is_root, nonroot::ensure_user, run};

/// Pinned, so a new release cannot change what CI checks unannounced.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
const TOKEN: &str = "api-check-token";

fn venv(target: &Path) -> Result<std::path::PathBuf> {
    let dir = target.join("schemathesis-venv");
    let st = dir.join("bin/schemathesis");
    if !st.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&dir))?;
        run(Command::new(dir.join("bin/pip")).args(["install", "-q", SCHEMATHESIS]))?;
    }
    Ok(st)
}

/// The work directory, removed when done.
struct Work(std::path::PathBuf);

impl Work {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the check (see the module docs).
pub fn api_check(args: &[String]) -> Result<()> {
    let seconds: u64 = match args {
        [] => 240,
        [flag, n] if flag == "--seconds" => n.parse().context("--seconds N")?,
        _ => bail!("usage: cargo xtask api-check [--seconds N]"),
    };
    let target = std::path::PathBuf::from(
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
    );
    let st = venv(&target)?;
    run(cargo().args(["build", "-p", "runbox-cli"]))?;
    let work = Work(std::env::temp_dir().join(format!("runbox-api-check-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(work.path());
    std::fs::create_dir_all(work.path())?;
    let bin = work.path().join("runbox");
    std::fs::copy(target.join("debug/runbox"), &bin)?;
    let user = is_root().then(|| ensure_user("runbox-ci")).transpose()?;
    if let Some((uid, gid)) = user {
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(work.path()))?;
    }
    let mut cmd = match user {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--shutdown-grace", "2s"])
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", work.path())
        .env("TMPDIR", work.path())
        .env("RUNBOX_WORKSPACE_ROOT", work.path().join("ws"))
        .env("RUNBOX_TOKENS", TOKEN)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    eprintln!("xtask: starting {cmd:?}");
    let mut server = cmd.spawn().context("cannot start runbox serve")?;
    let stderr = server.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("runbox serve: listening on ") {
                let _ = tx.send(a.to_string());
            }
            eprintln!("serve: {line}");
        }
    });
    let Ok(base) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = server.kill();
        bail!("runbox serve did not start");
    };
    let checked = Command::new(&st)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", CHECKS])
        .args([
            "--workers",
            "1",
            "--max-examples",
            "20",
            "--request-timeout",
            "30",
        ])
        .args(["--max-time", &seconds.to_string()])
        .args(["--generation-deterministic"])
        .status()
        .context("cannot run schemathesis");
    run(Command::new("kill").args(["-TERM", &server.id().to_string()]))?;
    let exited = server.wait()?;
    let checked = checked?;
    ensure!(checked.success(), "schemathesis found failures ({checked})");
    ensure!(
        exited.success(),
        "runbox serve did not exit cleanly after SIGTERM: {exited}"
    );
    let left: Vec<_> = std::fs::read_dir(work.path().join("ws"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    ensure!(left.is_empty(), "workspaces left behind: {left:?}");
    eprintln!("xtask: api-check passed");
    Ok(())
}

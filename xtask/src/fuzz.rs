//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs the cargo-fuzz
//! targets in fuzz/ (default: all of them, 30 s each).
//!
//! - Installs cargo-fuzz when missing (`cargo install cargo-fuzz --locked`).
//! - cargo-fuzz needs nightly rustc flags (`-Zsanitizer=address`): it uses
//!   the `nightly` toolchain when rustup has one, else the active stable
//!   toolchain with `RUSTC_BOOTSTRAP=1` (which unlocks the same flags).
//! - Builds into target/fuzz; new inputs go to `target/fuzz/corpus/<target>`
//!   while the checked-in seeds in `fuzz/corpus/<target>` are read only.
//! - The targets' scratch trees live in a temporary TMPDIR removed at the end.
//! - A crash fails the task; libFuzzer writes the input to fuzz/artifacts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{cargo, run};

const TARGETS: [&str; 2] = ["sandbox_path", "tar_extract"];

fn repo_root() -> Result<PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf())
}

fn has_cargo_fuzz() -> bool {
    cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn has_nightly() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `cargo fuzz ...` on nightly when available, else stable with
/// RUSTC_BOOTSTRAP=1.
fn cargo_fuzz(nightly: bool) -> Command {
    let mut c = if nightly {
        let mut c = Command::new("rustup");
        c.args(["run", "nightly", "cargo", "fuzz"]);
        c
    } else {
        let mut c = cargo();
        c.arg("fuzz").env("RUSTC_BOOTSTRAP", "1");
        c
    };
    // Not the xtask's own toolchain pin or target dir.
    c.env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR");
    c
}

pub fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds: u64 = 30;
    let mut targets: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .context("--seconds needs a value")?
                    .parse()
                    .context("--seconds: expected a whole number")?
            }
            t if TARGETS.contains(&t) => targets.push(t.to_string()),
            other => bail!(
                "cargo xtask fuzz: unknown argument {other:?}; usage: cargo xtask fuzz [--seconds N] [{}]",
                TARGETS.join("|")
            ),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|s| s.to_string()).collect();
    }
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }

    if !has_cargo_fuzz() {
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let nightly = has_nightly();
    eprintln!(
        "xtask fuzz: using {}",
        if nightly {
            "the nightly toolchain"
        } else {
            "the stable toolchain with RUSTC_BOOTSTRAP=1 (no nightly installed)"
        }
    );
    let root = repo_root()?;
    let fuzz_dir = root.join("fuzz");
    let target_dir = root.join("target/fuzz");
    let scratch = target_dir.join(format!("tmp-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;

    let result = (|| -> Result<()> {
        run(cargo_fuzz(nightly)
            .current_dir(&fuzz_dir)
            .args(["build", "--target-dir"])
            .arg(&target_dir))?;
        for t in &targets {
            let work_corpus = target_dir.join("corpus").join(t);
            std::fs::create_dir_all(&work_corpus)?;
            let seeds = fuzz_dir.join("corpus").join(t);
            let log = target_dir.join(format!("{t}.log"));
            let mut cmd = cargo_fuzz(nightly);
            cmd.current_dir(&fuzz_dir)
                .args(["run", "--target-dir"])
                .arg(&target_dir)
                .arg(t)
                .arg(&work_corpus)
                .arg(&seeds)
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .arg("-timeout=10")
                .arg("-rss_limit_mb=2048")
                .env("TMPDIR", &scratch)
                .stderr(Stdio::piped());
            eprintln!("xtask: running {cmd:?}");
            let out = cmd
                .output()
                .with_context(|| format!("cannot run cargo fuzz for {t}"))?;
            let text = String::from_utf8_lossy(&out.stderr);
            std::fs::write(&log, text.as_bytes())?;
            let done = text
                .lines()
                .rev()
                .find(|l| l.starts_with("Done ") || l.contains("DONE"))
                .unwrap_or("")
                .to_string();
            if !out.status.success() {
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "fuzz target {t} failed ({}); full log {}\n{}",
                    out.status,
                    log.display(),
                    tail.join("\n")
                );
            }
            println!("fuzz: {t}: {done}");
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result?;
    println!("fuzz: PASSED ({} targets, {seconds}s each)", targets.len());
    Ok(())
}

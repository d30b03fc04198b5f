//! `cargo xtask soak [--executions N] [--concurrency C]`: builds the soak
//! binary (crates/runbox-soak) in release mode and runs it. It runs N mixed
//! native executions through the execution service and fails on any
//! unexpected outcome or any leak (process, directory, cgroup, fd, memory).

use std::process::Command;

use anyhow::{bail, Result};

use crate::{cargo, run};

pub fn soak(args: &[String]) -> Result<()> {
    for a in args {
        let name = a.split('=').next().unwrap_or(a);
        if a.starts_with('-')
            && !matches!(
                name,
                "--executions" | "--concurrency" | "-n" | "-c" | "--isolation" | "--pool"
            )
        {
            bail!("cargo xtask soak: unknown flag {a:?}; usage: cargo xtask soak [--executions N] [--concurrency C] [--isolation MODE] [--pool N]");
        }
    }
    run(cargo().args(["build", "--release", "-p", "runbox-soak"]))?;
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    run(Command::new(format!("{target}/release/runbox-soak")).args(args))
}

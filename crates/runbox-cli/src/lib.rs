//! # runbox-cli
//!
//! The `runbox` command line (the binary is a thin `main` over
//! [`main`]): `run` a command in a fresh sandbox with limits, list the
//! registered `backends`, `list` and `show` recorded executions, and `gc`
//! what crashed runs left behind. See the README for the flags and exit
//! codes.

mod cli;
mod commands;
mod error;
mod parse;
mod run;
mod serve;
mod signals;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

// Every backend the CLI offers must be referenced, or the linker drops its
// crate and its registration with it.
use orchestrator_docker as _;
use orchestrator_native as _;

pub use cli::{Cli, Command, RunArgs, ServeArgs};
pub use error::{CliError, EXIT_RUNBOX};
pub use run::exit_code;

/// File name of the SQLite store inside the state directory.
pub const DB_FILE: &str = "runbox.db";

/// The state directory: `--state-dir`, else `$RUNBOX_STATE_DIR`, else
/// `$XDG_STATE_HOME/runbox`, else `~/.local/state/runbox`.
pub fn state_dir(flag: Option<PathBuf>) -> Result<PathBuf, CliError> {
    fn nonempty(name: &str) -> Option<PathBuf> {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }
    if let Some(d) = flag {
        if d.as_os_str().is_empty() {
            return Err(CliError::flag("--state-dir", "the directory is empty"));
        }
        return Ok(d);
    }
    if let Some(d) = nonempty("RUNBOX_STATE_DIR") {
        return Ok(d);
    }
    if let Some(d) = nonempty("XDG_STATE_HOME").filter(|d| d.is_absolute()) {
        return Ok(d.join("runbox"));
    }
    match nonempty("HOME") {
        Some(h) => Ok(h.join(".local/state/runbox")),
        None => Err(CliError::new(
            "state_dir",
            "no state directory: set --state-dir, RUNBOX_STATE_DIR, XDG_STATE_HOME or HOME",
        )),
    }
}

/// Logs go to stderr only: -v info, -vv debug, -vvv trace (default: errors
/// only, so a command's stderr passes through unmixed); RUST_LOG directives
/// are added on top.
fn init_logging(verbose: u8) {
    let base = match verbose {
        0 => "error",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let mut directives = base.to_string();
    if let Ok(extra) = std::env::var("RUST_LOG") {
        if !extra.trim().is_empty() {
            directives.push(',');
            directives.push_str(&extra);
        }
    }
    let filter = tracing_subscriber::EnvFilter::builder().parse_lossy(directives);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Is `--json` among the options of a `run` command line (before `--`)?
/// Used to answer in JSON even when the command line itself is bad.
fn wants_json(args: &[String]) -> bool {
    let mut it = args.iter().skip(1);
    let mut in_run = false;
    for a in it.by_ref() {
        if a == "--" {
            break;
        }
        if a == "run" {
            in_run = true;
            continue;
        }
        if in_run && a == "--json" {
            return true;
        }
    }
    false
}

/// What a failure prints on stdout besides its line on stderr.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnError {
    /// Nothing (no `--json`).
    Nothing,
    /// `run --json`: its one result object, with `status: "error"`.
    RunJson,
    /// `list` / `show` / `gc` / `backends` with `--json`:
    /// `{"error": {kind, flag, message}}`, so a script reading stdout gets
    /// JSON either way.
    ErrorJson,
}

fn fail(e: &CliError, on_error: OnError, backend: Option<&str>) -> ExitCode {
    match on_error {
        OnError::RunJson => run::print_json(&run::error_json(e, backend)),
        OnError::ErrorJson => run::print_json(&serde_json::json!({
            "error": {"kind": e.kind, "flag": e.flag, "message": e.message}
        })),
        OnError::Nothing => {}
    }
    eprintln!("{e}");
    ExitCode::from(e.code)
}

/// The whole CLI: parses `std::env::args`, runs the subcommand, returns the
/// exit code.
pub fn main() -> ExitCode {
    let args: Vec<String> = match std::env::args_os()
        .map(|a| a.into_string())
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(v) => v,
        Err(bad) => {
            let e = CliError::new(
                "invalid_flag",
                format!("argument {bad:?} is not valid UTF-8"),
            );
            eprintln!("{e}");
            return ExitCode::from(e.code);
        }
    };
    let json = if wants_json(&args) {
        OnError::RunJson
    } else {
        OnError::Nothing
    };
    let cli = match cli::parse_args(&args) {
        cli::Parsed::Cli(c) => c,
        cli::Parsed::Help(text) => {
            let _ = text.print();
            return ExitCode::SUCCESS;
        }
        cli::Parsed::Failed { error, backend } => return fail(&error, json, backend.as_deref()),
    };
    init_logging(cli.verbose);
    // The server runs on threads of its own; everything else on one.
    let cli = match cli.command {
        Command::Serve(args) => {
            return match serve::serve(*args, state_dir(cli.state_dir)) {
                Ok(code) => ExitCode::from(code),
                Err(e) => fail(&e, OnError::Nothing, None),
            }
        }
        command => Cli { command, ..cli },
    };
    // One thread: a one-shot command has one execution to drive, and a
    // second worker costs a thread start and cross-thread wake-ups
    // (blocking work still goes to tokio's blocking pool).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("runbox")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                &CliError::new("internal", format!("cannot start the async runtime: {e}")),
                json,
                None,
            )
        }
    };
    let state = state_dir(cli.state_dir);
    let other = |json: bool| {
        if json {
            OnError::ErrorJson
        } else {
            OnError::Nothing
        }
    };
    let (res, on_error, backend) = match cli.command {
        Command::Run(args) => {
            let json = if args.json {
                OnError::RunJson
            } else {
                OnError::Nothing
            };
            let backend = args.backend.clone();
            (
                runtime.block_on(run::run(*args, state)),
                json,
                Some(backend),
            )
        }
        Command::Backends { json } => (
            runtime.block_on(commands::backends(json)),
            other(json),
            None,
        ),
        Command::List { json } => (
            state.and_then(|d| runtime.block_on(commands::list(&d, json))),
            other(json),
            None,
        ),
        Command::Show { id, json } => (
            state.and_then(|d| runtime.block_on(commands::show(&d, &id, json))),
            other(json),
            None,
        ),
        Command::Gc { json } => (
            state.and_then(|d| runtime.block_on(commands::gc(&d, json))),
            other(json),
            None,
        ),
        Command::Serve(_) => (
            Err(CliError::new(
                "internal",
                "serve is handled before the runtime",
            )),
            OnError::Nothing,
            None,
        ),
    };
    // Leftover blocking tasks (a hung backend call) must not keep runbox
    // alive after it has its answer.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match res {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e, on_error, backend.as_deref()),
    }
}

/// The README, compiled as doctests (its Rust example must build and run).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// docs/writing-a-backend.md, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/writing-a-backend.md")]
pub struct WritingABackendDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_detection() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(wants_json(&v(&["runbox", "run", "--json", "--", "x"])));
        assert!(!wants_json(&v(&["runbox", "run", "--", "x", "--json"])));
        assert!(!wants_json(&v(&["runbox", "list", "--json"])));
    }

    #[test]
    fn state_dir_flag_wins() {
        assert_eq!(
            state_dir(Some(PathBuf::from("/x"))).unwrap(),
            PathBuf::from("/x")
        );
        assert!(state_dir(Some(PathBuf::new())).is_err());
    }
}

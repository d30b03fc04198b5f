//! The command line, as clap derive types, and the conversion of clap's own
//! (multi-line) errors into runbox's one-line errors.

use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::error::CliError;

/// runbox: run commands in isolated sandboxes with resource limits.
#[derive(Debug, Parser)]
#[command(
    name = "runbox",
    version,
    about = "Run commands in isolated sandboxes (native by default, docker on request) with resource limits",
    after_help = "Exit codes of `runbox run`: the command's own; 128+N when signal N ended it (137 for limit kills); 124 on --timeout; 125 when runbox failed; 126 when the command could not be invoked; 127 when it was not found."
)]
pub struct Cli {
    /// More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG adds
    /// its own directives.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Where executions are recorded (default: $RUNBOX_STATE_DIR, else
    /// $XDG_STATE_HOME/runbox, else ~/.local/state/runbox).
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a fresh sandbox and remove the sandbox afterwards.
    Run(Box<RunArgs>),
    /// List the registered backends, whether each is available, and what it
    /// can do.
    Backends {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List recorded executions, oldest first.
    List {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one recorded execution.
    Show {
        /// The execution id (from `runbox list` or `run --json`).
        id: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Reap sandboxes and records that crashed runs left behind.
    Gc {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `runbox run [OPTIONS] -- COMMAND [ARGS...]`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Backend to run on: native (default), docker, or any registered name.
    #[arg(long, value_name = "NAME", default_value = "native")]
    pub backend: String,

    /// Image for container backends (docker; default runbox-testbox:latest).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,

    /// Memory limit, e.g. 64M, 1G (binary units).
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory: Option<String>,

    /// CPU bandwidth in cores, e.g. 0.5.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub cpus: Option<String>,

    /// Maximum number of processes/threads.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids: Option<String>,

    /// Wall-clock timeout, e.g. 500ms, 10s, 2m (plain numbers are seconds).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub timeout: Option<String>,

    /// CPU-time limit, e.g. 2s.
    #[arg(long = "cpu-time", value_name = "DURATION", allow_hyphen_values = true)]
    pub cpu_time: Option<String>,

    /// Largest file the command may write, e.g. 1M.
    #[arg(long = "file-size", value_name = "SIZE", allow_hyphen_values = true)]
    pub file_size: Option<String>,

    /// Open files per process.
    #[arg(long = "open-files", value_name = "N", allow_hyphen_values = true)]
    pub open_files: Option<String>,

    /// Output captured per stream; the command is stopped beyond it.
    #[arg(long = "output-limit", value_name = "SIZE", allow_hyphen_values = true)]
    pub output_limit: Option<String>,

    /// Fail before running when a requested limit cannot be enforced.
    #[arg(long)]
    pub strict: bool,

    /// Copy a host file or directory into the sandbox (repeatable).
    #[arg(long = "copy-in", value_name = "HOST_PATH:SANDBOX_PATH")]
    pub copy_in: Vec<String>,

    /// Copy a sandbox path out after the command ends, whatever its status
    /// (repeatable).
    #[arg(long = "copy-out", value_name = "SANDBOX_PATH:HOST_PATH")]
    pub copy_out: Vec<String>,

    /// Set an environment variable for the command (repeatable). The command
    /// never sees runbox's own environment.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Working directory, relative to the sandbox root.
    #[arg(long, value_name = "SANDBOX_PATH")]
    pub workdir: Option<String>,

    /// Feed this file to the command's stdin (`-`: runbox's own stdin).
    /// Default: empty stdin.
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<String>,

    /// Print one JSON object (status, output, times, limits) instead of
    /// passing the command's output through.
    #[arg(long)]
    pub json: bool,

    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "COMMAND",
        num_args = 1..
    )]
    pub command: Vec<String>,
}

fn context_str(err: &clap::Error, kind: ContextKind) -> Option<String> {
    match err.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => Some(v.join(", ")),
        ContextValue::StyledStr(s) => Some(s.to_string()),
        ContextValue::StyledStrs(v) => Some(
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ContextValue::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The flag name out of clap's `--memory <SIZE>` rendering.
fn flag_name(rendered: &str) -> String {
    rendered
        .split([' ', '='])
        .next()
        .unwrap_or(rendered)
        .trim_matches(|c| c == '<' || c == '>')
        .to_string()
}

/// Turns a clap error into one line. Help and version requests are not
/// errors: `Ok(())` means "print clap's text and exit 0".
pub fn clap_error(err: &clap::Error) -> Result<(), CliError> {
    let arg = context_str(err, ContextKind::InvalidArg);
    let value = context_str(err, ContextKind::InvalidValue);
    let e = match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => return Ok(()),
        ErrorKind::UnknownArgument => {
            let a = arg.unwrap_or_else(|| "?".into());
            let mut e = CliError::flag(flag_name(&a), "unknown flag");
            if let Some(s) = context_str(err, ContextKind::SuggestedArg) {
                e.message.push_str(&format!(" (did you mean {s}?)"));
            }
            e.message
                .push_str("; see `runbox --help` (put the command after `--`)");
            e
        }
        ErrorKind::InvalidSubcommand => {
            let a = context_str(err, ContextKind::InvalidSubcommand)
                .or(arg)
                .unwrap_or_else(|| "?".into());
            CliError::new(
                "invalid_flag",
                format!("unknown subcommand {a:?} (expected run, backends, list, show or gc)"),
            )
        }
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            CliError::new(
                "invalid_flag",
                "a subcommand is required: run, backends, list, show or gc (see `runbox --help`)",
            )
        }
        ErrorKind::MissingRequiredArgument => {
            let a = arg.unwrap_or_default();
            if a.contains("COMMAND") {
                CliError::new(
                    "invalid_flag",
                    "no command given: usage `runbox run [OPTIONS] -- COMMAND [ARGS...]`",
                )
            } else {
                CliError::new("invalid_flag", format!("missing required argument {a}"))
            }
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let a = arg.unwrap_or_else(|| "?".into());
            match value {
                Some(v) if v.is_empty() => CliError::flag(flag_name(&a), "a value is required"),
                Some(v) => CliError::flag(flag_name(&a), format!("invalid value {v:?}")),
                None => CliError::flag(flag_name(&a), "a value is required"),
            }
        }
        ErrorKind::ArgumentConflict | ErrorKind::TooManyValues | ErrorKind::WrongNumberOfValues => {
            let a = arg.unwrap_or_else(|| "?".into());
            CliError::flag(flag_name(&a), first_line(err))
        }
        ErrorKind::NoEquals | ErrorKind::TooFewValues => {
            let a = arg.unwrap_or_else(|| "?".into());
            CliError::flag(flag_name(&a), "a value is required")
        }
        _ => CliError::new("invalid_flag", first_line(err)),
    };
    Err(e)
}

fn first_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let line = rendered
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid command line");
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn err(args: &[&str]) -> CliError {
        let e = Cli::try_parse_from(args).expect_err("should fail");
        clap_error(&e).expect_err("should be an error")
    }

    #[test]
    fn clap_errors_become_one_line() {
        let e = err(&["runbox", "run", "--bogus", "--", "true"]);
        assert_eq!(e.flag.as_deref(), Some("--bogus"), "{e}");
        let e = err(&["runbox", "run", "--memory"]);
        assert_eq!(e.flag.as_deref(), Some("--memory"), "{e}");
        let e = err(&["runbox", "run"]);
        assert!(e.message.contains("no command"), "{e}");
        let e = err(&["runbox"]);
        assert!(e.message.contains("subcommand"), "{e}");
        let e = err(&["runbox", "frob"]);
        assert!(e.message.contains("frob"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn command_after_dashes_keeps_its_flags() {
        let cli =
            Cli::try_parse_from(["runbox", "run", "--json", "--", "ls", "-la", "--json"]).unwrap();
        match cli.command {
            Command::Run(r) => {
                assert!(r.json);
                assert_eq!(r.command, ["ls", "-la", "--json"]);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["runbox", "run", "echo", "-n", "x"]).unwrap();
        match cli.command {
            Command::Run(r) => assert_eq!(r.command, ["echo", "-n", "x"]),
            other => panic!("{other:?}"),
        }
    }
}

//! The command line as clap derive types; flag values arrive parsed and
//! checked (see [`crate::parse`]).

mod errors;

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use orchestrator_core::{IsolationMode, Mount, NetworkMode};

use crate::error::CliError;
use crate::parse;

pub use errors::{parse_args, Parsed};

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
    /// Serve the execution service over HTTP (see docs/api.md).
    #[command(long_about = SERVE_ABOUT)]
    Serve(Box<ServeArgs>),
    /// Reap sandboxes and records that crashed runs left behind.
    Gc {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

const SERVE_ABOUT: &str = "Serve the execution service over HTTP: one-shot runs (POST /v1/runs), \
sandboxes with files, exec and background processes (/v1/sandboxes), health (/healthz, /readyz), \
/v1/info, /metrics and the OpenAPI document (/openapi.json). Records go to the SQLite store in the \
state directory; a restart reaps the sandboxes a dead server left.

Authentication: with tokens (--token-file, one per line, or RUNBOX_TOKENS, comma-separated) every \
/v1 route needs `Authorization: Bearer TOKEN`, and each run and sandbox belongs to the token that \
made it. Without tokens only a loopback address may be bound.

Try it:
  runbox serve &
  curl -s localhost:7878/v1/runs -d '{\"argv\": [\"echo\", \"hi\"]}'

SIGTERM or Ctrl-C: stop accepting, let running commands finish (--shutdown-grace), then cancel \
them and remove every sandbox. docs/api.md has every route, with curl and Python examples.";

/// `runbox serve [OPTIONS]`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; without tokens it must be a loopback address.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7878")]
    pub listen: std::net::SocketAddr,

    /// File of bearer tokens, one per line (RUNBOX_TOKENS, comma-separated,
    /// adds to it).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Commands executing at once (runs and sandbox execs).
    #[arg(long, value_name = "N", default_value = "16", value_parser = parse::positive)]
    pub max_concurrency: usize,

    /// Commands waiting for a slot; beyond it requests get 503 queue_full.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_queue: usize,

    /// Backend of requests that name none.
    #[arg(long, value_name = "NAME", default_value = execution_service::DEFAULT_BACKEND)]
    pub default_backend: String,

    /// A sandbox's TTL when it asks none (e.g. 300s, 10m).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse::period)]
    pub sandbox_ttl: Duration,

    /// The longest TTL a sandbox may ask.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse::period)]
    pub max_sandbox_ttl: Duration,

    /// On SIGTERM, how long running commands may go on before they are
    /// cancelled.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse::period)]
    pub shutdown_grace: Duration,

    /// Live sandboxes one token may hold; beyond it 429 too_many_sandboxes.
    #[arg(long, value_name = "N", default_value = "64", value_parser = parse::positive)]
    pub max_sandboxes: usize,

    /// Largest JSON request body (e.g. 16M); beyond it 413.
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = parse::body_size)]
    pub max_body: u64,

    /// Largest file upload or download (e.g. 512M); beyond it 413.
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse::body_size)]
    pub max_file: u64,

    /// A client must send its request head within this, or is cut off.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse::period)]
    pub header_timeout: Duration,
}

/// `runbox run [OPTIONS] -- COMMAND [ARGS...]`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Backend to run on: native (default), docker, or any registered name.
    #[arg(long, value_name = "NAME", default_value = execution_service::DEFAULT_BACKEND)]
    pub backend: String,

    /// Image for container backends (docker: required unless RUNBOX_DOCKER_IMAGE is set).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,

    /// Isolation from the host: auto (full where the host allows it, else
    /// none, said in one line on stderr), full (or fail before running) or
    /// none. Passed to the backend as its "isolation" setting.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse::isolation)]
    pub isolation: IsolationMode,

    /// The sandbox's network: none (its own, loopback only) or host.
    /// Default: the backend's (none under full isolation). Passed to the
    /// backend as its "network" setting only when given.
    #[arg(long, value_name = "MODE", value_parser = parse::network)]
    pub network: Option<NetworkMode>,

    /// Mount a host path into the sandbox (repeatable), read-only unless
    /// `:rw`. HOST_PATH is resolved against the current directory (symlinks
    /// followed) and must exist; SANDBOX_PATH is relative to the workspace,
    /// as for --copy-in (`data` is /workspace/data).
    #[arg(long = "mount", value_name = "HOST_PATH:SANDBOX_PATH[:ro|:rw]", value_parser = parse::mount)]
    pub mounts: Vec<Mount>,

    /// Memory limit, e.g. 64M, 1G (binary units).
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true, value_parser = parse::memory)]
    pub memory: Option<u64>,

    /// CPU bandwidth in cores, e.g. 0.5.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse::cpus)]
    pub cpus: Option<f64>,

    /// Maximum number of processes/threads.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse::pids)]
    pub pids: Option<u64>,

    /// Wall-clock timeout, e.g. 500ms, 10s, 2m (plain numbers are seconds).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = parse::timeout)]
    pub timeout: Option<Duration>,

    /// CPU-time limit, e.g. 2s.
    #[arg(long = "cpu-time", value_name = "DURATION", allow_hyphen_values = true, value_parser = parse::cpu_time)]
    pub cpu_time: Option<Duration>,

    /// Largest file the command may write, e.g. 1M.
    #[arg(long = "file-size", value_name = "SIZE", allow_hyphen_values = true, value_parser = parse::file_size)]
    pub file_size: Option<u64>,

    /// Open files per process.
    #[arg(long = "open-files", value_name = "N", allow_hyphen_values = true, value_parser = parse::open_files)]
    pub open_files: Option<u64>,

    /// Output captured per stream; the command is stopped beyond it.
    #[arg(long = "output-limit", value_name = "SIZE", allow_hyphen_values = true, value_parser = parse::output_limit)]
    pub output_limit: Option<u64>,

    /// Fail before running when a requested limit cannot be enforced.
    #[arg(long)]
    pub strict: bool,

    /// Copy a host file or directory into the sandbox (repeatable).
    #[arg(long = "copy-in", value_name = "HOST_PATH:SANDBOX_PATH", value_parser = parse::copy_in)]
    pub copy_in: Vec<(PathBuf, String)>,

    /// Copy a sandbox path out after the command ends, whatever its status
    /// (repeatable).
    #[arg(long = "copy-out", value_name = "SANDBOX_PATH:HOST_PATH", value_parser = parse::copy_out)]
    pub copy_out: Vec<(String, PathBuf)>,

    /// Set an environment variable for the command (repeatable). The command
    /// never sees runbox's own environment.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse::env)]
    pub env: Vec<(String, String)>,

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

/// Checks the command of `run`: a non-empty program name, no NUL byte.
pub fn check_command(command: &[String]) -> Result<(), CliError> {
    if command.first().is_none_or(|c| c.is_empty()) {
        return Err(CliError::new(
            "invalid_flag",
            "no command given: usage `runbox run [OPTIONS] -- COMMAND [ARGS...]`",
        ));
    }
    if command.iter().any(|a| a.contains('\0')) {
        return Err(CliError::new(
            "invalid_flag",
            "the command contains a NUL byte",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
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

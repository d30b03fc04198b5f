//! `runbox serve`: the flags to a [`runbox_server::ServerConfig`], tokens
//! from `--token-file` and `RUNBOX_TOKENS`, and a multi-threaded runtime
//! for the server.

use std::path::PathBuf;

use crate::cli::ServeArgs;
use crate::error::CliError;

/// The tokens of `--token-file` (one per line; blank lines and lines
/// starting with `#` skipped) and of `RUNBOX_TOKENS` (comma-separated).
fn tokens(file: Option<&PathBuf>) -> Result<Vec<String>, CliError> {
    let mut v = Vec::new();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            CliError::flag("--token-file", format!("cannot read {}: {e}", f.display()))
        })?;
        v.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
        if v.is_empty() {
            return Err(CliError::flag(
                "--token-file",
                format!("{} holds no token", f.display()),
            ));
        }
    }
    if let Ok(env) = std::env::var("RUNBOX_TOKENS") {
        v.extend(
            env.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        );
    }
    Ok(v)
}

/// Runs the server until SIGTERM or SIGINT; returns the exit code.
pub fn serve(args: ServeArgs, state_dir: Result<PathBuf, CliError>) -> Result<u8, CliError> {
    let mut config = runbox_server::ServerConfig::new(state_dir?);
    config.listen = args.listen;
    config.tokens = tokens(args.token_file.as_ref())?;
    config.max_concurrency = args.max_concurrency;
    config.max_queue = args.max_queue;
    config.default_backend = args.default_backend;
    config.sandbox_ttl = args.sandbox_ttl;
    config.max_sandbox_ttl = args.max_sandbox_ttl;
    config.shutdown_grace = args.shutdown_grace;
    config.max_sandboxes_per_token = args.max_sandboxes;
    config.json_body_limit = usize::try_from(args.max_body).unwrap_or(usize::MAX);
    config.file_limit = args.max_file;
    config.header_timeout = args.header_timeout;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("runbox-serve")
        .build()
        .map_err(|e| CliError::new("internal", format!("cannot start the async runtime: {e}")))?;
    let res = runtime.block_on(runbox_server::serve(config));
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    res.map(|()| 0).map_err(|e| {
        let flag = match &e {
            runbox_server::ServerError::Unauthenticated(_)
            | runbox_server::ServerError::Bind { .. } => Some("--listen"),
            runbox_server::ServerError::State { .. } => Some("--state-dir"),
            _ => None,
        };
        let err = CliError::new("serve", e.to_string());
        match flag {
            Some(f) => err.on(f),
            None => err,
        }
    })
}

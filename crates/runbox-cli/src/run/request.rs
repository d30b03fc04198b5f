//! From the parsed flags of `runbox run` to the [`ExecutionRequest`] (without
//! its output sink): limits, environment, files, working directory, image
//! (checked against the backend) and the bytes of `--stdin`.

use std::io::Read;

use execution_service::{BackendPreference, ExecutionRequest};
use orchestrator_core::ResourceLimits;

use crate::cli::RunArgs;
use crate::error::{core_message, CliError};

/// The most `--stdin` runbox reads (it is handed to the command whole).
pub const MAX_STDIN: u64 = 256 << 20;

/// The limits of the flags (each already checked on its own by its parser).
fn limits(args: &RunArgs) -> Result<ResourceLimits, CliError> {
    let out = ResourceLimits {
        memory_bytes: args.memory,
        cpus: args.cpus,
        pids: args.pids,
        wall_timeout: args.timeout,
        cpu_time: args.cpu_time,
        file_size_bytes: args.file_size,
        open_files: args.open_files,
        output_bytes: args.output_limit,
        strict: args.strict,
    };
    out.validate()
        .map_err(|e| CliError::new("invalid_input", core_message(&e)))?;
    Ok(out)
}

/// Builds the request (without the output sink) from the flags.
pub fn request(args: &RunArgs) -> Result<ExecutionRequest, CliError> {
    crate::cli::check_command(&args.command)?;
    let mut req = ExecutionRequest::new(args.command.clone())
        .limits(limits(args)?)
        .backend(BackendPreference::Named(args.backend.clone()));
    for (k, v) in &args.env {
        req = req.env(k.clone(), v.clone());
    }
    for (host, sandbox) in &args.copy_in {
        req = req.file_in(host.clone(), sandbox.clone());
    }
    for (sandbox, host) in &args.copy_out {
        req = req.file_out(sandbox.clone(), host.clone());
    }
    if let Some(w) = &args.workdir {
        orchestrator_core::paths::sandbox_relative(w)
            .map_err(|e| CliError::flag("--workdir", core_message(&e)))?;
        req = req.workdir(w.clone());
    }
    if let Some(image) = &args.image {
        if image.trim().is_empty() {
            return Err(CliError::flag("--image", "the image name is empty"));
        }
        if args.backend == "native" {
            return Err(CliError::flag(
                "--image",
                "the native backend does not use images (add --backend docker)",
            ));
        }
        req = req.image(image.clone());
    }
    if let Some(src) = &args.stdin {
        req = req.stdin(read_stdin(src)?);
    }
    req.validate()
        .map_err(|e| CliError::new("invalid_input", core_message(&e)))?;
    Ok(req)
}

fn read_stdin(src: &str) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    let read = if src == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_STDIN + 1)
            .read_to_end(&mut buf)
            .map_err(|e| CliError::flag("--stdin", format!("cannot read runbox's stdin: {e}")))
    } else {
        std::fs::File::open(src)
            .and_then(|f| f.take(MAX_STDIN + 1).read_to_end(&mut buf))
            .map_err(|e| CliError::flag("--stdin", format!("cannot read {src:?}: {e}")))
    };
    read?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(CliError::flag(
            "--stdin",
            format!("{src:?} is larger than {} MiB", MAX_STDIN >> 20),
        ));
    }
    Ok(buf)
}

//! From the parsed flags of `runbox run` to the [`ExecutionRequest`] (without
//! its output sink): limits, environment, files, mounts, working directory,
//! image and the bytes of `--stdin`.

use std::io::Read;

use execution_service::{BackendPreference, ExecutionRequest};
use orchestrator_core::{LimitKind, LimitValue, ResourceLimits, SandboxPath};

use crate::cli::RunArgs;
use crate::error::{core_message, CliError};

/// The most `--stdin` runbox reads (it is handed to the command whole).
pub const MAX_STDIN: u64 = 256 << 20;

/// The limits of the flags (each already checked on its own by its parser).
fn limits(args: &RunArgs) -> Result<ResourceLimits, CliError> {
    let flags = [
        (LimitKind::Memory, args.memory.map(LimitValue::Bytes)),
        (LimitKind::Cpus, args.cpus.map(LimitValue::Cpus)),
        (LimitKind::Pids, args.pids.map(LimitValue::Count)),
        (
            LimitKind::WallTimeout,
            args.timeout.map(LimitValue::Duration),
        ),
        (LimitKind::CpuTime, args.cpu_time.map(LimitValue::Duration)),
        (LimitKind::FileSize, args.file_size.map(LimitValue::Bytes)),
        (LimitKind::OpenFiles, args.open_files.map(LimitValue::Count)),
        (
            LimitKind::OutputBytes,
            args.output_limit.map(LimitValue::Bytes),
        ),
    ];
    let invalid = |e: orchestrator_core::Error| CliError::new("invalid_input", core_message(&e));
    let mut builder = ResourceLimits::builder().strict(args.strict);
    for (kind, value) in flags {
        if let Some(value) = value {
            builder = builder.limit(kind, value).map_err(invalid)?;
        }
    }
    builder.build().map_err(invalid)
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
    for m in &args.mounts {
        req = req.add_mount(m.clone());
    }
    if let Some(w) = &args.workdir {
        SandboxPath::new(w).map_err(|e| CliError::flag("--workdir", core_message(&e)))?;
        req = req.workdir(w.clone());
    }
    if let Some(image) = &args.image {
        if image.trim().is_empty() {
            return Err(CliError::flag("--image", "the image name is empty"));
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

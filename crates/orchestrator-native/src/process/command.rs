//! Resolving a command against its workspace: working directory, the base
//! environment with the default PATH, the output cap and the timeout that
//! result from the command's and the workspace's limits.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use orchestrator_core::{paths, CommandSpec, Error, ResourceLimits, Result};

use crate::cgroup::WorkspaceCgroup;
use crate::process::spawn::{Rlimit, SpawnPlan};

/// Output kept per stream when no output limit is set: 64 MiB. Beyond it
/// output is drained and dropped (the `*_truncated` flag is set) but the
/// command is not stopped: that only happens for a requested limit.
pub const DEFAULT_OUTPUT_CAP: u64 = 64 << 20;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The plan to start `cmd` in workspace directory `dir` (which exists),
/// under the workspace's `limits`; `rlimits` and `cgroup` are how this host
/// enforces them.
pub(crate) fn plan(
    dir: &Path,
    cmd: &CommandSpec,
    limits: &ResourceLimits,
    rlimits: Vec<Rlimit>,
    cgroup: Option<Arc<WorkspaceCgroup>>,
) -> Result<SpawnPlan> {
    cmd.validate()?;
    let cwd = match &cmd.workdir {
        Some(w) => paths::resolve_in_root(dir, w)?,
        None => dir.to_path_buf(),
    };
    if cmd.workdir.is_some() && !cwd.is_dir() {
        return Err(Error::NotFound {
            what: "working directory",
            id: cmd.workdir.clone().unwrap_or_default(),
        });
    }
    let mut env: HashMap<String, String> = HashMap::with_capacity(cmd.env.len() + 3);
    env.insert("PATH".into(), DEFAULT_PATH.into());
    env.insert("HOME".into(), dir.to_string_lossy().into_owned());
    env.insert("LANG".into(), "C.UTF-8".into());
    env.extend(cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(SpawnPlan {
        argv: cmd.argv.clone(),
        env: env.into_iter().collect(),
        cwd,
        stdin: cmd.stdin.clone(),
        rlimits,
        cgroup,
        output_cap: min_opt(cmd.output_limit, limits.output_bytes).unwrap_or(DEFAULT_OUTPUT_CAP),
        enforce_cap: cmd.output_limit.is_some() || limits.output_bytes.is_some(),
        sink: cmd.output.clone(),
        timeout: min_opt(cmd.timeout, limits.wall_timeout),
    })
}

/// Overlays `new` on a workspace's current limits `cur`: each limit `new`
/// sets replaces the current one, the others stay.
pub(crate) fn overlay(cur: &mut ResourceLimits, new: &ResourceLimits) {
    macro_rules! merge {
        ($($f:ident),*) => { $( if new.$f.is_some() { cur.$f = new.$f; } )* };
    }
    merge!(
        memory_bytes,
        cpus,
        pids,
        wall_timeout,
        cpu_time,
        file_size_bytes,
        open_files,
        output_bytes
    );
}

//! # orchestrator-native
//!
//! runbox's default backend. A workspace is a directory under a workspace
//! root. By default (isolation `auto`, where the host allows it) each
//! workspace gets a sandbox: an init in its own user, mount, pid, network,
//! ipc, uts and cgroup namespaces that forks the workspace's commands under
//! a read-only root with the workspace at `/workspace`, as an unprivileged
//! user, without capabilities and under a seccomp filter; the
//! [`IsolationReport`] says so, or why not. With isolation `none` commands
//! are host processes, each in its own process group. Limits are enforced
//! by cgroup v2 where the unified hierarchy offers memory, pids and cpu; by
//! cgroup v1 on hybrid hosts; by rlimits where no cgroup can be written.
//! The [`LimitReport`] says which, and strict mode refuses what cannot be
//! enforced. Stop and cleanup kill whole process trees.
//!
//! [`IsolationReport`]: orchestrator_core::IsolationReport
//! [`LimitReport`]: orchestrator_core::LimitReport
//!
//! ```no_run
//! # async fn demo() -> orchestrator_core::Result<()> {
//! use orchestrator_core::{CommandSpec, Orchestrator, WorkspaceSpec};
//! use orchestrator_native::{NativeConfig, NativeOrchestrator};
//!
//! let native = NativeOrchestrator::new(NativeConfig::default())?;
//! let ws = native.create_workspace(&WorkspaceSpec::new()).await?;
//! let out = native.run_command(&ws, &CommandSpec::shell("echo hi").build()?).await?;
//! assert_eq!(out.stdout, b"hi\n");
//! native.cleanup(&ws).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod backend;
mod cgroup;
mod config;
mod copy;
mod enforcement;
mod error;
mod isolation;
mod jobs;
mod orchestrator;
mod pool;
mod process;
mod procfs;
mod sandbox;
mod sync;
mod teardown;
mod workspace;

use std::sync::Arc;

use orchestrator_core::{BackendOptions, Error, Orchestrator, Result};

pub use backend::NativeOrchestrator;
pub use cgroup::CgroupVersion;
pub use config::{
    default_root, IdRange, NativeConfig, DEFAULT_ETC, DEFAULT_SANDBOX_ID_COUNT,
    DEFAULT_SANDBOX_ID_FIRST, DEFAULT_SYSTEM_BINDS,
};
pub use enforcement::{CGROUP_V1, CGROUP_V2, RLIMIT};
pub use error::NativeOrchestratorError;
pub use orchestrator_core::exec::DEFAULT_OUTPUT_CAP;
pub use pool::MAX_WARM_POOL;
pub use sandbox::{mechanisms, SECCOMP_DENIED};

/// The name this backend registers under.
pub const BACKEND_NAME: &str = "native";

/// The settings the registry factory accepts (see [`NativeConfig`]).
const SETTINGS: &[&str] = &["root", "strict", "isolation", "network"];

/// The registry's factory: [`NativeConfig::default`] with `pool_size` as
/// [`NativeConfig::warm_pool`] and these settings from `options` (no
/// image):
/// - `root`: the workspace root ([`NativeConfig::workspace_root`]);
/// - `strict`: `true` or `false` ([`NativeConfig::strict`]);
/// - `isolation`: `auto`, `full` or `none` ([`NativeConfig::isolation`]);
/// - `network`: `none` or `host` ([`NativeConfig::network`]).
fn factory(options: &BackendOptions) -> Result<Arc<dyn Orchestrator>> {
    options.check(BACKEND_NAME, SETTINGS, true)?;
    let mut config = NativeConfig::default();
    if let Some(size) = options.pool_size {
        config.warm_pool = size;
    }
    if let Some(root) = options.settings.get("root") {
        if root.is_empty() {
            return Err(Error::invalid(
                "backend native: setting \"root\" must not be empty",
            ));
        }
        config.workspace_root = root.into();
    }
    if let Some(strict) = options.settings.get("strict") {
        config.strict = strict.parse().map_err(|_| {
            Error::invalid(format!(
                "backend native: setting \"strict\" is {strict:?}, expected true or false"
            ))
        })?;
    }
    if let Some(mode) = options.settings.get("isolation") {
        config.isolation = mode
            .parse()
            .map_err(|e| Error::invalid(format!("backend native: setting \"isolation\": {e}")))?;
    }
    if let Some(net) = options.settings.get("network") {
        config.network = net
            .parse()
            .map_err(|e| Error::invalid(format!("backend native: setting \"network\": {e}")))?;
    }
    Ok(Arc::new(NativeOrchestrator::new(config)?))
}

orchestrator_core::register_backend!(
    BACKEND_NAME,
    "a sandbox per workspace (namespaces, read-only root, no privileges, seccomp) or host processes; cgroup v2/v1 or rlimit limits",
    factory
);

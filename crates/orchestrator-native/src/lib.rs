//! # orchestrator-native
//!
//! runbox's default backend. A workspace is a directory under a workspace
//! root; commands are host processes, each in its own process group, with a
//! clean environment. Limits are enforced by cgroup v2 where the unified
//! hierarchy offers memory, pids and cpu; by cgroup v1 on hybrid hosts; by
//! rlimits where no cgroup can be written. The [`LimitReport`] says which,
//! and strict mode refuses what cannot be enforced. Stop and cleanup kill
//! whole process trees.
//!
//! [`LimitReport`]: orchestrator_core::LimitReport
//!
//! ```no_run
//! # async fn demo() -> orchestrator_core::Result<()> {
//! use orchestrator_core::{CommandSpec, Orchestrator, WorkspaceSpec};
//! use orchestrator_native::{NativeConfig, NativeOrchestrator};
//!
//! let native = NativeOrchestrator::new(NativeConfig::default())?;
//! let ws = native.create_workspace(&WorkspaceSpec::new()).await?;
//! let out = native.run_command(&ws, &CommandSpec::shell("echo hi")).await?;
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
mod jobs;
mod orchestrator;
mod owner;
mod process;
mod procfs;
mod sync;
mod teardown;
mod workspace;

use std::sync::Arc;

use orchestrator_core::{Orchestrator, Result};

pub use backend::NativeOrchestrator;
pub use cgroup::CgroupVersion;
pub use config::{default_root, NativeConfig};
pub use error::NativeOrchestratorError;
pub use process::command::DEFAULT_OUTPUT_CAP;

/// The name this backend registers under.
pub const BACKEND_NAME: &str = "native";

fn factory() -> Result<Arc<dyn Orchestrator>> {
    Ok(Arc::new(NativeOrchestrator::new(NativeConfig::default())?))
}

orchestrator_core::register_backend!(
    BACKEND_NAME,
    "host processes in a temp-dir workspace; cgroup v2/v1 or rlimit limits",
    factory
);

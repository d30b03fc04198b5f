//! # orchestrator-docker
//!
//! The Docker backend of runbox: every workspace is a long-lived container
//! (an init process plus an idle keep-alive loop, working directory
//! `/workspace`, no network by default), and every command is a `docker exec`
//! run under a small POSIX-shell wrapper that gives the command a clean
//! environment, per-command rlimits and a session that can be killed as a
//! whole (Docker has no API to kill an exec).
//!
//! ```no_run
//! use orchestrator_core::{CommandSpec, Orchestrator, WorkspaceSpec};
//! use orchestrator_docker::{DockerConfig, DockerOrchestrator};
//!
//! # async fn demo() -> orchestrator_core::Result<()> {
//! let docker = DockerOrchestrator::new(DockerConfig::from_env())?;
//! let spec = WorkspaceSpec::new().image("debian:bookworm-slim");
//! let id = docker.create_workspace(&spec).await?;
//! let out = docker.run_command(&id, &CommandSpec::shell("echo hi")).await?;
//! assert_eq!(out.stdout, b"hi\n");
//! docker.cleanup(&id).await?;
//! # Ok(()) }
//! ```
//!
//! See `docs/docker.md` for the configuration, the labels, how limits map
//! and how orphans are reaped.
#![deny(missing_docs)]

mod archive;
mod backend;
mod background;
mod client;
mod config;
mod container;
mod error;
mod exec;
mod images;
mod limits;
mod orchestrator;
mod owner;
mod pool;
mod reap;
mod resolve;
mod scripts;
#[cfg(feature = "test-util")]
mod test_image;
mod transfer;
mod workspace;

pub use backend::DockerOrchestrator;
pub use config::{
    DockerConfig, PullEvent, PullProgress, DEFAULT_NETWORK_MODE, LABEL_EXECUTION, LABEL_WORKSPACE,
    MAX_WARM_POOL, OWNER_LABEL, OWNER_VALUE,
};
pub use error::DockerOrchestratorError;
pub use pool::PoolStats;

#[cfg(feature = "test-util")]
pub use archive::{build_archive_for_tests, extract_archive_for_tests};
#[cfg(feature = "test-util")]
pub use test_image::{ensure_test_image, TestImageOptions, TEST_IMAGE};

fn registry_factory(
) -> orchestrator_core::Result<std::sync::Arc<dyn orchestrator_core::Orchestrator>> {
    Ok(std::sync::Arc::new(DockerOrchestrator::new(
        DockerConfig::from_env(),
    )?))
}

orchestrator_core::register_backend!(
    "docker",
    "workspaces are Docker containers (bollard; opt-in, needs a daemon)",
    registry_factory
);

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
//! let out = docker
//!     .run_command(&id, &CommandSpec::shell("echo hi").build()?)
//!     .await?;
//! assert_eq!(out.stdout, b"hi\n");
//! docker.cleanup(&id).await?;
//! # Ok(()) }
//! ```
//!
//! See `docs/docker.md` for the configuration, the labels, how limits map
//! and how orphans are reaped. The [`swarm`] backend (`SwarmOrchestrator`)
//! places the same containers on a Docker Swarm (`docs/scale-out.md`).
#![deny(missing_docs)]

mod archive;
mod backend;
mod background;
mod blocking;
mod client;
mod config;
mod container;
mod error;
mod exec;
mod images;
mod isolation;
mod limits;
mod orchestrator;
mod pool;
mod reap;
mod resolve;
mod route;
mod scripts;
pub mod swarm;
#[cfg(feature = "test-util")]
mod test_image;
mod transfer;
mod workspace;

pub use backend::DockerOrchestrator;
pub use config::{
    DockerConfig, PullEvent, PullProgress, DEFAULT_NETWORK_MODE, DEFAULT_TMP_INODES,
    DEFAULT_TMP_SIZE_BYTES, LABEL_EXECUTION, LABEL_WORKSPACE, MAX_WARM_POOL, OWNER_LABEL,
    OWNER_VALUE,
};
pub use error::DockerOrchestratorError;
pub use isolation::{
    APPARMOR, CAPABILITIES_DROPPED, NO_NEW_PRIVS, READ_ONLY_ROOT, SECCOMP, USER_NAMESPACE,
};
pub use limits::DOCKER;
pub use pool::PoolStats;
pub use swarm::{SwarmConfig, SwarmOrchestrator};

#[cfg(feature = "test-util")]
pub use archive::{build_archive_for_tests, extract_archive_for_tests};
#[cfg(feature = "test-util")]
pub use test_image::{ensure_test_image, TestImageOptions, TEST_IMAGE};

/// The backend's registered name.
pub const BACKEND_NAME: &str = "docker";

/// The settings the registry factory accepts: `host`, the daemon address
/// ([`DockerConfig::host`]); `network`, `none` or `host`
/// ([`DockerConfig::network_mode`]); `isolation`, `auto`, `full` or `none`
/// ([`DockerConfig::isolation`]; containers are always isolated, `none`
/// only gets a note in the report).
const SETTINGS: &[&str] = &["host", "network", "isolation"];

/// The registry's factory: [`config_from_options`], then the backend.
fn registry_factory(
    options: &orchestrator_core::BackendOptions,
) -> orchestrator_core::Result<std::sync::Arc<dyn orchestrator_core::Orchestrator>> {
    Ok(std::sync::Arc::new(DockerOrchestrator::new(
        config_from_options(options)?,
    )?))
}

/// [`DockerConfig::from_env`], then the registry's options: `image` as
/// [`DockerConfig::default_image`], `pool_size` as
/// [`DockerConfig::warm_pool`], `progress` receiving image pulls, and the
/// [`SETTINGS`]. An unknown setting or value is InvalidInput.
fn config_from_options(
    options: &orchestrator_core::BackendOptions,
) -> orchestrator_core::Result<DockerConfig> {
    use orchestrator_core::{Error, IsolationMode, NetworkMode};
    options.check(BACKEND_NAME, SETTINGS, true)?;
    let mut config = DockerConfig::from_env();
    if let Some(image) = &options.image {
        config = config.default_image(image.clone());
    }
    if let Some(size) = options.pool_size {
        config = config.warm_pool(size);
    }
    if let Some(host) = options.settings.get("host") {
        config = config.host(host.clone());
    }
    if let Some(n) = options.settings.get("network") {
        let n: NetworkMode = n
            .parse()
            .map_err(|e| Error::invalid(format!("backend {BACKEND_NAME}: {e}")))?;
        config = config.network_mode(n.as_str());
    }
    if let Some(m) = options.settings.get("isolation") {
        let m: IsolationMode = m
            .parse()
            .map_err(|e| Error::invalid(format!("backend {BACKEND_NAME}: {e}")))?;
        config = config.isolation(m);
    }
    if let Some(progress) = options.progress.clone() {
        config = config.pull_progress(PullProgress::reporting_to(progress));
    }
    Ok(config)
}

orchestrator_core::register_backend!(
    BACKEND_NAME,
    "workspaces are Docker containers (bollard; opt-in, needs a daemon)",
    registry_factory
);

/// The swarm backend's registry factory.
fn swarm_factory(
    options: &orchestrator_core::BackendOptions,
) -> orchestrator_core::Result<std::sync::Arc<dyn orchestrator_core::Orchestrator>> {
    Ok(std::sync::Arc::new(SwarmOrchestrator::new(
        swarm::config_from_options(options)?,
    )?))
}

orchestrator_core::register_backend!(
    swarm::BACKEND_NAME,
    "workspaces are one-replica Docker Swarm services; commands go to the task's node daemon",
    swarm_factory
);

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::{BackendOptions, Error, IsolationMode};

    #[test]
    fn network_and_isolation_settings_are_parsed() {
        let c = config_from_options(
            &BackendOptions::new()
                .setting("network", "host")
                .setting("isolation", "none"),
        )
        .expect("config");
        assert_eq!(c.network_mode, "host");
        assert_eq!(c.isolation, IsolationMode::None);
        let c =
            config_from_options(&BackendOptions::new().setting("network", "none")).expect("config");
        assert_eq!(c.network_mode, "none");
        assert_eq!(c.isolation, IsolationMode::Auto);
        for (k, v) in [("network", "bridge"), ("isolation", "strict")] {
            match config_from_options(&BackendOptions::new().setting(k, v)) {
                Err(Error::InvalidInput(msg)) => assert!(msg.contains(v), "{msg}"),
                other => panic!("{k}={v}: {other:?}"),
            }
        }
    }
}

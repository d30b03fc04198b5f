//! `isolation`: how a workspace container is isolated from the host. Always
//! level full (a container has its own root, processes, users' view and,
//! with network mode `none`, network); the mechanisms are the hardening
//! every container gets ([`crate::container`]) and the security features
//! the daemon reports (its default seccomp profile, AppArmor, user
//! namespace remapping), asked once per backend.

use orchestrator_core::{
    IsolationMode, IsolationReport, Mechanism, NetworkMode, Result, WorkspaceId,
};

use crate::limits::DOCKER;
use crate::DockerOrchestrator;

/// Every capability dropped (`CapDrop: ALL`).
pub const CAPABILITIES_DROPPED: Mechanism = Mechanism::named("capabilities-dropped");
/// `no-new-privileges`: setuid binaries and file capabilities gain nothing.
pub const NO_NEW_PRIVS: Mechanism = Mechanism::named("no-new-privs");
/// The daemon's default seccomp profile.
pub const SECCOMP: Mechanism = Mechanism::named("seccomp");
/// The daemon's AppArmor profile.
pub const APPARMOR: Mechanism = Mechanism::named("apparmor");
/// The daemon maps container users to unprivileged host ids (`userns-remap`).
pub const USER_NAMESPACE: Mechanism = Mechanism::named("user-namespace");
/// A read-only root filesystem; only the workspace, `/tmp` and `/run` are
/// writable.
pub const READ_ONLY_ROOT: Mechanism = Mechanism::named("read-only-root");

/// The daemon's security features as `docker info` lists them
/// (`name=seccomp,profile=default`, `name=apparmor`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DaemonSecurity {
    options: Vec<String>,
}

impl DaemonSecurity {
    pub(crate) fn new(options: Vec<String>) -> Self {
        Self { options }
    }

    /// Whether feature `name` is listed (and, for seccomp, not unconfined).
    fn has(&self, name: &str) -> bool {
        self.options.iter().any(|o| {
            let mut fields = o.split(',');
            fields.next() == Some(format!("name={name}").as_str())
                && !fields.any(|f| f == "profile=unconfined")
        })
    }
}

/// The report for a container with `network_mode`, asked as `requested`,
/// on a daemon with `security`.
pub(crate) fn report(
    requested: IsolationMode,
    network_mode: &str,
    security: &DaemonSecurity,
) -> IsolationReport {
    let network = if network_mode == "none" {
        NetworkMode::None
    } else {
        NetworkMode::Host
    };
    let mut mechanisms = vec![DOCKER, CAPABILITIES_DROPPED, NO_NEW_PRIVS];
    if security.has("seccomp") {
        mechanisms.push(SECCOMP);
    }
    if security.has("apparmor") {
        mechanisms.push(APPARMOR);
    }
    if security.has("userns") {
        mechanisms.push(USER_NAMESPACE);
    }
    mechanisms.push(READ_ONLY_ROOT);
    let mut notes = Vec::new();
    if requested == IsolationMode::None {
        notes.push(
            "docker containers are always isolated: isolation none is not available, full is in force"
                .to_string(),
        );
    }
    if !matches!(network_mode, "none" | "host") {
        notes.push(format!(
            "network mode {network_mode:?} is reported as host: the container reaches the host's network"
        ));
    }
    let mut r = IsolationReport::full(requested, network, mechanisms);
    if !notes.is_empty() {
        r.note = Some(notes.join("; "));
    }
    r
}

impl DockerOrchestrator {
    /// `isolation`: NotFound for a workspace this backend does not hold,
    /// else the [`report`] (the daemon's features asked on first use).
    pub(crate) async fn isolation_of(&self, id: &WorkspaceId) -> Result<IsolationReport> {
        let ws = self.ws(id)?;
        let security = self
            .security
            .get_or_try_init(|| async {
                // The daemon that runs the container (a swarm node's).
                let ctx = self.ctx(&ws).await?;
                let info = crate::client::deadline(
                    &ctx.host,
                    "info",
                    self.config.request_timeout,
                    ctx.docker.info(),
                )
                .await?;
                Ok::<_, crate::error::DockerOrchestratorError>(DaemonSecurity::new(
                    info.security_options.unwrap_or_default(),
                ))
            })
            .await?;
        Ok(report(
            self.config.isolation,
            &self.config.network_mode,
            security,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::IsolationLevel;

    fn seccomp() -> DaemonSecurity {
        DaemonSecurity::new(vec!["name=seccomp,profile=default".into()])
    }

    #[test]
    fn the_network_mode_decides_the_network() {
        let r = report(IsolationMode::Auto, "none", &seccomp());
        assert_eq!(r.level, IsolationLevel::Full);
        assert_eq!(r.network, NetworkMode::None);
        assert_eq!(r.note, None);
        let r = report(IsolationMode::Full, "host", &seccomp());
        assert_eq!(r.network, NetworkMode::Host);
        assert_eq!(r.note, None);
        let r = report(IsolationMode::Full, "bridge", &seccomp());
        assert_eq!(r.network, NetworkMode::Host);
        assert!(r.note.as_deref().unwrap_or("").contains("bridge"), "{r:?}");
    }

    #[test]
    fn isolation_none_is_still_full_with_a_note() {
        let r = report(IsolationMode::None, "none", &seccomp());
        assert_eq!(r.requested, IsolationMode::None);
        assert_eq!(r.level, IsolationLevel::Full);
        assert!(r.note.as_deref().unwrap_or("").contains("always isolated"));
        assert!(!r.fell_back());
    }

    #[test]
    fn mechanisms_follow_the_daemon() {
        let r = report(IsolationMode::Auto, "none", &seccomp());
        assert_eq!(
            r.enforced_by,
            [
                DOCKER,
                CAPABILITIES_DROPPED,
                NO_NEW_PRIVS,
                SECCOMP,
                READ_ONLY_ROOT
            ]
        );
        let unconfined = DaemonSecurity::new(vec!["name=seccomp,profile=unconfined".into()]);
        let r = report(IsolationMode::Auto, "none", &unconfined);
        assert!(!r.enforced_by.contains(&SECCOMP), "{r:?}");
        let all = DaemonSecurity::new(vec![
            "name=apparmor".into(),
            "name=seccomp,profile=default".into(),
            "name=userns".into(),
        ]);
        let r = report(IsolationMode::Auto, "none", &all);
        assert!(r.enforced_by.contains(&APPARMOR));
        assert!(r.enforced_by.contains(&USER_NAMESPACE));
        assert!(r.enforced_by.contains(&SECCOMP));
    }
}

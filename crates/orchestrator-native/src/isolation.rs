//! Whether and how this backend isolates its workspaces: the probe made at
//! construction, the [`IsolationReport`] of a new workspace, the host ids
//! its sandbox user maps to, and the sandbox set-up it is built from.

use std::path::{Path, PathBuf};

use orchestrator_core::{
    Error, IsolationMode, IsolationReport, Mount, NetworkMode, Result, WorkspaceId,
};

use crate::config::NativeConfig;
use crate::error::NativeOrchestratorError;
use crate::sandbox::{self, Setup};
use crate::NativeOrchestrator;

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The sandbox set-up of `config` for workspace directory `dir`, its
/// sandbox user mapped to host `ids`.
fn setup(config: &NativeConfig, dir: PathBuf, ids: (u32, u32), mounts: &[Mount]) -> Setup {
    let host_network = config.network == NetworkMode::Host;
    let mut etc = config.etc.clone();
    if host_network {
        etc.extend(["resolv.conf".to_string(), "hosts".to_string()]);
    }
    Setup {
        workspace: dir,
        host_uid: ids.0,
        host_gid: ids.1,
        host_network,
        system: config.system_binds.clone(),
        etc,
        mounts: mounts
            .iter()
            .map(|m| {
                (
                    // The init opens sources without following links.
                    m.host()
                        .canonicalize()
                        .unwrap_or_else(|_| m.host().to_path_buf()),
                    m.sandbox().as_str().to_string(),
                    m.is_read_only(),
                )
            })
            .collect(),
        tmp_bytes: config.tmp_size_bytes,
        tmp_inodes: config.tmp_inodes,
    }
}

/// Refuses a configuration that would not isolate what it claims to: as
/// root, a sandbox id range that includes uid 0 or runs past the id space.
pub(crate) fn check_config(config: &NativeConfig) -> Result<()> {
    if config.warm_pool > crate::MAX_WARM_POOL {
        return Err(Error::invalid(format!(
            "native: warm_pool {} is over the maximum {}",
            config.warm_pool,
            crate::MAX_WARM_POOL
        )));
    }
    let r = config.sandbox_ids;
    if r.count == 0
        || r.first == 0
        || r.first
            .checked_add(r.count - 1)
            .is_none_or(|l| l == u32::MAX)
    {
        return Err(Error::invalid(format!(
            "native: sandbox_ids {}..+{} must be a non-empty range of host ids above 0 \
             and below 4294967295",
            r.first, r.count
        )));
    }
    Ok(())
}

/// Whether workspaces made with `config` under `root` can be isolated:
/// `Ok` when they will be, else why not (also when `none` was asked for).
pub(crate) fn detect(config: &NativeConfig, root: &Path) -> std::result::Result<(), String> {
    if config.isolation == IsolationMode::None {
        return Err("isolation \"none\" was asked for".into());
    }
    let ids = own_or_first(config);
    sandbox::probe(root, &setup(config, root.to_path_buf(), ids, &[]))
}

fn own_or_first(config: &NativeConfig) -> (u32, u32) {
    if is_root() {
        (config.sandbox_ids.first, config.sandbox_ids.first)
    } else {
        // SAFETY: getegid/geteuid have no preconditions.
        unsafe { (libc::geteuid(), libc::getegid()) }
    }
}

impl NativeOrchestrator {
    /// Whether new workspaces are isolated.
    pub(crate) fn isolating(&self) -> bool {
        self.isolation_state().is_ok()
    }

    /// `Ok` when new workspaces are isolated, else why not. Not known yet
    /// (no workspace has started a sandbox), one probe sandbox is built
    /// and run now, once for the process and set-up.
    pub(crate) fn isolation_state(&self) -> &std::result::Result<(), String> {
        self.inner
            .isolation
            .get_or_init(|| detect(&self.inner.config, &self.inner.root))
    }

    /// Whether workspaces are isolated, if known yet (`None`: the next
    /// workspace's sandbox will tell).
    pub(crate) fn isolation_known(&self) -> Option<bool> {
        self.inner.isolation.get().map(|r| r.is_ok())
    }

    /// Records what the first sandbox taught: it started (`Ok`), or why
    /// not. An answer already there stands.
    pub(crate) fn learn_isolation(&self, answer: std::result::Result<(), String>) {
        match &answer {
            Ok(()) => tracing::debug!("full isolation available (first sandbox)"),
            Err(why) => tracing::info!(%why, "full isolation unavailable (first sandbox)"),
        }
        let _ = self.inner.isolation.set(answer);
    }

    /// Why new workspaces are not isolated, when they are not.
    pub fn isolation_unavailable_reason(&self) -> Option<&str> {
        self.isolation_state().as_ref().err().map(String::as_str)
    }

    /// Refuses what cannot be given: `full` without isolation, or `auto`
    /// in strict mode falling back; mounts without isolation; a mount whose
    /// host path is missing.
    pub(crate) fn check_isolation(&self, mounts: &[Mount]) -> Result<()> {
        let config = &self.inner.config;
        // Not known yet: the workspace's own sandbox will tell, and a
        // failure there comes back here (see `create`).
        if let Some(Err(why)) = self.inner.isolation.get() {
            let refuse = match config.isolation {
                IsolationMode::Full => true,
                IsolationMode::Auto => config.strict,
                _ => false,
            };
            if refuse {
                return Err(NativeOrchestratorError::IsolationUnavailable {
                    reason: why.clone(),
                }
                .into());
            }
            if !mounts.is_empty() {
                return Err(Error::Unsupported {
                    backend: crate::BACKEND_NAME.into(),
                    operation: format!(
                        "mounts without isolation (a workspace of host processes has no mount \
                         namespace: {why})"
                    ),
                });
            }
        }
        for m in mounts {
            match std::fs::metadata(m.host()) {
                Ok(md) if md.is_dir() || md.is_file() => {}
                Ok(_) => {
                    return Err(Error::invalid(format!(
                        "mount source {} is neither a directory nor a regular file",
                        m.host().display()
                    )))
                }
                Err(e) => {
                    return Err(Error::invalid(format!(
                        "mount source {}: {e}",
                        m.host().display()
                    )))
                }
            }
        }
        Ok(())
    }

    /// The host uid and gid workspace `id`'s sandbox user maps to: one of
    /// the configured range as root (spread by the id), the caller's own
    /// otherwise.
    pub(crate) fn host_ids(&self, id: &WorkspaceId) -> (u32, u32) {
        if !is_root() {
            return own_or_first(&self.inner.config);
        }
        let range = self.inner.config.sandbox_ids;
        // FNV-1a over the id: different workspaces mostly draw different
        // ids, with no state shared between processes.
        let mut h: u32 = 0x811c_9dc5;
        for b in id.as_str().bytes() {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
        let n = range.first + h % range.count.max(1);
        (n, n)
    }

    /// The set-up of workspace `dir`'s sandbox.
    pub(crate) fn sandbox_setup(&self, dir: &Path, ids: (u32, u32), mounts: &[Mount]) -> Setup {
        setup(&self.inner.config, dir.to_path_buf(), ids, mounts)
    }

    /// The report of a new workspace whose sandbox user is host uid
    /// `host_uid` (when isolated).
    pub(crate) fn isolation_report(&self, host_uid: Option<u32>) -> IsolationReport {
        let config = &self.inner.config;
        // A sandbox user means a sandbox: it is being started (the answer
        // not known yet) or isolation is known to work.
        match (self.inner.isolation.get().unwrap_or(&Ok(())), host_uid) {
            (Ok(()), Some(uid)) => {
                let mut r = IsolationReport::full(
                    config.isolation,
                    config.network,
                    sandbox::enforced_by(config.network),
                );
                r.note = Some(format!(
                    "sandbox init per workspace; commands run as uid {} (host uid {uid}) under \
                     a read-only root with the workspace at /workspace",
                    sandbox::SANDBOX_ID
                ));
                r
            }
            (Err(why), _) if config.isolation == IsolationMode::None => {
                IsolationReport::none(IsolationMode::None, why.clone())
            }
            (Err(why), _) => IsolationReport::none(
                config.isolation,
                format!("full isolation unavailable ({why}): commands run as host processes"),
            ),
            (Ok(()), None) => IsolationReport::none(config.isolation, "no sandbox was started"),
        }
    }
}

#[cfg(test)]
mod tests {
    use orchestrator_core::{IsolationLevel, Orchestrator, SandboxPath, WorkspaceSpec};

    use super::*;
    use crate::config::IdRange;

    fn unable(mode: IsolationMode, strict: bool, root: &Path) -> NativeOrchestrator {
        let config = NativeConfig {
            workspace_root: root.to_path_buf(),
            isolation: mode,
            strict,
            ..NativeConfig::default()
        };
        NativeOrchestrator::with_isolation_probe(config, |_, _| Err("no user namespaces".into()))
            .unwrap()
    }

    #[tokio::test]
    async fn a_host_that_cannot_isolate_is_said_so_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        // auto: runs without, and the report says why.
        let auto = unable(IsolationMode::Auto, false, dir.path());
        assert!(!auto.capabilities().isolation);
        assert!(!auto.capabilities().mounts);
        let ws = auto.create_workspace(&WorkspaceSpec::new()).await.unwrap();
        let r = auto.isolation(&ws).await.unwrap();
        assert_eq!(r.level, IsolationLevel::None);
        assert!(r.fell_back(), "{r:?}");
        assert!(
            r.note.as_deref().unwrap().contains("no user namespaces"),
            "{r:?}"
        );
        assert!(r.enforced_by.is_empty());
        auto.cleanup(&ws).await.unwrap();
        match auto.is_available().await {
            orchestrator_core::Availability::Degraded { reason } => {
                assert!(reason.contains("isolation"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // Mounts need the sandbox.
        let m = Mount::new(dir.path(), SandboxPath::new("m").unwrap(), true).unwrap();
        let e = auto
            .create_workspace(&WorkspaceSpec::new().mount(m))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }), "{e}");
        // full, and auto in strict mode: refused before anything is made.
        for (mode, strict) in [(IsolationMode::Full, false), (IsolationMode::Auto, true)] {
            let o = unable(mode, strict, dir.path());
            let e = o.create_workspace(&WorkspaceSpec::new()).await.unwrap_err();
            assert!(e.to_string().contains("isolation"), "{e}");
            assert!(e.to_string().contains("no user namespaces"), "{e}");
        }
        let full = unable(IsolationMode::Full, false, dir.path());
        assert!(matches!(
            full.is_available().await,
            orchestrator_core::Availability::Unavailable { .. }
        ));
        // Nothing was left in the root.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // none: no fallback to report.
        let none = unable(IsolationMode::None, false, dir.path());
        let ws = none.create_workspace(&WorkspaceSpec::new()).await.unwrap();
        let r = none.isolation(&ws).await.unwrap();
        assert_eq!(r.requested, IsolationMode::None);
        assert!(!r.fell_back());
        none.cleanup(&ws).await.unwrap();
    }

    /// One sandbox that fails to start while isolation is still unknown
    /// does not decide it: the probe is asked, finds the host able, and the
    /// workspace is made isolated; the next failure is an error, not a
    /// silent fall back to host processes.
    #[tokio::test]
    async fn a_failed_first_sandbox_asks_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        let n = NativeOrchestrator::new(NativeConfig {
            workspace_root: dir.path().to_path_buf(),
            ..NativeConfig::default()
        })
        .unwrap();
        n.inner
            .fail_next_sandbox
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let ws = n.create_workspace(&WorkspaceSpec::new()).await.unwrap();
        let r = n.isolation(&ws).await.unwrap();
        if let Some(why) = n.isolation_unavailable_reason() {
            // A host that cannot isolate: the fall back is what the probe says.
            assert_eq!(r.level, IsolationLevel::None, "{r:?}");
            assert!(r.note.as_deref().unwrap_or("").contains(why), "{r:?}");
        } else {
            assert_eq!(r.level, IsolationLevel::Full, "{r:?}");
            n.inner
                .fail_next_sandbox
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let e = n.create_workspace(&WorkspaceSpec::new()).await.unwrap_err();
            assert!(e.to_string().contains("injected"), "{e}");
        }
        n.cleanup(&ws).await.unwrap();
    }

    #[test]
    fn sandbox_ids_must_not_include_root_or_overflow() {
        for (first, count) in [(0, 10), (5, 0), (u32::MAX - 1, 2), (u32::MAX, 1)] {
            let c = NativeConfig {
                sandbox_ids: IdRange { first, count },
                ..NativeConfig::default()
            };
            assert!(check_config(&c).is_err(), "{first}+{count}");
        }
        assert!(check_config(&NativeConfig::default()).is_ok());
    }
}

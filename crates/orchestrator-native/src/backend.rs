//! The [`NativeOrchestrator`] handle: its shared state, construction (the
//! workspace root, cgroup detection) and what it reports about the host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use orchestrator_core::owner::Owner;
use orchestrator_core::{Availability, Result, WorkspaceId};

use crate::cgroup::{CgroupSupport, CgroupVersion};
use crate::config::NativeConfig;
use crate::error::NativeOrchestratorError;
use crate::workspace::{self, Workspace};

/// The native backend. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct NativeOrchestrator {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: NativeConfig,
    /// The canonical workspace root.
    pub root: PathBuf,
    /// The cgroups in use, or why there are none.
    pub cgroups: std::result::Result<CgroupSupport, String>,
    /// `Ok` when new workspaces are isolated, else why not; empty until
    /// the first sandbox or a question that needs the answer (see
    /// [`NativeOrchestrator::isolation_state`]).
    pub isolation: OnceLock<std::result::Result<(), String>>,
    /// This process, as named in the ids of the workspaces it makes.
    pub owner: Owner,
    /// [`workspace::name_prefix`] of `owner`, made once: every workspace
    /// id starts with it.
    pub name_prefix: String,
    pub workspaces: Mutex<HashMap<WorkspaceId, Arc<Workspace>>>,
    /// The warm pool ([`NativeConfig::warm_pool`]).
    pub pool: Mutex<crate::pool::PoolState>,
    /// `run_command`s in flight (a refill waits for none to be, see
    /// [`crate::pool`]).
    pub busy: std::sync::atomic::AtomicUsize,
    /// Tests: the next fresh sandbox fails to start, as one would under a
    /// namespace limit or a start timeout.
    #[cfg(test)]
    pub fail_next_sandbox: std::sync::atomic::AtomicBool,
}

impl NativeOrchestrator {
    /// Creates the backend: makes the workspace root and detects cgroups.
    /// Whether workspaces can be isolated is learnt when first needed: the
    /// first workspace's own sandbox answers it (no probe sandbox of its
    /// own, which a one-shot caller would pay twice), or one probe sandbox
    /// when something asks before that (capabilities, the reason isolation
    /// is unavailable, availability in `full` mode, a warm pool).
    pub fn new(config: NativeConfig) -> Result<Self> {
        Self::build(config, None)
    }

    /// [`Self::new`] with the isolation probe's answer given, at once
    /// (tests stand in a host that cannot isolate).
    #[cfg(test)]
    pub(crate) fn with_isolation_probe(
        config: NativeConfig,
        probe: impl FnOnce(&NativeConfig, &Path) -> std::result::Result<(), String> + 'static,
    ) -> Result<Self> {
        Self::build(config, Some(Box::new(probe)))
    }

    #[allow(clippy::type_complexity)]
    fn build(
        config: NativeConfig,
        probe: Option<Box<dyn FnOnce(&NativeConfig, &Path) -> std::result::Result<(), String>>>,
    ) -> Result<Self> {
        crate::isolation::check_config(&config)?;
        use std::os::unix::fs::DirBuilderExt;
        let root = &config.workspace_root;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| NativeOrchestratorError::io("create workspace root", root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| NativeOrchestratorError::io("canonicalize", root, e))?;
        let cgroups = if config.use_cgroups {
            CgroupSupport::detect(&config.cgroup_parent)
        } else {
            Err("cgroups disabled by configuration".to_string())
        };
        match &cgroups {
            Ok(c) => tracing::debug!(version = ?c.version(), "native backend uses cgroups"),
            Err(why) => tracing::info!(%why, "native backend without cgroups: rlimit fallback"),
        }
        let isolation = OnceLock::new();
        if let Some(probe) = probe {
            let _ = isolation.set(probe(&config, &root));
        } else if config.isolation == orchestrator_core::IsolationMode::None {
            let _ = isolation.set(Err("isolation \"none\" was asked for".to_string()));
        }
        let owner = Owner::current();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                root,
                cgroups,
                isolation,
                name_prefix: workspace::name_prefix(&owner),
                owner,
                workspaces: Mutex::new(HashMap::new()),
                pool: Mutex::new(Default::default()),
                busy: std::sync::atomic::AtomicUsize::new(0),
                #[cfg(test)]
                fail_next_sandbox: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The cgroup version in use, or `None` on the rlimit fallback.
    pub fn cgroup_version(&self) -> Option<CgroupVersion> {
        self.inner.cgroups.as_ref().ok().map(|c| c.version())
    }

    /// Why cgroups are not used, when they are not.
    pub fn cgroup_unavailable_reason(&self) -> Option<&str> {
        self.inner.cgroups.as_ref().err().map(String::as_str)
    }

    /// The canonical workspace root.
    pub fn workspace_root(&self) -> &Path {
        &self.inner.root
    }

    /// `is_available`: the workspace root must be usable, and full
    /// isolation possible when `full` was asked for; without cgroups (limits
    /// fall back to rlimits) or when `auto` cannot isolate, the backend
    /// works, degraded, and says why.
    pub(crate) fn availability(&self) -> Availability {
        use orchestrator_core::IsolationMode;
        let probe = &self.inner.root;
        if let Err(e) = std::fs::metadata(probe) {
            return Availability::unavailable(format!(
                "workspace root {} unusable: {e}",
                probe.display()
            ));
        }
        let mode = self.inner.config.isolation;
        let mut remarks = Vec::new();
        // `auto` works either way: its answer is not worth a probe sandbox
        // here (the first workspace gives it); `full` depends on it.
        let known = match mode {
            IsolationMode::Full => Some(self.isolation_state()),
            _ => self.inner.isolation.get(),
        };
        if let Some(Err(why)) = known {
            match mode {
                IsolationMode::None => {}
                IsolationMode::Full => {
                    return Availability::unavailable(format!("full isolation unavailable: {why}"))
                }
                _ => remarks.push(format!(
                    "full isolation unavailable ({why}); commands run as host processes"
                )),
            }
        }
        if let Err(why) = &self.inner.cgroups {
            remarks.push(format!(
                "no writable cgroups ({why}); limits fall back to rlimits"
            ));
        }
        if remarks.is_empty() {
            Availability::Available
        } else {
            Availability::degraded(remarks.join("; "))
        }
    }
}

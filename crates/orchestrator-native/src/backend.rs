//! The [`NativeOrchestrator`] handle: its shared state, construction (the
//! workspace root, cgroup detection) and what it reports about the host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// This process, as named in the ids of the workspaces it makes.
    pub owner: Owner,
    /// [`workspace::name_prefix`] of `owner`, made once: every workspace
    /// id starts with it.
    pub name_prefix: String,
    pub workspaces: Mutex<HashMap<WorkspaceId, Arc<Workspace>>>,
}

impl NativeOrchestrator {
    /// Creates the backend: makes the workspace root and detects cgroups.
    pub fn new(config: NativeConfig) -> Result<Self> {
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
        let owner = Owner::current();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                root,
                cgroups,
                name_prefix: workspace::name_prefix(&owner),
                owner,
                workspaces: Mutex::new(HashMap::new()),
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

    /// `is_available`: the workspace root must be usable; without cgroups
    /// the backend works, degraded to rlimits.
    pub(crate) fn availability(&self) -> Availability {
        let probe = &self.inner.root;
        match std::fs::metadata(probe) {
            Err(e) => Availability::unavailable(format!(
                "workspace root {} unusable: {e}",
                probe.display()
            )),
            Ok(_) => match &self.inner.cgroups {
                Ok(_) => Availability::Available,
                Err(why) => Availability::degraded(format!(
                    "no writable cgroups ({why}); limits fall back to rlimits"
                )),
            },
        }
    }
}

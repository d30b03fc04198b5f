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
        self.inner.isolation.is_ok()
    }

    /// Why new workspaces are not isolated, when they are not.
    pub fn isolation_unavailable_reason(&self) -> Option<&str> {
        self.inner.isolation.as_ref().err().map(String::as_str)
    }

    /// Refuses what cannot be given: `full` without isolation, or `auto`
    /// in strict mode falling back; mounts without isolation; a mount whose
    /// host path is missing.
    pub(crate) fn check_isolation(&self, mounts: &[Mount]) -> Result<()> {
        let config = &self.inner.config;
        if let Err(why) = &self.inner.isolation {
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
        match (&self.inner.isolation, host_uid) {
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

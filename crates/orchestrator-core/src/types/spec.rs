//! What to provision: the workspace spec and the host paths it mounts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::limits::ResourceLimits;
use crate::paths::SandboxPath;

/// A host path made visible inside a sandbox (the seed's "mount volumes").
/// It can only exist valid: the host path is absolute and the sandbox path
/// is a [`SandboxPath`] other than the workspace root. Whether the host path
/// exists is the backend's check at `create_workspace`, when it matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    host: PathBuf,
    sandbox: SandboxPath,
    read_only: bool,
}

impl Mount {
    /// A mount of `host` at `sandbox`; read-only unless `read_only` is false.
    pub fn new(host: impl Into<PathBuf>, sandbox: SandboxPath, read_only: bool) -> Result<Self> {
        let host = host.into();
        if !host.is_absolute() {
            return Err(Error::invalid(format!(
                "mount source {} is not an absolute host path",
                host.display()
            )));
        }
        if sandbox.is_root() {
            return Err(Error::invalid(
                "a mount cannot replace the workspace root; name a path inside it",
            ));
        }
        Ok(Self {
            host,
            sandbox,
            read_only,
        })
    }

    /// The host path.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// Where it appears in the sandbox, relative to the workspace.
    pub fn sandbox(&self) -> &SandboxPath {
        &self.sandbox
    }

    /// Writes through it are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// What to provision.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceSpec {
    /// The execution this workspace serves, recorded on the sandbox (label,
    /// metadata) so a crashed run's sandboxes can be found.
    pub execution_id: Option<String>,
    /// Image for container backends; ignored by native.
    pub image: Option<String>,
    /// Extra labels for the sandbox (container labels, native metadata).
    pub labels: BTreeMap<String, String>,
    /// Limits applied at creation (same as a later `apply_resource_limits`).
    pub limits: Option<ResourceLimits>,
    /// Host paths mounted into the sandbox. A backend that cannot mount
    /// ([`crate::Capabilities::mounts`] false) answers
    /// [`Error::Unsupported`] for a spec with any.
    pub mounts: Vec<Mount>,
}

impl WorkspaceSpec {
    /// An empty spec.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the execution id.
    pub fn execution_id(mut self, id: impl Into<String>) -> Self {
        self.execution_id = Some(id.into());
        self
    }
    /// Sets the image (container backends).
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }
    /// Adds a label.
    pub fn label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    /// Sets limits applied at creation.
    pub fn limits(mut self, limits: ResourceLimits) -> Self {
        self.limits = Some(limits);
        self
    }
    /// Adds a mount.
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }
}

//! What to provision: the workspace spec.

use std::collections::BTreeMap;

use crate::limits::ResourceLimits;

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
}

//! What a backend can do ([`Capabilities`]) and whether it can serve now
//! ([`Availability`]).

use crate::limits::LimitKind;

/// What a backend can do and enforce. Conformance cases are gated on it: a
/// case the backend does not claim is reported as skipped, not passed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// copy_to / copy_from work.
    pub copy: bool,
    /// start_background / process_status / wait_process work.
    pub background: bool,
    /// workspace_path gives a host path.
    pub direct_access: bool,
    /// Commands have no network access.
    pub network_isolation: bool,
    /// New workspaces are fully isolated from the host
    /// ([`crate::IsolationLevel::Full`]): their commands see their own root,
    /// processes and users, cannot signal host processes, run without
    /// capabilities, under no_new_privs and a seccomp filter. The
    /// conformance suite's isolation cases need it.
    pub isolation: bool,
    /// Out-of-memory kills are detected and reported as MemoryLimitExceeded.
    pub oom_detection: bool,
    /// Workspaces live outside this process (a host directory, a daemon's
    /// container), so another process using this backend on the host meets
    /// them: cleanup and reap_orphans apply the owner rules across
    /// processes. False for a backend whose workspaces are this process's
    /// memory.
    pub cross_process: bool,
    /// Workspaces run from container images ([`crate::WorkspaceSpec::image`]
    /// is used; without one there is no image to run).
    pub images: bool,
    /// [`crate::WorkspaceSpec::mounts`] are honoured (read-only and
    /// read-write); without it a spec with mounts is
    /// [`crate::Error::Unsupported`].
    pub mounts: bool,
    /// Limits this backend enforces on this host.
    pub limits: Vec<LimitKind>,
}

impl Capabilities {
    /// Does the backend enforce this limit kind here?
    pub fn enforces(&self, kind: LimitKind) -> bool {
        self.limits.contains(&kind)
    }
}

/// Whether a backend can serve requests, and if not (or only partly) why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// It can serve requests, with nothing to remark.
    Available,
    /// It can serve requests, but not everything it could elsewhere (no
    /// writable cgroup, say); the reason says what is missing.
    Degraded {
        /// How it is degraded.
        reason: String,
    },
    /// It cannot serve requests now (a daemon down, say).
    Unavailable {
        /// Why not.
        reason: String,
    },
}

impl Availability {
    /// Available but degraded.
    pub fn degraded(reason: impl Into<String>) -> Self {
        Availability::Degraded {
            reason: reason.into(),
        }
    }

    /// Not available.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Availability::Unavailable {
            reason: reason.into(),
        }
    }

    /// It can serve requests (available, degraded or not).
    pub fn is_available(&self) -> bool {
        !matches!(self, Availability::Unavailable { .. })
    }

    /// Why it is unavailable or how it is degraded.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Availability::Available => None,
            Availability::Degraded { reason } | Availability::Unavailable { reason } => {
                Some(reason)
            }
        }
    }

    /// Stable name: "available", "degraded", "unavailable".
    pub fn name(&self) -> &'static str {
        match self {
            Availability::Available => "available",
            Availability::Degraded { .. } => "degraded",
            Availability::Unavailable { .. } => "unavailable",
        }
    }
}

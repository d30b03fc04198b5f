//! [`DockerConfig`]: how to reach the daemon, which image and network to
//! use, labels, and the deadlines of daemon requests.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::{IsolationMode, Progress, ProgressEvent};

/// Network mode of workspace containers unless configured otherwise.
pub const DEFAULT_NETWORK_MODE: &str = "none";
/// Size of each container's private `/tmp` (a tmpfs, counted against the
/// container's memory) unless configured otherwise: 256 MiB.
pub const DEFAULT_TMP_SIZE_BYTES: u64 = 256 << 20;
/// Inodes of each container's private `/tmp` unless configured otherwise.
pub const DEFAULT_TMP_INODES: u64 = 65_536;
/// Label carried by every container this backend creates; also the prefix
/// of the owner's labels ([`orchestrator_core::owner::Owner::labels`]):
/// `io.runbox.owner.pid`, `.start`, `.boot` and `.host`.
pub const OWNER_LABEL: &str = "io.runbox.owner";
/// Value of [`OWNER_LABEL`].
pub const OWNER_VALUE: &str = "runbox";

/// Label holding a container's workspace id.
pub const LABEL_WORKSPACE: &str = "io.runbox.workspace";
/// Label holding the execution id of a container created cold for a spec
/// that has one (a pooled container carries it in its name instead).
pub const LABEL_EXECUTION: &str = "io.runbox.execution";

/// One progress message of an image pull, for a CLI to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullEvent {
    /// The image being pulled.
    pub image: String,
    /// The layer the message is about, when it is about one.
    pub layer: Option<String>,
    /// The daemon's status text ("Downloading", "Pull complete", ...).
    pub status: String,
    /// Bytes done, when known.
    pub current: Option<u64>,
    /// Bytes in total, when known.
    pub total: Option<u64>,
}

/// A callback receiving [`PullEvent`]s while an image is pulled.
#[derive(Clone)]
pub struct PullProgress(Arc<dyn Fn(&PullEvent) + Send + Sync>);

impl PullProgress {
    /// Wraps a callback. It runs on the pulling task: keep it short.
    pub fn new(f: impl Fn(&PullEvent) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Hands pull events to a registry caller's [`Progress`] (the image
    /// as the task, the layer as the item).
    pub fn reporting_to(progress: Progress) -> Self {
        Self::new(move |e| {
            progress.emit(&ProgressEvent {
                task: format!("image {}", e.image),
                item: e.layer.clone(),
                status: e.status.clone(),
                current: e.current,
                total: e.total,
            })
        })
    }

    pub(crate) fn emit(&self, event: &PullEvent) {
        (self.0)(event)
    }
}

impl fmt::Debug for PullProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PullProgress(..)")
    }
}

/// Configuration of a [`crate::DockerOrchestrator`].
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Daemon address (`unix:///var/run/docker.sock`, `tcp://host:2375`).
    /// `None`: `DOCKER_HOST`, else the local default socket.
    pub host: Option<String>,
    /// Image for workspaces whose spec names none, and of the warm pool.
    /// `None` (the default): a spec without an image is
    /// [`orchestrator_core::Error::InvalidInput`], and the warm pool cannot
    /// be switched on.
    pub default_image: Option<String>,
    /// Labels added to every container (on top of runbox's own).
    pub labels: BTreeMap<String, String>,
    /// Docker network mode of workspace containers (`none` isolates them).
    /// The isolation report says `none` for `none` and `host` for anything
    /// else (`host`, `bridge`, a named network), since those reach the
    /// host's network.
    pub network_mode: String,
    /// The isolation asked for. Containers are always fully isolated, so
    /// this only travels into the report (where `none` gets a note saying
    /// so).
    pub isolation: IsolationMode,
    /// Size of each container's private `/tmp` tmpfs in bytes.
    pub tmp_size_bytes: u64,
    /// Inode cap of each container's private `/tmp` tmpfs.
    pub tmp_inodes: u64,
    /// Deadline of each quick daemon request (inspect, create, exec setup...).
    pub request_timeout: Duration,
    /// Deadline of the availability check (connect, negotiate, ping).
    pub availability_timeout: Duration,
    /// Deadline of archive transfers (copy_to / copy_from).
    pub transfer_timeout: Duration,
    /// Pull images that are missing locally.
    pub pull_missing: bool,
    /// Deadline of a whole image pull.
    pub pull_timeout: Duration,
    /// Receives pull progress.
    pub pull_progress: Option<PullProgress>,
    /// Treat every limit as strict (unenforceable limits are errors).
    pub strict_limits: bool,
    /// Size of the warm pool: how many started containers of
    /// `default_image` the backend keeps ready, so a `create_workspace`
    /// without an image of its own (or with `default_image`) and without
    /// labels takes one instead of creating and starting a container.
    /// 0 (the default) switches the pool off. Pooled containers live as
    /// long as the backend (they are removed when it is dropped), so keep
    /// it off in short-lived processes. At most [`MAX_WARM_POOL`]. See
    /// `docs/docker.md`.
    pub warm_pool: usize,
}

/// The largest [`DockerConfig::warm_pool`] a backend accepts.
pub const MAX_WARM_POOL: usize = 64;

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            host: None,
            default_image: None,
            labels: BTreeMap::new(),
            network_mode: DEFAULT_NETWORK_MODE.to_string(),
            isolation: IsolationMode::default(),
            tmp_size_bytes: DEFAULT_TMP_SIZE_BYTES,
            tmp_inodes: DEFAULT_TMP_INODES,
            request_timeout: Duration::from_secs(5),
            availability_timeout: Duration::from_millis(1500),
            transfer_timeout: Duration::from_secs(300),
            pull_missing: true,
            pull_timeout: Duration::from_secs(300),
            pull_progress: None,
            strict_limits: false,
            warm_pool: 0,
        }
    }
}

impl DockerConfig {
    /// The defaults (see the field docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults, adjusted from the environment: `DOCKER_HOST` (read at
    /// connect time anyway), `RUNBOX_DOCKER_IMAGE` (default image) and
    /// `RUNBOX_DOCKER_NETWORK` (network mode). Used by the registry factory.
    pub fn from_env() -> Self {
        let mut c = Self::default();
        if let Ok(h) = std::env::var("DOCKER_HOST") {
            if !h.is_empty() {
                c.host = Some(h);
            }
        }
        if let Ok(i) = std::env::var("RUNBOX_DOCKER_IMAGE") {
            if !i.is_empty() {
                c.default_image = Some(i);
            }
        }
        if let Ok(n) = std::env::var("RUNBOX_DOCKER_NETWORK") {
            if !n.is_empty() {
                c.network_mode = n;
            }
        }
        c
    }

    /// Sets the daemon address.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }
    /// Sets the default image.
    pub fn default_image(mut self, image: impl Into<String>) -> Self {
        self.default_image = Some(image.into());
        self
    }
    /// Adds a label to every container.
    pub fn label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    /// Sets the network mode.
    pub fn network_mode(mut self, mode: impl Into<String>) -> Self {
        self.network_mode = mode.into();
        self
    }
    /// Sets the isolation asked for (reported; containers are always
    /// isolated).
    pub fn isolation(mut self, mode: IsolationMode) -> Self {
        self.isolation = mode;
        self
    }
    /// Sets the size and inode cap of each container's private `/tmp`.
    pub fn tmp_limits(mut self, size_bytes: u64, inodes: u64) -> Self {
        self.tmp_size_bytes = size_bytes;
        self.tmp_inodes = inodes;
        self
    }
    /// Sets the deadline of quick daemon requests.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// Sets the deadline of the availability check.
    pub fn availability_timeout(mut self, d: Duration) -> Self {
        self.availability_timeout = d;
        self
    }
    /// Whether missing images are pulled.
    pub fn pull_missing(mut self, pull: bool) -> Self {
        self.pull_missing = pull;
        self
    }
    /// Sets the deadline of an image pull.
    pub fn pull_timeout(mut self, d: Duration) -> Self {
        self.pull_timeout = d;
        self
    }
    /// Sets the pull progress callback.
    pub fn pull_progress(mut self, p: PullProgress) -> Self {
        self.pull_progress = Some(p);
        self
    }
    /// Makes every limit strict.
    pub fn strict_limits(mut self, strict: bool) -> Self {
        self.strict_limits = strict;
        self
    }
    /// Sets the size of the warm pool (0 = off).
    pub fn warm_pool(mut self, size: usize) -> Self {
        self.warm_pool = size;
        self
    }

    /// The address that will be used, for messages.
    pub(crate) fn host_description(&self) -> String {
        self.host
            .clone()
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
    }
}

//! [`ServerConfig`]: how `runbox serve` is set up, and the [`Caps`] every
//! request's limits are checked against.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The server's maximum for every limit, and the defaults a request that
/// gives none gets: no run is unlimited.
#[derive(Debug, Clone, PartialEq)]
pub struct Caps {
    /// Largest `memory_bytes`.
    pub memory_bytes: u64,
    /// Most `cpus`.
    pub cpus: f64,
    /// Most `pids`.
    pub pids: u64,
    /// Longest `timeout_ms`.
    pub timeout_ms: u64,
    /// The wall timeout of a run or exec that gives none.
    pub default_timeout_ms: u64,
    /// Longest `cpu_time_ms`.
    pub cpu_time_ms: u64,
    /// Largest `file_size_bytes`.
    pub file_size_bytes: u64,
    /// Most `open_files`.
    pub open_files: u64,
    /// Largest `output_bytes` (per stream).
    pub output_bytes: u64,
    /// The output cap of a run that gives none.
    pub default_output_bytes: u64,
    /// Most files in a run's `files` or `collect`.
    pub files: usize,
    /// Most bytes a run's `collect` brings back, all paths together.
    pub collect_bytes: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            memory_bytes: 8 << 30,
            cpus: 64.0,
            pids: 4096,
            timeout_ms: 3_600_000,
            default_timeout_ms: 60_000,
            cpu_time_ms: 3_600_000,
            file_size_bytes: 4 << 30,
            open_files: 65_536,
            output_bytes: 64 << 20,
            default_output_bytes: 1 << 20,
            files: 1024,
            collect_bytes: 64 << 20,
        }
    }
}

/// Everything `runbox serve` is started with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (default 127.0.0.1:7878).
    pub listen: SocketAddr,
    /// Bearer tokens; empty: no authentication (loopback only).
    pub tokens: Vec<String>,
    /// The state directory: the SQLite records and the scratch space of
    /// uploads and downloads.
    pub state_dir: PathBuf,
    /// Runs (and sandbox execs) executing at once.
    pub max_concurrency: usize,
    /// Runs waiting for a slot; beyond it `queue_full`.
    pub max_queue: usize,
    /// The backend of requests that name none.
    pub default_backend: String,
    /// A sandbox's TTL when it asks none.
    pub sandbox_ttl: Duration,
    /// The longest TTL a sandbox may ask.
    pub max_sandbox_ttl: Duration,
    /// Live sandboxes per token; beyond it `too_many_sandboxes`.
    pub max_sandboxes_per_token: usize,
    /// On SIGTERM, how long running commands may go on before they are
    /// cancelled.
    pub shutdown_grace: Duration,
    /// Limit caps and defaults.
    pub caps: Caps,
    /// Largest JSON request body.
    pub json_body_limit: usize,
    /// Largest file upload (`PUT .../files/...`) and download.
    pub file_limit: u64,
    /// A client must send its request head within this.
    pub header_timeout: Duration,
    /// A client must send its request body within this.
    pub body_timeout: Duration,
}

impl ServerConfig {
    /// The defaults, with records in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            tokens: Vec::new(),
            state_dir: state_dir.into(),
            max_concurrency: 16,
            max_queue: 64,
            default_backend: execution_service::DEFAULT_BACKEND.to_string(),
            sandbox_ttl: Duration::from_secs(300),
            max_sandbox_ttl: Duration::from_secs(24 * 3600),
            max_sandboxes_per_token: 64,
            shutdown_grace: Duration::from_secs(10),
            caps: Caps::default(),
            json_body_limit: 16 << 20,
            file_limit: 512 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
        }
    }
}

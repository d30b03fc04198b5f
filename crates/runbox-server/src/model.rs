//! The JSON bodies of the API: what clients send (strict: an unknown field
//! is `invalid_input`, so a typo in a limit's name never runs unlimited)
//! and what the service routes answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Bytes given as UTF-8 text or as base64: exactly one of the two.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// The bytes as UTF-8 text.
    pub text: Option<String>,
    /// The bytes in standard base64.
    pub base64: Option<String>,
}

/// A file copied into the sandbox before the command.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileIn {
    /// The sandbox path, relative to the workspace.
    pub path: String,
    /// The content as UTF-8 text.
    pub text: Option<String>,
    /// The content in base64.
    pub base64: Option<String>,
}

/// Resource limits; each is checked against the server's caps.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU bandwidth in cores.
    pub cpus: Option<f64>,
    /// Processes and threads.
    pub pids: Option<u64>,
    /// Wall-clock timeout in milliseconds (default: the server's).
    pub timeout_ms: Option<u64>,
    /// CPU time in milliseconds.
    pub cpu_time_ms: Option<u64>,
    /// Largest file written, in bytes.
    pub file_size_bytes: Option<u64>,
    /// Open files per process.
    pub open_files: Option<u64>,
    /// Output captured per stream, in bytes (default: the server's).
    pub output_bytes: Option<u64>,
}

/// Isolation from the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Full where the host allows it, else none (said in the report).
    #[default]
    Auto,
    /// Full or an error.
    Full,
    /// None.
    None,
}

/// The sandbox's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Its own, loopback only.
    None,
    /// The host's.
    Host,
}

/// How `stdout` and `stderr` are given back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8, invalid sequences replaced.
    #[default]
    Text,
    /// Base64 of the raw bytes.
    Base64,
}

/// `POST /v1/runs`: one command in a fresh sandbox.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Program and arguments (or `shell`).
    pub argv: Option<Vec<String>>,
    /// A script for `sh -c` (or `argv`).
    pub shell: Option<String>,
    /// The backend (default: the server's).
    pub backend: Option<String>,
    /// Image, for container backends.
    pub image: Option<String>,
    /// Environment on top of the backend's clean base.
    pub env: Option<BTreeMap<String, String>>,
    /// Working directory, relative to the workspace.
    pub workdir: Option<String>,
    /// The command's stdin.
    pub stdin: Option<Content>,
    /// Files copied in before the command.
    pub files: Option<Vec<FileIn>>,
    /// Sandbox paths copied out after it (into the result's `files`).
    pub collect: Option<Vec<String>>,
    /// Resource limits.
    pub limits: Option<Limits>,
    /// Fail before running when a limit cannot be enforced.
    pub strict: Option<bool>,
    /// Isolation mode.
    pub isolation: Option<Isolation>,
    /// Network mode.
    pub network: Option<Network>,
    /// How output is given back.
    pub output_encoding: Option<Encoding>,
}

/// `POST /v1/sandboxes`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxRequest {
    /// The backend (default: the server's).
    pub backend: Option<String>,
    /// Image, for container backends.
    pub image: Option<String>,
    /// Limits for every command of the sandbox.
    pub limits: Option<Limits>,
    /// Fail when a limit cannot be enforced.
    pub strict: Option<bool>,
    /// Isolation mode.
    pub isolation: Option<Isolation>,
    /// Network mode.
    pub network: Option<Network>,
    /// Seconds until the reaper removes it (default: the server's).
    pub ttl_s: Option<u64>,
}

/// `POST /v1/sandboxes/{id}/exec`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Program and arguments (or `shell`).
    pub argv: Option<Vec<String>>,
    /// A script for `sh -c` (or `argv`).
    pub shell: Option<String>,
    /// Environment.
    pub env: Option<BTreeMap<String, String>>,
    /// Working directory, relative to the workspace.
    pub workdir: Option<String>,
    /// The command's stdin.
    pub stdin: Option<Content>,
    /// Wall-clock timeout (default and maximum: the server's).
    pub timeout_ms: Option<u64>,
    /// How output is given back.
    pub output_encoding: Option<Encoding>,
}

/// `POST /v1/sandboxes/{id}/processes`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessRequest {
    /// Program and arguments (or `shell`).
    pub argv: Option<Vec<String>>,
    /// A script for `sh -c` (or `argv`).
    pub shell: Option<String>,
    /// Environment.
    pub env: Option<BTreeMap<String, String>>,
    /// Working directory, relative to the workspace.
    pub workdir: Option<String>,
}

/// `POST .../processes/{pid}/wait`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitRequest {
    /// How long to wait (default 0: just look; at most the server's
    /// timeout cap).
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/sandboxes/{id}/ttl`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TtlRequest {
    /// Seconds from now.
    pub ttl_s: u64,
}

/// `{"status": "ok"}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// "ok", or "unavailable" with `reason`.
    pub status: String,
    /// Why the default backend cannot serve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One backend in `GET /v1/info`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackendInfo {
    /// Its name.
    pub name: String,
    /// Whether it can serve now.
    pub available: bool,
    /// Why not, or why degraded.
    pub reason: Option<String>,
    /// What it can do and enforce.
    #[schema(value_type = Object)]
    pub capabilities: serde_json::Value,
    /// How it isolates by default.
    #[schema(value_type = Object)]
    pub isolation: serde_json::Value,
}

/// `GET /v1/info`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Info {
    /// The server's version.
    pub version: String,
    /// The backend of requests that name none.
    pub default_backend: String,
    /// Every registered backend.
    pub backends: Vec<BackendInfo>,
    /// The server's caps and defaults.
    #[schema(value_type = Object)]
    pub caps: serde_json::Value,
}

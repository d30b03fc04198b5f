//! # runbox-server
//!
//! `runbox serve`: the execution service over HTTP, for callers in any
//! language. One-shot runs (`POST /v1/runs`: wait for the result, take a
//! 202 and poll, or follow server-sent events), sandboxes mapped one to one
//! onto the [`orchestrator_core::Orchestrator`] trait (files, exec,
//! background processes), `application/problem+json` errors with stable
//! codes, bearer tokens with each run and sandbox owned by its token,
//! backpressure instead of hangs, a TTL reaper, Prometheus metrics, and an
//! OpenAPI 3.1 document generated from the code. docs/api.md is the guide.
//!
//! ```no_run
//! # async fn f() -> Result<(), runbox_server::ServerError> {
//! let config = runbox_server::ServerConfig::new("/var/lib/runbox");
//! runbox_server::serve(config).await
//! # }
//! ```
#![deny(missing_docs)]

mod admission;
mod auth;
mod backends;
mod collect;
mod config;
mod error;
mod events;
mod extract;
mod files;
mod input;
mod metrics;
mod model;
mod openapi;
mod problem;
mod processes;
mod result;
mod router;
mod runs;
mod sandboxes;
mod server;
mod service;
mod state;

// Every backend the server offers must be referenced, or the linker drops
// its crate and its registration with it.
use orchestrator_docker as _;
use orchestrator_native as _;

pub use auth::Identity;
pub use backends::capabilities_json;
pub use config::{Caps, ServerConfig};
pub use error::ServerError;
pub use model::Encoding;
pub use openapi::ApiDoc;
pub use problem::{ApiError, Problem};
pub use result::{limit_value, IsolationResult, LimitResult, RunResult};
pub use server::{serve, serve_until, DB_FILE};

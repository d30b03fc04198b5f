//! # orchestrator-core
//!
//! The contract of runbox: the [`Orchestrator`] trait every backend
//! implements, its plain-data types, the unified [`Error`], sandbox path rules
//! ([`paths`]), the backend [`registry`], and, behind features, the shared
//! conformance suite (`conformance`) and a recording fake backend
//! (`testing`).
//!
//! ```
//! use orchestrator_core::{ResourceLimits, CommandSpec};
//! use std::time::Duration;
//!
//! let limits = ResourceLimits::builder()
//!     .memory_bytes(64 << 20)
//!     .wall_timeout(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//! assert!(ResourceLimits::builder().memory_bytes(0).build().is_err());
//! let cmd = CommandSpec::shell("echo hello").env("GREETING", "hi").build();
//! assert!(cmd.is_ok());
//! assert!(CommandSpec::new([""]).build().is_err());
//! # let _ = limits;
//! ```
#![deny(missing_docs)]

pub mod error;
pub mod exec;
pub mod limits;
pub mod orchestrator;
pub mod owner;
pub mod paths;
pub mod pool;
pub mod registry;
mod types;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

pub use async_trait::async_trait;
#[doc(hidden)]
pub use inventory;

pub use error::{BoxError, Error, Result};
pub use limits::{
    LimitEntry, LimitKind, LimitReport, LimitValue, Mechanism, ResourceLimits,
    ResourceLimitsBuilder,
};
pub use orchestrator::{Orchestrator, STOP_DEADLINE};
pub use paths::SandboxPath;
pub use pool::PoolStats;
pub use registry::{BackendOptions, BackendRegistration, Progress, ProgressEvent};
pub use types::{
    Availability, Capabilities, CappedBuffer, CommandSpec, CommandSpecBuilder, ExecOutput,
    ExitStatus, IsolationLevel, IsolationMode, IsolationReport, Mount, NetworkMode, OutputSink,
    ProcessId, ProcessSnapshot, SinkFn, StartFailure, Stream, UnknownMode, WorkspaceId,
    WorkspaceSpec,
};

//! Plain data of the contract: identifiers, workspace and command specs,
//! command results, capabilities and availability.

mod backend;
mod command;
mod ids;
mod isolation;
mod output;
mod spec;
#[cfg(test)]
mod tests;

pub use backend::{Availability, Capabilities};
pub use command::{CommandSpec, CommandSpecBuilder, OutputSink, SinkFn, Stream};
pub use ids::{ProcessId, WorkspaceId};
pub use isolation::{IsolationLevel, IsolationMode, IsolationReport, NetworkMode, UnknownMode};
pub use output::{CappedBuffer, ExecOutput, ExitStatus, ProcessSnapshot, StartFailure};
pub use spec::{Mount, WorkspaceSpec};

//! A command to run: its validated [`CommandSpec`], the builder it is made
//! with, and the live output sink.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::limits::ResourceLimits;
use crate::paths::SandboxPath;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives output chunks as the command writes them (live output).
///
/// The callback runs on the backend's reader task: keep it short (write to a
/// terminal, push to a channel). Chunks are delivered up to the output cap.
#[derive(Clone)]
pub struct OutputSink(Arc<SinkFn>);

/// The callback behind an [`OutputSink`].
pub type SinkFn = dyn Fn(Stream, &[u8]) + Send + Sync;

impl OutputSink {
    /// Wraps a callback.
    pub fn new(f: impl Fn(Stream, &[u8]) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Hands one chunk to the callback.
    pub fn emit(&self, stream: Stream, data: &[u8]) {
        if !data.is_empty() {
            (self.0)(stream, data)
        }
    }
}

impl fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OutputSink(..)")
    }
}

/// A command to run inside a workspace. It can only exist valid: it is
/// made by [`CommandSpec::new`] or [`CommandSpec::shell`] and
/// [`CommandSpecBuilder::build`], which checks it once, so no backend
/// re-validates it.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    workdir: Option<SandboxPath>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    output_limit: Option<u64>,
    output: Option<OutputSink>,
}

impl CommandSpec {
    /// Starts a command from its argv.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<I, S>(argv: I) -> CommandSpecBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CommandSpecBuilder {
            argv: argv.into_iter().map(Into::into).collect(),
            ..CommandSpecBuilder::default()
        }
    }

    /// Starts `sh -c SCRIPT`.
    pub fn shell(script: impl Into<String>) -> CommandSpecBuilder {
        Self::new(["sh".to_string(), "-c".to_string(), script.into()])
    }

    /// Program and arguments; `argv[0]` is looked up in the sandbox's PATH.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }
    /// Environment on top of the clean base (PATH, HOME, LANG).
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }
    /// Working directory relative to the workspace root (`None`: the root).
    pub fn workdir(&self) -> Option<&SandboxPath> {
        self.workdir.as_ref()
    }
    /// Bytes written to the command's stdin (then closed); `None`: empty.
    pub fn stdin(&self) -> Option<&[u8]> {
        self.stdin.as_deref()
    }
    /// Wall timeout of this command (the smaller of this and the
    /// workspace's wall limit applies).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// Output cap per stream (the smaller of this and the workspace's
    /// output limit applies).
    pub fn output_limit(&self) -> Option<u64> {
        self.output_limit
    }
    /// The live output sink.
    pub fn output(&self) -> Option<&OutputSink> {
        self.output.as_ref()
    }

    /// A builder that starts from this command (to change a field).
    pub fn to_builder(&self) -> CommandSpecBuilder {
        CommandSpecBuilder {
            argv: self.argv.clone(),
            env: self.env.clone(),
            workdir: self.workdir.as_ref().map(|w| w.as_str().to_string()),
            stdin: self.stdin.clone(),
            timeout: self.timeout,
            output_limit: self.output_limit,
            output: self.output.clone(),
        }
    }
}

/// Builds a [`CommandSpec`]; [`CommandSpecBuilder::build`] validates.
#[derive(Debug, Clone, Default)]
pub struct CommandSpecBuilder {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    workdir: Option<String>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    output_limit: Option<u64>,
    output: Option<OutputSink>,
}

impl CommandSpecBuilder {
    /// Adds an environment variable.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }
    /// Sets the working directory (relative to the workspace root).
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = Some(dir.into());
        self
    }
    /// Sets stdin.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }
    /// Sets the wall timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    /// Sets the output cap per stream.
    pub fn output_limit(mut self, bytes: u64) -> Self {
        self.output_limit = Some(bytes);
        self
    }
    /// Sets the live output sink.
    pub fn output(mut self, sink: OutputSink) -> Self {
        self.output = Some(sink);
        self
    }

    /// Checks what every backend would have to check, once: a non-empty
    /// argv without NUL bytes, environment names that are non-empty and
    /// contain neither `=` nor NUL, a sandbox-relative working directory
    /// ([`SandboxPath`] rules), a sane timeout and output cap.
    pub fn build(self) -> Result<CommandSpec> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(Error::invalid("command argv is empty"));
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid("command argv contains a NUL byte"));
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(Error::invalid(format!(
                    "environment variable name {k:?} is empty or contains '=' or NUL"
                )));
            }
            if v.contains('\0') {
                return Err(Error::invalid(format!(
                    "environment variable {k} contains a NUL byte"
                )));
            }
        }
        let mut probe = ResourceLimits::builder();
        if let Some(t) = self.timeout {
            probe = probe.wall_timeout(t);
        }
        if let Some(b) = self.output_limit {
            probe = probe.output_bytes(b);
        }
        probe.build()?;
        let workdir = self.workdir.as_deref().map(SandboxPath::new).transpose()?;
        Ok(CommandSpec {
            argv: self.argv,
            env: self.env,
            workdir,
            stdin: self.stdin,
            timeout: self.timeout,
            output_limit: self.output_limit,
            output: self.output,
        })
    }
}

impl TryFrom<CommandSpecBuilder> for CommandSpec {
    type Error = Error;
    fn try_from(b: CommandSpecBuilder) -> Result<Self> {
        b.build()
    }
}

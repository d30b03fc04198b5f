//! [`ExecutionRequest`]: what to run, with its files, mounts, limits and
//! backend.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::{limits_serde, mount_serde, path_serde};
use orchestrator_core::{
    CommandSpec, CommandSpecBuilder, Error as CoreError, Mount, OutputSink, ResourceLimits,
    SandboxPath,
};
use serde::{Deserialize, Serialize};

/// A file to copy between the host and the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileTransfer {
    /// The host path.
    pub host: PathBuf,
    /// The sandbox path, relative to the workspace root (stored as its
    /// text).
    #[serde(with = "path_serde")]
    pub sandbox: SandboxPath,
}

/// Which backend should run an execution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendPreference {
    /// The service's default backend (native unless replaced), unless
    /// `StartOptions::use_docker` says otherwise.
    #[default]
    Default,
    /// The service's docker orchestrator, the backend named
    /// [`DOCKER_BACKEND`](crate::DOCKER_BACKEND) (same as `use_docker: true`).
    Docker,
    /// A backend by the name the service has it under.
    Named(String),
}

/// What to run: the command, its files, mounts, limits and backend. Plain
/// data with a builder; everything but the live output sink is persisted.
///
/// Sandbox paths, mounts and limits are typed, so they are valid wherever a
/// request exists. The builder methods that take a sandbox path as text
/// parse it at once; a path (or mount) they cannot parse is held back and
/// reported by [`ExecutionRequest::validate`] (and so by `submit` and
/// `execute`), with the error [`SandboxPath::new`] or [`Mount::new`] gives.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ExecutionRequest {
    /// Program and arguments. Empty: provision the sandbox only (`start`
    /// then starts nothing).
    pub command: Vec<String>,
    /// Environment on top of the backend's clean base.
    pub env: BTreeMap<String, String>,
    /// Files copied into the sandbox before the command runs.
    pub files_in: Vec<FileTransfer>,
    /// Files copied out of the sandbox after the command ran (by `execute`).
    pub files_out: Vec<FileTransfer>,
    /// Host paths mounted into the sandbox (the workspace spec's mounts).
    /// Records written before mounts existed load with none.
    #[serde(default, with = "mount_serde")]
    pub mounts: Vec<Mount>,
    /// Resource limits (applied to the sandbox).
    #[serde(with = "limits_serde")]
    pub limits: ResourceLimits,
    /// Backend preference.
    pub backend: BackendPreference,
    /// Image for container backends.
    pub image: Option<String>,
    /// Working directory relative to the workspace root.
    #[serde(default, with = "path_serde::option")]
    pub workdir: Option<SandboxPath>,
    /// Bytes fed to the command's stdin.
    pub stdin: Option<Vec<u8>>,
    /// Extra labels for the sandbox.
    pub labels: BTreeMap<String, String>,
    /// Live output: chunks are handed to this sink as the command writes
    /// them. Not persisted.
    #[serde(skip)]
    pub output: Option<OutputSink>,
    /// The first sandbox path a builder method could not parse, as given.
    #[serde(skip)]
    rejected_path: Option<String>,
    /// Why the first mount a builder method could not make was refused
    /// (its sandbox path parsed, but [`Mount::new`] said no).
    #[serde(skip)]
    rejected_mount: Option<String>,
}

impl fmt::Debug for ExecutionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutionRequest")
            .field("command", &self.command)
            .field("env", &self.env)
            .field("files_in", &self.files_in)
            .field("files_out", &self.files_out)
            .field("mounts", &self.mounts)
            .field("limits", &self.limits)
            .field("backend", &self.backend)
            .field("image", &self.image)
            .field("workdir", &self.workdir)
            .field("stdin", &self.stdin.as_ref().map(Vec::len))
            .field("labels", &self.labels)
            .field("output", &self.output.is_some())
            .field("rejected_path", &self.rejected_path)
            .field("rejected_mount", &self.rejected_mount)
            .finish()
    }
}

impl PartialEq for ExecutionRequest {
    fn eq(&self, other: &Self) -> bool {
        // The sink is not data; compare everything else.
        self.command == other.command
            && self.env == other.env
            && self.files_in == other.files_in
            && self.files_out == other.files_out
            && self.mounts == other.mounts
            && self.limits == other.limits
            && self.backend == other.backend
            && self.image == other.image
            && self.workdir == other.workdir
            && self.stdin == other.stdin
            && self.labels == other.labels
            && self.rejected_path == other.rejected_path
            && self.rejected_mount == other.rejected_mount
    }
}

impl ExecutionRequest {
    /// A request running `argv`.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            command: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// A request running `sh -c SCRIPT`.
    pub fn shell(script: impl Into<String>) -> Self {
        Self::new(["sh".to_string(), "-c".to_string(), script.into()])
    }

    /// A request that only provisions a sandbox (no command).
    pub fn sandbox_only() -> Self {
        Self::default()
    }

    /// Adds an environment variable.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    /// Parses a sandbox path given to a builder method; an unparsable one
    /// is held back for [`Self::validate`].
    fn sandbox_path(&mut self, raw: &str) -> Option<SandboxPath> {
        match SandboxPath::new(raw) {
            Ok(p) => Some(p),
            Err(_) => {
                self.rejected_path.get_or_insert_with(|| raw.to_string());
                None
            }
        }
    }

    /// Copies `host` into the sandbox at `sandbox` before the command.
    pub fn file_in(mut self, host: impl Into<PathBuf>, sandbox: impl AsRef<str>) -> Self {
        if let Some(sandbox) = self.sandbox_path(sandbox.as_ref()) {
            self.files_in.push(FileTransfer {
                host: host.into(),
                sandbox,
            });
        }
        self
    }

    /// Copies `sandbox` out to `host` after the command.
    pub fn file_out(mut self, sandbox: impl AsRef<str>, host: impl Into<PathBuf>) -> Self {
        if let Some(sandbox) = self.sandbox_path(sandbox.as_ref()) {
            self.files_out.push(FileTransfer {
                host: host.into(),
                sandbox,
            });
        }
        self
    }

    /// Mounts host path `host` (absolute) at `sandbox` (relative to the
    /// workspace, as for copies: `data` is `/workspace/data` in an isolated
    /// sandbox), read-only unless `read_only` is false. A sandbox path or
    /// host path that [`Mount::new`] refuses is held back for
    /// [`Self::validate`]. Whether the host path exists is the backend's
    /// check when it creates the sandbox.
    pub fn mount(
        mut self,
        host: impl Into<PathBuf>,
        sandbox: impl AsRef<str>,
        read_only: bool,
    ) -> Self {
        if let Some(sandbox) = self.sandbox_path(sandbox.as_ref()) {
            match Mount::new(host, sandbox, read_only) {
                Ok(m) => self.mounts.push(m),
                Err(e) => {
                    self.rejected_mount.get_or_insert_with(|| match e {
                        CoreError::InvalidInput(m) => m,
                        other => other.to_string(),
                    });
                }
            }
        }
        self
    }

    /// Adds a mount made with [`Mount::new`] (valid by construction).
    pub fn add_mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: ResourceLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the backend preference.
    pub fn backend(mut self, backend: BackendPreference) -> Self {
        self.backend = backend;
        self
    }

    /// Asks for the docker orchestrator (`true`) or the default (`false`).
    pub fn use_docker(mut self, yes: bool) -> Self {
        self.backend = if yes {
            BackendPreference::Docker
        } else {
            BackendPreference::Default
        };
        self
    }

    /// Sets the image (container backends).
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Sets the working directory.
    pub fn workdir(mut self, dir: impl AsRef<str>) -> Self {
        if let Some(dir) = self.sandbox_path(dir.as_ref()) {
            self.workdir = Some(dir);
        }
        self
    }

    /// Sets stdin.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Adds a sandbox label.
    pub fn label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }

    /// Sets the live output sink.
    pub fn output(mut self, sink: OutputSink) -> Self {
        self.output = Some(sink);
        self
    }

    /// The command to run, not yet built: `None` for a request without one.
    pub(crate) fn command_builder(&self) -> Option<CommandSpecBuilder> {
        if self.command.is_empty() {
            return None;
        }
        let mut cmd = CommandSpec::new(self.command.clone());
        for (k, v) in &self.env {
            cmd = cmd.env(k.clone(), v.clone());
        }
        if let Some(w) = &self.workdir {
            cmd = cmd.workdir(w.as_str());
        }
        if let Some(stdin) = &self.stdin {
            cmd = cmd.stdin(stdin.clone());
        }
        if let Some(sink) = &self.output {
            cmd = cmd.output(sink.clone());
        }
        Some(cmd)
    }

    /// The command to run, if the request has one. This is where the
    /// request's argv, environment and stdin become a [`CommandSpec`], and
    /// so where they are checked.
    pub fn command_spec(&self) -> Result<Option<CommandSpec>, CoreError> {
        self.command_builder()
            .map(CommandSpecBuilder::build)
            .transpose()
    }

    /// Checks what the types do not: a sandbox path or mount a builder
    /// method could not make, the command (see [`Self::command_spec`]),
    /// host paths and the backend name. `submit` and `execute` call it
    /// before anything is recorded.
    pub fn validate(&self) -> Result<(), CoreError> {
        if let Some(raw) = &self.rejected_path {
            // Parsed again for its error: core errors are not `Clone`, so
            // the builder keeps the text, not the error.
            SandboxPath::new(raw)?;
        }
        if let Some(reason) = &self.rejected_mount {
            return Err(CoreError::invalid(reason.clone()));
        }
        self.command_spec()?;
        for f in self.files_in.iter().chain(&self.files_out) {
            if f.host.as_os_str().is_empty() {
                return Err(CoreError::invalid("empty host path in a file transfer"));
            }
        }
        if let BackendPreference::Named(n) = &self.backend {
            if n.is_empty() {
                return Err(CoreError::invalid("empty backend name"));
            }
        }
        Ok(())
    }
}

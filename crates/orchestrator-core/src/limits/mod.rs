//! Resource limits, their validation, and the report of how each is enforced.
//!
//! A [`ResourceLimits`] can only exist valid: its fields are private and
//! [`ResourceLimitsBuilder::build`], the one way to make limits, rejects
//! zero, negative, non-finite, overflowing and absurd values with
//! [`Error::InvalidInput`] instead of clamping them. Backends therefore never
//! re-validate, and the same bad value is the same error everywhere.
//!
//! A [`Mechanism`] is an open name: each backend defines the mechanisms it
//! enforces limits with (`cgroup-v2`, `docker`, ...) without editing core.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// The most memory a limit may name: 1 PiB.
pub const MAX_MEMORY_BYTES: u64 = 1 << 50;
/// The least memory a limit may name: 1 MiB (less cannot even exec a shell).
pub const MIN_MEMORY_BYTES: u64 = 1 << 20;
/// The most CPUs a limit may name.
pub const MAX_CPUS: f64 = 1024.0;
/// The least CPUs a limit may name (1% of one core).
pub const MIN_CPUS: f64 = 0.01;
/// The most processes a pids limit may name (Linux's `pid_max` ceiling).
pub const MAX_PIDS: u64 = 4_194_304;
/// The longest wall or CPU time a limit may name: 30 days.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// The largest file size limit: 2^62 bytes.
pub const MAX_FILE_SIZE: u64 = 1 << 62;
/// The most open files a limit may name (Linux's default `nr_open`).
pub const MAX_OPEN_FILES: u64 = 1 << 20;
/// The largest output cap: 1 TiB per stream.
pub const MAX_OUTPUT_BYTES: u64 = 1 << 40;

/// The kinds of limit runbox knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LimitKind {
    /// Memory (RSS + page cache charged to the sandbox), bytes.
    Memory,
    /// CPU bandwidth, in cores (1.5 = one and a half cores).
    Cpus,
    /// Number of processes/threads.
    Pids,
    /// Wall-clock timeout of a command.
    WallTimeout,
    /// CPU time of a command.
    CpuTime,
    /// Largest file a command may write, bytes.
    FileSize,
    /// Open file descriptors per process.
    OpenFiles,
    /// Output captured per stream, bytes.
    OutputBytes,
}

impl LimitKind {
    /// Every kind, in a stable order.
    pub const ALL: [LimitKind; 8] = [
        LimitKind::Memory,
        LimitKind::Cpus,
        LimitKind::Pids,
        LimitKind::WallTimeout,
        LimitKind::CpuTime,
        LimitKind::FileSize,
        LimitKind::OpenFiles,
        LimitKind::OutputBytes,
    ];

    /// Stable name, as used in limit reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Memory => "memory",
            LimitKind::Cpus => "cpus",
            LimitKind::Pids => "pids",
            LimitKind::WallTimeout => "timeout",
            LimitKind::CpuTime => "cpu_time",
            LimitKind::FileSize => "file_size",
            LimitKind::OpenFiles => "open_files",
            LimitKind::OutputBytes => "output_limit",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A requested limit value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitValue {
    /// A size in bytes.
    Bytes(u64),
    /// A number of cores.
    Cpus(f64),
    /// A count (processes, files).
    Count(u64),
    /// A duration.
    Duration(Duration),
}

impl fmt::Display for LimitValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitValue::Bytes(b) => write!(f, "{b} bytes"),
            LimitValue::Cpus(c) => write!(f, "{c} cpus"),
            LimitValue::Count(n) => write!(f, "{n}"),
            LimitValue::Duration(d) => write!(f, "{}ms", d.as_millis()),
        }
    }
}

/// Resource limits for a workspace. `None` means "not limited".
///
/// Made by [`ResourceLimits::builder`], which validates, so a value of this
/// type is always valid. `Default` is "no limits".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceLimits {
    memory_bytes: Option<u64>,
    cpus: Option<f64>,
    pids: Option<u64>,
    wall_timeout: Option<Duration>,
    cpu_time: Option<Duration>,
    file_size_bytes: Option<u64>,
    open_files: Option<u64>,
    output_bytes: Option<u64>,
    strict: bool,
}

impl ResourceLimits {
    /// Starts a validating builder.
    pub fn builder() -> ResourceLimitsBuilder {
        ResourceLimitsBuilder::default()
    }

    /// A builder that starts from these limits (to change some of them).
    pub fn to_builder(&self) -> ResourceLimitsBuilder {
        ResourceLimitsBuilder {
            inner: self.clone(),
        }
    }

    /// Memory limit in bytes (swap is not allowed on top of it).
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory_bytes
    }
    /// CPU bandwidth in cores.
    pub fn cpus(&self) -> Option<f64> {
        self.cpus
    }
    /// Maximum number of processes and threads.
    pub fn pids(&self) -> Option<u64> {
        self.pids
    }
    /// Wall-clock timeout for each command.
    pub fn wall_timeout(&self) -> Option<Duration> {
        self.wall_timeout
    }
    /// CPU time limit for each command.
    pub fn cpu_time(&self) -> Option<Duration> {
        self.cpu_time
    }
    /// Largest file a command may create, bytes.
    pub fn file_size_bytes(&self) -> Option<u64> {
        self.file_size_bytes
    }
    /// Open files per process.
    pub fn open_files(&self) -> Option<u64> {
        self.open_files
    }
    /// Output captured per stream, bytes; the command is stopped beyond it.
    pub fn output_bytes(&self) -> Option<u64> {
        self.output_bytes
    }
    /// Strict mode: a limit the backend cannot enforce is an error
    /// ([`Error::LimitNotEnforceable`]) instead of a note in the report.
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// These limits with strict mode set or cleared.
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Newly applied limits on top of those in force: what `new` sets wins,
    /// what it leaves unset stays, and `new`'s strict mode is kept (it
    /// governs this application). The result is valid since both are.
    pub fn overlay(&self, new: &ResourceLimits) -> ResourceLimits {
        ResourceLimits {
            memory_bytes: new.memory_bytes.or(self.memory_bytes),
            cpus: new.cpus.or(self.cpus),
            pids: new.pids.or(self.pids),
            wall_timeout: new.wall_timeout.or(self.wall_timeout),
            cpu_time: new.cpu_time.or(self.cpu_time),
            file_size_bytes: new.file_size_bytes.or(self.file_size_bytes),
            open_files: new.open_files.or(self.open_files),
            output_bytes: new.output_bytes.or(self.output_bytes),
            strict: new.strict,
        }
    }

    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        self.requested().is_empty()
    }

    /// Every limit that is set, with its value, in [`LimitKind::ALL`] order.
    pub fn requested(&self) -> Vec<(LimitKind, LimitValue)> {
        let mut v = Vec::new();
        if let Some(b) = self.memory_bytes {
            v.push((LimitKind::Memory, LimitValue::Bytes(b)));
        }
        if let Some(c) = self.cpus {
            v.push((LimitKind::Cpus, LimitValue::Cpus(c)));
        }
        if let Some(n) = self.pids {
            v.push((LimitKind::Pids, LimitValue::Count(n)));
        }
        if let Some(d) = self.wall_timeout {
            v.push((LimitKind::WallTimeout, LimitValue::Duration(d)));
        }
        if let Some(d) = self.cpu_time {
            v.push((LimitKind::CpuTime, LimitValue::Duration(d)));
        }
        if let Some(b) = self.file_size_bytes {
            v.push((LimitKind::FileSize, LimitValue::Bytes(b)));
        }
        if let Some(n) = self.open_files {
            v.push((LimitKind::OpenFiles, LimitValue::Count(n)));
        }
        if let Some(b) = self.output_bytes {
            v.push((LimitKind::OutputBytes, LimitValue::Bytes(b)));
        }
        v
    }

    /// Checks every value; the first bad one is an [`Error::InvalidInput`]
    /// naming the limit and the accepted range.
    fn validate(&self) -> Result<()> {
        fn range(kind: LimitKind, v: u64, min: u64, max: u64, unit: &str) -> Result<()> {
            if v < min || v > max {
                return Err(Error::invalid(format!(
                    "{kind} limit {v}{unit} is out of range ({min}{unit} to {max}{unit})"
                )));
            }
            Ok(())
        }
        fn dur(kind: LimitKind, d: Duration) -> Result<()> {
            if d.is_zero() {
                return Err(Error::invalid(format!(
                    "{kind} limit must be greater than zero"
                )));
            }
            if d > MAX_DURATION {
                return Err(Error::invalid(format!(
                    "{kind} limit {}s is longer than the maximum of {}s",
                    d.as_secs(),
                    MAX_DURATION.as_secs()
                )));
            }
            Ok(())
        }
        if let Some(b) = self.memory_bytes {
            range(
                LimitKind::Memory,
                b,
                MIN_MEMORY_BYTES,
                MAX_MEMORY_BYTES,
                " bytes",
            )?;
        }
        if let Some(c) = self.cpus {
            if !c.is_finite() || !(MIN_CPUS..=MAX_CPUS).contains(&c) {
                return Err(Error::invalid(format!(
                    "cpus limit {c} is out of range ({MIN_CPUS} to {MAX_CPUS})"
                )));
            }
        }
        if let Some(n) = self.pids {
            range(LimitKind::Pids, n, 1, MAX_PIDS, "")?;
        }
        if let Some(d) = self.wall_timeout {
            dur(LimitKind::WallTimeout, d)?;
        }
        if let Some(d) = self.cpu_time {
            dur(LimitKind::CpuTime, d)?;
        }
        if let Some(b) = self.file_size_bytes {
            range(LimitKind::FileSize, b, 1, MAX_FILE_SIZE, " bytes")?;
        }
        if let Some(n) = self.open_files {
            range(LimitKind::OpenFiles, n, 1, MAX_OPEN_FILES, "")?;
        }
        if let Some(b) = self.output_bytes {
            range(LimitKind::OutputBytes, b, 1, MAX_OUTPUT_BYTES, " bytes")?;
        }
        Ok(())
    }
}

/// Validating builder for [`ResourceLimits`].
#[derive(Debug, Clone, Default)]
pub struct ResourceLimitsBuilder {
    inner: ResourceLimits,
}

impl ResourceLimitsBuilder {
    /// Memory limit in bytes.
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.inner.memory_bytes = Some(bytes);
        self
    }
    /// CPU bandwidth in cores.
    pub fn cpus(mut self, cores: f64) -> Self {
        self.inner.cpus = Some(cores);
        self
    }
    /// Maximum processes/threads.
    pub fn pids(mut self, n: u64) -> Self {
        self.inner.pids = Some(n);
        self
    }
    /// Wall-clock timeout per command.
    pub fn wall_timeout(mut self, d: Duration) -> Self {
        self.inner.wall_timeout = Some(d);
        self
    }
    /// CPU time per command.
    pub fn cpu_time(mut self, d: Duration) -> Self {
        self.inner.cpu_time = Some(d);
        self
    }
    /// Largest file a command may write.
    pub fn file_size_bytes(mut self, bytes: u64) -> Self {
        self.inner.file_size_bytes = Some(bytes);
        self
    }
    /// Open files per process.
    pub fn open_files(mut self, n: u64) -> Self {
        self.inner.open_files = Some(n);
        self
    }
    /// Output cap per stream.
    pub fn output_bytes(mut self, bytes: u64) -> Self {
        self.inner.output_bytes = Some(bytes);
        self
    }
    /// Strict mode (see [`ResourceLimits::strict`]).
    pub fn strict(mut self, strict: bool) -> Self {
        self.inner.strict = strict;
        self
    }
    /// Sets one limit from its kind and value (the inverse of
    /// [`ResourceLimits::requested`]); a value of the wrong unit for the
    /// kind is [`Error::InvalidInput`].
    pub fn limit(mut self, kind: LimitKind, value: LimitValue) -> Result<Self> {
        let l = &mut self.inner;
        match (kind, value) {
            (LimitKind::Memory, LimitValue::Bytes(b)) => l.memory_bytes = Some(b),
            (LimitKind::Cpus, LimitValue::Cpus(c)) => l.cpus = Some(c),
            (LimitKind::Pids, LimitValue::Count(n)) => l.pids = Some(n),
            (LimitKind::WallTimeout, LimitValue::Duration(d)) => l.wall_timeout = Some(d),
            (LimitKind::CpuTime, LimitValue::Duration(d)) => l.cpu_time = Some(d),
            (LimitKind::FileSize, LimitValue::Bytes(b)) => l.file_size_bytes = Some(b),
            (LimitKind::OpenFiles, LimitValue::Count(n)) => l.open_files = Some(n),
            (LimitKind::OutputBytes, LimitValue::Bytes(b)) => l.output_bytes = Some(b),
            (kind, value) => {
                return Err(Error::invalid(format!(
                    "{kind} limit cannot take the value {value}"
                )))
            }
        }
        Ok(self)
    }

    /// Validates and returns the limits.
    pub fn build(self) -> Result<ResourceLimits> {
        self.inner.validate()?;
        Ok(self.inner)
    }
}

mod report;
#[cfg(test)]
mod tests;

pub use report::{LimitEntry, LimitReport, Mechanism};

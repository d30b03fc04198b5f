//! Resource limits, their validation, and the report of how each is enforced.
//!
//! [`ResourceLimits`] is plain data; [`ResourceLimits::validate`] (called by
//! every backend and by [`ResourceLimitsBuilder::build`]) rejects zero,
//! negative, non-finite, overflowing and absurd values with
//! [`Error::InvalidInput`] instead of clamping them.

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

    /// Stable name, as used in JSON and in the CLI's flags.
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
/// Build with [`ResourceLimits::builder`], which validates; or fill the fields
/// and call [`ResourceLimits::validate`] (backends call it again anyway).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceLimits {
    /// Memory limit in bytes (swap is not allowed on top of it).
    pub memory_bytes: Option<u64>,
    /// CPU bandwidth in cores.
    pub cpus: Option<f64>,
    /// Maximum number of processes and threads.
    pub pids: Option<u64>,
    /// Wall-clock timeout for each command.
    pub wall_timeout: Option<Duration>,
    /// CPU time limit for each command.
    pub cpu_time: Option<Duration>,
    /// Largest file a command may create, bytes.
    pub file_size_bytes: Option<u64>,
    /// Open files per process.
    pub open_files: Option<u64>,
    /// Output captured per stream, bytes; the command is stopped beyond it.
    pub output_bytes: Option<u64>,
    /// Strict mode: a limit the backend cannot enforce is an error
    /// ([`Error::LimitNotEnforceable`]) instead of a note in the report.
    pub strict: bool,
}

impl ResourceLimits {
    /// Starts a validating builder.
    pub fn builder() -> ResourceLimitsBuilder {
        ResourceLimitsBuilder::default()
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
    pub fn validate(&self) -> Result<()> {
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
    /// Validates and returns the limits.
    pub fn build(self) -> Result<ResourceLimits> {
        self.inner.validate()?;
        Ok(self.inner)
    }
}

/// The mechanism that enforces a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// A cgroup v2 controller file (memory.max, pids.max, cpu.max).
    CgroupV2,
    /// A cgroup v1 controller.
    CgroupV1,
    /// A setrlimit(2) limit on each process.
    Rlimit,
    /// The Docker daemon (HostConfig / ulimits).
    Docker,
    /// runbox itself (timers, output caps).
    Runbox,
}

impl Mechanism {
    /// Stable name: "cgroup-v2", "cgroup-v1", "rlimit", "docker", "runbox".
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::CgroupV2 => "cgroup-v2",
            Mechanism::CgroupV1 => "cgroup-v1",
            Mechanism::Rlimit => "rlimit",
            Mechanism::Docker => "docker",
            Mechanism::Runbox => "runbox",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How one requested limit is (or is not) enforced.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitEntry {
    /// The limit.
    pub kind: LimitKind,
    /// The value asked for.
    pub requested: LimitValue,
    /// The enforcing mechanism, or `None` when nothing enforces it.
    pub enforced_by: Option<Mechanism>,
    /// Detail: how it is enforced (e.g. "memory.max + memory.swap.max=0"),
    /// or why it is not.
    pub note: Option<String>,
}

/// For each requested limit, how it is enforced or why it is not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitReport {
    /// One entry per requested limit, in [`LimitKind::ALL`] order.
    pub entries: Vec<LimitEntry>,
}

impl LimitReport {
    /// The entry of one limit kind.
    pub fn get(&self, kind: LimitKind) -> Option<&LimitEntry> {
        self.entries.iter().find(|e| e.kind == kind)
    }

    /// Entries that nothing enforces.
    pub fn unenforced(&self) -> impl Iterator<Item = &LimitEntry> {
        self.entries.iter().filter(|e| e.enforced_by.is_none())
    }

    /// True when every requested limit is enforced.
    pub fn all_enforced(&self) -> bool {
        self.unenforced().next().is_none()
    }

    /// In strict mode: the first unenforced limit as
    /// [`Error::LimitNotEnforceable`].
    pub fn check_strict(&self) -> Result<()> {
        match self.unenforced().next() {
            None => Ok(()),
            Some(e) => Err(Error::LimitNotEnforceable {
                limit: e.kind.name().to_string(),
                reason: e
                    .note
                    .clone()
                    .unwrap_or_else(|| "no mechanism available".into()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builder_accepts_sane_values() {
        let l = ResourceLimits::builder()
            .memory_bytes(64 << 20)
            .cpus(1.5)
            .pids(64)
            .wall_timeout(Duration::from_secs(10))
            .cpu_time(Duration::from_secs(5))
            .file_size_bytes(1 << 20)
            .open_files(64)
            .output_bytes(1 << 16)
            .build()
            .unwrap();
        assert_eq!(l.requested().len(), 8);
        assert!(!l.is_empty());
        assert!(ResourceLimits::default().is_empty());
    }

    #[test]
    fn rejects_bad_values() {
        let bad = [
            ResourceLimits::builder().memory_bytes(0),
            ResourceLimits::builder().memory_bytes(1),
            ResourceLimits::builder().memory_bytes(u64::MAX),
            ResourceLimits::builder().cpus(0.0),
            ResourceLimits::builder().cpus(-1.0),
            ResourceLimits::builder().cpus(f64::NAN),
            ResourceLimits::builder().cpus(f64::INFINITY),
            ResourceLimits::builder().pids(0),
            ResourceLimits::builder().pids(u64::MAX),
            ResourceLimits::builder().wall_timeout(Duration::ZERO),
            ResourceLimits::builder().wall_timeout(Duration::MAX),
            ResourceLimits::builder().cpu_time(Duration::ZERO),
            ResourceLimits::builder().file_size_bytes(0),
            ResourceLimits::builder().open_files(0),
            ResourceLimits::builder().open_files(u64::MAX),
            ResourceLimits::builder().output_bytes(0),
        ];
        for b in bad {
            let e = b.clone().build().unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{b:?} gave {e:?}");
        }
    }

    #[test]
    fn strict_report() {
        let mut r = LimitReport::default();
        assert!(r.check_strict().is_ok());
        r.entries.push(LimitEntry {
            kind: LimitKind::Memory,
            requested: LimitValue::Bytes(1 << 20),
            enforced_by: None,
            note: Some("no cgroup".into()),
        });
        match r.check_strict() {
            Err(Error::LimitNotEnforceable { limit, reason }) => {
                assert_eq!(limit, "memory");
                assert_eq!(reason, "no cgroup");
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn memory_validation_matches_range(b in any::<u64>()) {
            let ok = ResourceLimits::builder().memory_bytes(b).build().is_ok();
            prop_assert_eq!(ok, (MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&b));
        }

        #[test]
        fn cpus_validation_matches_range(c in any::<f64>()) {
            let ok = ResourceLimits::builder().cpus(c).build().is_ok();
            prop_assert_eq!(ok, c.is_finite() && (MIN_CPUS..=MAX_CPUS).contains(&c));
        }

        #[test]
        fn durations_validated(ms in any::<u64>()) {
            let d = Duration::from_millis(ms);
            let ok = ResourceLimits::builder().wall_timeout(d).cpu_time(d).build().is_ok();
            prop_assert_eq!(ok, ms > 0 && d <= MAX_DURATION);
        }

        #[test]
        fn counts_validated(n in any::<u64>()) {
            prop_assert_eq!(ResourceLimits::builder().pids(n).build().is_ok(), (1..=MAX_PIDS).contains(&n));
            prop_assert_eq!(ResourceLimits::builder().open_files(n).build().is_ok(), (1..=MAX_OPEN_FILES).contains(&n));
            prop_assert_eq!(ResourceLimits::builder().file_size_bytes(n).build().is_ok(), (1..=MAX_FILE_SIZE).contains(&n));
            prop_assert_eq!(ResourceLimits::builder().output_bytes(n).build().is_ok(), (1..=MAX_OUTPUT_BYTES).contains(&n));
        }
    }
}

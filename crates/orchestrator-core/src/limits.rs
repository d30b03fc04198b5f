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

/// The mechanism that enforces a limit: an open, stable name such as
/// `cgroup-v2` or `docker`. Each backend defines constants for its own
/// mechanisms (`Mechanism::named("cgroup-v2")`); core defines only
/// [`Mechanism::RUNBOX`], the enforcement every backend shares through
/// [`crate::exec`] (timers, output caps).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mechanism(std::borrow::Cow<'static, str>);

impl Mechanism {
    /// runbox itself: wall timeouts and output caps.
    pub const RUNBOX: Mechanism = Mechanism::named("runbox");

    /// A mechanism with a static name, usable in `const` items. By
    /// convention lowercase ASCII with `-`.
    pub const fn named(name: &'static str) -> Self {
        Mechanism(std::borrow::Cow::Borrowed(name))
    }

    /// A mechanism from a name read at run time (a stored record).
    pub fn from_name(name: impl Into<String>) -> Self {
        Mechanism(std::borrow::Cow::Owned(name.into()))
    }

    /// The stable name.
    pub fn name(&self) -> &str {
        &self.0
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
                limit: e.kind,
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
    fn requested_roundtrips_through_the_builder() {
        let l = ResourceLimits::builder()
            .memory_bytes(64 << 20)
            .cpus(0.5)
            .wall_timeout(Duration::from_secs(3))
            .strict(true)
            .build()
            .unwrap();
        let mut b = ResourceLimits::builder().strict(l.strict());
        for (k, v) in l.requested() {
            b = b.limit(k, v).unwrap();
        }
        assert_eq!(b.build().unwrap(), l);
        assert!(ResourceLimits::builder()
            .limit(LimitKind::Memory, LimitValue::Cpus(1.0))
            .is_err());
    }

    #[test]
    fn overlay_keeps_unset_and_takes_new_strict() {
        let cur = ResourceLimits::builder()
            .memory_bytes(64 << 20)
            .pids(10)
            .strict(true)
            .build()
            .unwrap();
        let new = ResourceLimits::builder().pids(20).build().unwrap();
        let m = cur.overlay(&new);
        assert_eq!(m.memory_bytes(), Some(64 << 20));
        assert_eq!(m.pids(), Some(20));
        assert!(!m.strict());
        assert!(cur.overlay(&new.clone().with_strict(true)).strict());
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
                assert_eq!(limit, LimitKind::Memory);
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

//! How each requested limit is enforced: the open [`Mechanism`] names and
//! the [`LimitReport`] a backend answers with.

use std::fmt;

use super::{LimitKind, LimitValue};
use crate::error::{Error, Result};

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

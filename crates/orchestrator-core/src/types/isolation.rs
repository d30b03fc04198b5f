//! How a workspace is isolated from its host: the mode asked for, the level
//! in force, the network it sees, and the [`IsolationReport`] that says
//! which mechanisms enforce it (or why none do), as the
//! [`LimitReport`](crate::LimitReport) does for limits.

use std::fmt;
use std::str::FromStr;

use crate::limits::Mechanism;

/// The isolation a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IsolationMode {
    /// Full isolation where the host allows it, else none, said so in the
    /// report's note.
    #[default]
    Auto,
    /// Full isolation, or an error before anything runs.
    Full,
    /// Commands run as host processes with the host's view.
    None,
}

/// The isolation in force for a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsolationLevel {
    /// The command sees its own root, processes, users and network (a
    /// sandbox init in namespaces, or a container).
    Full,
    /// The command is a host process with the host's view.
    None,
}

/// The network a workspace's commands see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NetworkMode {
    /// A network of its own with only loopback (client and server programs
    /// inside still talk to each other); nothing of the host is reachable.
    #[default]
    None,
    /// The host's network.
    Host,
}

/// A mode name that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?} (expected one of: {expected})")]
pub struct UnknownMode {
    /// What was parsed ("isolation mode", "network mode").
    pub what: &'static str,
    /// The text given.
    pub given: String,
    /// The accepted names, comma-separated.
    pub expected: &'static str,
}

macro_rules! named_enum {
    ($ty:ident, $what:literal, $($variant:ident => $name:literal),+) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stable lowercase name (CLI flags, JSON, settings).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownMode;
            fn from_str(s: &str) -> Result<Self, UnknownMode> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownMode {
                        what: $what,
                        given: s.to_string(),
                        expected: concat!($($name, " "),+).trim_ascii_end(),
                    }),
                }
            }
        }
    };
}

named_enum!(IsolationMode, "isolation mode", Auto => "auto", Full => "full", None => "none");
named_enum!(IsolationLevel, "isolation level", Full => "full", None => "none");
named_enum!(NetworkMode, "network mode", None => "none", Host => "host");

/// How a workspace is isolated: what was asked, what is in force and by
/// which mechanisms, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationReport {
    /// The mode asked for.
    pub requested: IsolationMode,
    /// The level in force.
    pub level: IsolationLevel,
    /// The network the commands see. With level `None` this is always
    /// `Host`.
    pub network: NetworkMode,
    /// Each mechanism in force (e.g. `user-namespace`, `seccomp`), in a
    /// stable order; empty at level `None`.
    pub enforced_by: Vec<Mechanism>,
    /// Detail: why the level is `None` (a fallback of `auto`, or asked),
    /// or a remark about how isolation is enforced.
    pub note: Option<String>,
}

impl IsolationReport {
    /// No isolation, because `note`.
    pub fn none(requested: IsolationMode, note: impl Into<String>) -> Self {
        Self {
            requested,
            level: IsolationLevel::None,
            network: NetworkMode::Host,
            enforced_by: Vec::new(),
            note: Some(note.into()),
        }
    }

    /// Full isolation with `network`, enforced by `enforced_by`.
    pub fn full(
        requested: IsolationMode,
        network: NetworkMode,
        enforced_by: Vec<Mechanism>,
    ) -> Self {
        Self {
            requested,
            level: IsolationLevel::Full,
            network,
            enforced_by,
            note: None,
        }
    }

    /// Whether `auto` was asked and the level fell to `None`.
    pub fn fell_back(&self) -> bool {
        self.requested == IsolationMode::Auto && self.level == IsolationLevel::None
    }

    /// The report of a backend that says nothing about isolation: level
    /// `None`, requested `None`.
    pub fn unreported(backend: &str) -> Self {
        Self::none(
            IsolationMode::None,
            format!("backend {backend} does not report isolation"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for m in IsolationMode::ALL {
            assert_eq!(m.as_str().parse::<IsolationMode>(), Ok(*m));
        }
        for n in NetworkMode::ALL {
            assert_eq!(n.as_str().parse::<NetworkMode>(), Ok(*n));
        }
        let e = "bridge".parse::<NetworkMode>().unwrap_err();
        assert_eq!(e.expected, "none host");
        assert!(e.to_string().contains("\"bridge\""), "{e}");
        assert!("Full".parse::<IsolationMode>().is_err());
        assert_eq!(IsolationMode::default(), IsolationMode::Auto);
    }

    #[test]
    fn a_fallback_is_auto_without_isolation() {
        assert!(IsolationReport::none(IsolationMode::Auto, "no userns").fell_back());
        assert!(!IsolationReport::none(IsolationMode::None, "asked").fell_back());
        let full = IsolationReport::full(IsolationMode::Auto, NetworkMode::None, vec![]);
        assert!(!full.fell_back());
        assert_eq!(full.level, IsolationLevel::Full);
    }
}

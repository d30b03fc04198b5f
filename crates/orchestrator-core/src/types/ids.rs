//! Validated identifiers of workspaces and background processes.

use std::fmt;

use crate::error::{Error, Result};

fn check_id(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} id {s:?} is not 1-128 characters of [A-Za-z0-9._-] not starting with '.'"
        )))
    }
}

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier: 1–128 characters of
            /// `[A-Za-z0-9._-]`, not starting with `.`, so it is always safe
            /// as a file name, a label value and a cgroup name.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                check_id($what, &s)?;
                Ok(Self(s))
            }

            /// The identifier as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// Identifies a workspace (a native directory, a docker container).
    WorkspaceId,
    "workspace"
);
id_type!(
    /// Identifies a background process inside a workspace.
    ProcessId,
    "process"
);

//! Serde for [`SandboxPath`] (a core type without serde): the path's text,
//! parsed again on load, so a stored path that escapes the sandbox is a
//! deserialization error rather than a path in memory.

use orchestrator_core::SandboxPath;
use serde::{Deserialize, Deserializer, Serializer};

fn parse<E: serde::de::Error>(raw: &str) -> Result<SandboxPath, E> {
    SandboxPath::new(raw).map_err(|e| E::custom(format!("stored sandbox path: {e}")))
}

pub fn serialize<S: Serializer>(p: &SandboxPath, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SandboxPath, D::Error> {
    parse(&String::deserialize(d)?)
}

/// The same for an optional path.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(p: &Option<SandboxPath>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_some(p.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SandboxPath>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|raw| parse(&raw))
            .transpose()
    }
}

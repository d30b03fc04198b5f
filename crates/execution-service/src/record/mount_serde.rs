//! Serde for a request's [`Mount`]s (a core type without serde): host path,
//! sandbox path text and read-only flag. Loading goes through
//! [`Mount::new`], so a stored mount with a relative host path, an escaping
//! sandbox path or the workspace root as its target is a deserialization
//! error, never a mount in memory.

use std::path::PathBuf;

use orchestrator_core::{Mount, SandboxPath};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
struct Repr {
    host: PathBuf,
    sandbox: String,
    read_only: bool,
}

pub fn serialize<S: Serializer>(mounts: &[Mount], s: S) -> Result<S::Ok, S::Error> {
    let reprs: Vec<Repr> = mounts
        .iter()
        .map(|m| Repr {
            host: m.host().to_path_buf(),
            sandbox: m.sandbox().as_str().to_string(),
            read_only: m.is_read_only(),
        })
        .collect();
    reprs.serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Mount>, D::Error> {
    Vec::<Repr>::deserialize(d)?
        .into_iter()
        .map(|r| {
            let sandbox = SandboxPath::new(&r.sandbox)
                .map_err(|e| D::Error::custom(format!("stored mount sandbox path: {e}")))?;
            Mount::new(r.host, sandbox, r.read_only)
                .map_err(|e| D::Error::custom(format!("stored mount: {e}")))
        })
        .collect()
}

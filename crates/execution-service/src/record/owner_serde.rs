//! Serde for a record's [`Owner`] (a core type without serde), under the
//! field names records have always stored: `pid`, `start_time`, `host`,
//! and `boot_id` (absent from records written before it was kept).

use orchestrator_core::owner::Owner;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
struct Repr {
    pid: u32,
    start_time: Option<u64>,
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
}

pub fn serialize<S: Serializer>(owner: &Option<Owner>, s: S) -> Result<S::Ok, S::Error> {
    owner
        .as_ref()
        .map(|o| Repr {
            pid: o.pid,
            start_time: o.start_time,
            host: o.host.clone(),
            boot_id: o.boot_id.clone(),
        })
        .serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Owner>, D::Error> {
    Ok(Option::<Repr>::deserialize(d)?.map(|r| Owner {
        pid: r.pid,
        start_time: r.start_time,
        boot_id: r.boot_id,
        host: r.host,
    }))
}

//! Serde for [`ResourceLimits`] (a core type without serde): durations as
//! milliseconds.

use std::time::Duration;

use orchestrator_core::ResourceLimits;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct Repr {
    memory_bytes: Option<u64>,
    cpus: Option<f64>,
    pids: Option<u64>,
    wall_timeout_ms: Option<u64>,
    cpu_time_ms: Option<u64>,
    file_size_bytes: Option<u64>,
    open_files: Option<u64>,
    output_bytes: Option<u64>,
    strict: bool,
}

fn ms(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_millis().min(u64::MAX as u128) as u64)
}

pub fn serialize<S: Serializer>(l: &ResourceLimits, s: S) -> Result<S::Ok, S::Error> {
    Repr {
        memory_bytes: l.memory_bytes,
        cpus: l.cpus,
        pids: l.pids,
        wall_timeout_ms: ms(l.wall_timeout),
        cpu_time_ms: ms(l.cpu_time),
        file_size_bytes: l.file_size_bytes,
        open_files: l.open_files,
        output_bytes: l.output_bytes,
        strict: l.strict,
    }
    .serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ResourceLimits, D::Error> {
    let r = Repr::deserialize(d)?;
    Ok(ResourceLimits {
        memory_bytes: r.memory_bytes,
        cpus: r.cpus,
        pids: r.pids,
        wall_timeout: r.wall_timeout_ms.map(Duration::from_millis),
        cpu_time: r.cpu_time_ms.map(Duration::from_millis),
        file_size_bytes: r.file_size_bytes,
        open_files: r.open_files,
        output_bytes: r.output_bytes,
        strict: r.strict,
    })
}

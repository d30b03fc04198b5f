//! Serde for [`ResourceLimits`] (a core type without serde): durations as
//! milliseconds. Loading goes through the limits builder, so a stored limit
//! out of range is a deserialization error naming it, never an invalid
//! value in memory.

use std::time::Duration;

use orchestrator_core::{LimitKind, LimitValue, ResourceLimits};
use serde::de::Error as _;
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
        memory_bytes: l.memory_bytes(),
        cpus: l.cpus(),
        pids: l.pids(),
        wall_timeout_ms: ms(l.wall_timeout()),
        cpu_time_ms: ms(l.cpu_time()),
        file_size_bytes: l.file_size_bytes(),
        open_files: l.open_files(),
        output_bytes: l.output_bytes(),
        strict: l.strict(),
    }
    .serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ResourceLimits, D::Error> {
    let r = Repr::deserialize(d)?;
    let millis = |v: Option<u64>| v.map(|ms| LimitValue::Duration(Duration::from_millis(ms)));
    let stored = [
        (LimitKind::Memory, r.memory_bytes.map(LimitValue::Bytes)),
        (LimitKind::Cpus, r.cpus.map(LimitValue::Cpus)),
        (LimitKind::Pids, r.pids.map(LimitValue::Count)),
        (LimitKind::WallTimeout, millis(r.wall_timeout_ms)),
        (LimitKind::CpuTime, millis(r.cpu_time_ms)),
        (
            LimitKind::FileSize,
            r.file_size_bytes.map(LimitValue::Bytes),
        ),
        (LimitKind::OpenFiles, r.open_files.map(LimitValue::Count)),
        (
            LimitKind::OutputBytes,
            r.output_bytes.map(LimitValue::Bytes),
        ),
    ];
    let mut builder = ResourceLimits::builder().strict(r.strict);
    for (kind, value) in stored {
        if let Some(value) = value {
            builder = builder.limit(kind, value).map_err(D::Error::custom)?;
        }
    }
    builder
        .build()
        .map_err(|e| D::Error::custom(format!("stored limits: {e}")))
}

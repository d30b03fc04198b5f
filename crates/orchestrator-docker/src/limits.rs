//! How [`ResourceLimits`] map onto Docker: memory, cpus and pids through the
//! container's HostConfig (at create, `update_container` later); open files,
//! file size and CPU time as rlimits the exec wrapper sets for each command
//! (Docker cannot change a running container's ulimits); wall timeout and
//! output cap enforced by runbox while it streams the exec.

use bollard::models::ContainerUpdateBody;
use orchestrator_core::exec::cpu_seconds;
use orchestrator_core::{LimitEntry, LimitKind, LimitReport, Mechanism, ResourceLimits};

/// Docker enforces the limit (the container's HostConfig).
pub const DOCKER: Mechanism = Mechanism::named("docker");
/// An rlimit the exec wrapper sets for each command.
const RLIMIT: Mechanism = Mechanism::named("rlimit");

/// Processes runbox itself keeps in every container (docker-init, the
/// keep-alive shell and its `sleep`, one exec wrapper), added on top of the
/// requested pids limit so the command gets what was asked for.
pub(crate) const PIDS_RESERVE: u64 = 4;

/// The HostConfig / update fields for the cgroup-backed limits.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct CgroupFields {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
}

impl CgroupFields {
    /// The `update_container` request that sets these fields.
    pub fn update_body(&self) -> ContainerUpdateBody {
        ContainerUpdateBody {
            memory: self.memory,
            memory_swap: self.memory_swap,
            nano_cpus: self.nano_cpus,
            pids_limit: self.pids_limit,
            ..Default::default()
        }
    }
}

pub(crate) fn cgroup_fields(l: &ResourceLimits) -> CgroupFields {
    CgroupFields {
        memory: l.memory_bytes().map(|b| b as i64),
        // Swap off: memory+swap equal to memory.
        memory_swap: l.memory_bytes().map(|b| b as i64),
        nano_cpus: l.cpus().map(|c| (c * 1e9).round() as i64),
        pids_limit: l.pids().map(|n| (n + PIDS_RESERVE) as i64),
    }
}

/// Per-exec rlimits, as the wrapper's arguments (`-` = none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecRlimits {
    pub nofile: String,
    /// 512-byte blocks (the unit of `ulimit -f`), rounded down, at least 1.
    pub fsize_blocks: String,
    /// Whole seconds, rounded up.
    pub cpu_secs: String,
}

pub(crate) fn exec_rlimits(l: &ResourceLimits) -> ExecRlimits {
    ExecRlimits {
        nofile: l.open_files().map_or("-".into(), |n| n.to_string()),
        fsize_blocks: l
            .file_size_bytes()
            .map_or("-".into(), |b| (b / 512).max(1).to_string()),
        cpu_secs: l
            .cpu_time()
            .map_or("-".into(), |d| cpu_seconds(d).to_string()),
    }
}

/// The report for `requested` limits: one entry per requested limit, in
/// [`LimitKind::ALL`] order.
pub(crate) fn report(requested: &ResourceLimits) -> LimitReport {
    let entries = requested
        .requested()
        .into_iter()
        .map(|(kind, value)| {
            let (by, note) = match kind {
                LimitKind::Memory => (
                    DOCKER,
                    "HostConfig.Memory with MemorySwap equal to it (no swap); OOM kills are read from the container's memory cgroup".to_string(),
                ),
                LimitKind::Cpus => (DOCKER, "HostConfig.NanoCpus (CFS quota)".to_string()),
                LimitKind::Pids => (
                    DOCKER,
                    format!("HostConfig.PidsLimit = requested + {PIDS_RESERVE} for runbox's init, keep-alive and exec wrapper"),
                ),
                LimitKind::WallTimeout => (
                    Mechanism::RUNBOX,
                    "runbox timer; the command's whole session is killed inside the container".to_string(),
                ),
                LimitKind::CpuTime => (
                    RLIMIT,
                    "RLIMIT_CPU set by the exec wrapper (`ulimit -t`, whole seconds rounded up)".to_string(),
                ),
                LimitKind::FileSize => (
                    RLIMIT,
                    "RLIMIT_FSIZE set by the exec wrapper (`ulimit -f`, 512-byte blocks rounded down)".to_string(),
                ),
                LimitKind::OpenFiles => (
                    RLIMIT,
                    "RLIMIT_NOFILE set by the exec wrapper (`ulimit -n`)".to_string(),
                ),
                LimitKind::OutputBytes => (
                    Mechanism::RUNBOX,
                    "runbox caps each captured stream and stops the command beyond it".to_string(),
                ),
                _ => {
                    return LimitEntry {
                        kind,
                        requested: value,
                        enforced_by: None,
                        note: Some("unknown limit kind".into()),
                    }
                }
            };
            LimitEntry {
                kind,
                requested: value,
                enforced_by: Some(by),
                note: Some(note),
            }
        })
        .collect();
    LimitReport { entries }
}

/// Every limit kind this backend enforces.
pub(crate) fn enforced_kinds() -> Vec<LimitKind> {
    LimitKind::ALL.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn report_has_one_entry_per_request_in_order() {
        let l = ResourceLimits::builder()
            .memory_bytes(64 << 20)
            .cpus(0.5)
            .pids(10)
            .wall_timeout(Duration::from_secs(1))
            .cpu_time(Duration::from_millis(1500))
            .file_size_bytes(1000)
            .open_files(32)
            .output_bytes(10)
            .build()
            .unwrap();
        let r = report(&l);
        let kinds: Vec<_> = r.entries.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, LimitKind::ALL.to_vec());
        assert!(r.all_enforced());
        let f = cgroup_fields(&l);
        assert_eq!(f.memory, Some(64 << 20));
        assert_eq!(f.memory_swap, f.memory);
        assert_eq!(f.nano_cpus, Some(500_000_000));
        assert_eq!(f.pids_limit, Some(10 + PIDS_RESERVE as i64));
        let x = exec_rlimits(&l);
        assert_eq!(x.cpu_secs, "2");
        assert_eq!(x.fsize_blocks, "1");
        assert_eq!(x.nofile, "32");
        assert!(report(&ResourceLimits::default()).entries.is_empty());
    }
}

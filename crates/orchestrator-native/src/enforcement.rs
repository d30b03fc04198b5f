//! Which limit is enforced by what on this host (cgroup, rlimit, runbox
//! itself), the [`LimitReport`] that says so, the rlimits a command gets,
//! and applying a workspace's limits.

use std::sync::Arc;

use orchestrator_core::exec::cpu_seconds;
use orchestrator_core::{
    LimitEntry, LimitKind, LimitReport, Mechanism, ResourceLimits, Result, WorkspaceId,
};

use crate::cgroup::CgroupVersion;
use crate::isolation::is_root;
use crate::process::spawn::Rlimit;
use crate::sync::lock;
use crate::workspace::Workspace;
use crate::NativeOrchestrator;

/// Limits written to a cgroup v2 (unified hierarchy) workspace cgroup.
pub const CGROUP_V2: Mechanism = Mechanism::named("cgroup-v2");
/// Limits written to cgroup v1 controller hierarchies (hybrid hosts).
pub const CGROUP_V1: Mechanism = Mechanism::named("cgroup-v1");
/// setrlimit(2) in each command's process, between fork and exec.
pub const RLIMIT: Mechanism = Mechanism::named("rlimit");

impl NativeOrchestrator {
    fn mechanism(&self) -> Option<Mechanism> {
        match &self.inner.cgroups {
            Ok(c) if c.version() == CgroupVersion::V2 => Some(CGROUP_V2),
            Ok(_) => Some(CGROUP_V1),
            Err(_) => None,
        }
    }

    /// The limit kinds this host can enforce.
    pub(crate) fn enforceable(&self) -> Vec<LimitKind> {
        LimitKind::ALL
            .into_iter()
            .filter(|k| self.enforcement(*k).0.is_some())
            .collect()
    }

    /// How each limit kind is enforced here: mechanism and note, or reason.
    fn enforcement(&self, kind: LimitKind) -> (Option<Mechanism>, String) {
        let cg = self.mechanism();
        let no_cg = || {
            self.cgroup_unavailable_reason()
                .unwrap_or("no cgroup")
                .to_string()
        };
        match kind {
            LimitKind::Memory => match cg {
                Some(m) => (
                    Some(m),
                    "memory limit with swap disabled; OOM kills detected".into(),
                ),
                None => (
                    Some(RLIMIT),
                    format!(
                        "RLIMIT_AS per process (address space, not RSS; OOM not detected): {}",
                        no_cg()
                    ),
                ),
            },
            LimitKind::Cpus => match cg {
                Some(m) => (Some(m), "CFS quota over a 100 ms period".into()),
                None => (None, format!("CPU bandwidth needs a cgroup: {}", no_cg())),
            },
            LimitKind::Pids => match cg {
                Some(m) => (Some(m), "pids controller (processes and threads)".into()),
                None if self.isolating() => (
                    Some(RLIMIT),
                    format!(
                        "RLIMIT_NPROC of the sandbox user (its host id is the workspace's own \
                         as root, the caller's rootless): {}",
                        no_cg()
                    ),
                ),
                None if !is_root() => (
                    Some(RLIMIT),
                    format!(
                        "RLIMIT_NPROC counts every process of the user, not only the sandbox's: {}",
                        no_cg()
                    ),
                ),
                None => (
                    None,
                    format!("RLIMIT_NPROC does not bind root and no cgroup: {}", no_cg()),
                ),
            },
            LimitKind::WallTimeout => (
                Some(Mechanism::RUNBOX),
                "timer; the whole process tree is killed".into(),
            ),
            LimitKind::CpuTime => (
                Some(RLIMIT),
                "RLIMIT_CPU per process, whole seconds rounded up (SIGXCPU, then SIGKILL)".into(),
            ),
            LimitKind::FileSize => (Some(RLIMIT), "RLIMIT_FSIZE (SIGXFSZ)".into()),
            LimitKind::OpenFiles => (Some(RLIMIT), "RLIMIT_NOFILE".into()),
            LimitKind::OutputBytes => (
                Some(Mechanism::RUNBOX),
                "captured output capped per stream; the command is stopped".into(),
            ),
            _ => (None, "limit kind unknown to the native backend".into()),
        }
    }

    /// How each requested limit is enforced.
    pub(crate) fn report(&self, limits: &ResourceLimits) -> LimitReport {
        LimitReport {
            entries: limits
                .requested()
                .into_iter()
                .map(|(kind, requested)| {
                    let (enforced_by, note) = self.enforcement(kind);
                    LimitEntry {
                        kind,
                        requested,
                        enforced_by,
                        note: Some(note),
                    }
                })
                .collect(),
        }
    }

    /// The rlimits a command gets for limits `l`: those no cgroup enforces.
    pub(crate) fn rlimits(&self, l: &ResourceLimits) -> Vec<Rlimit> {
        let mut v = Vec::new();
        let mut push = |resource, n: u64| {
            v.push(Rlimit {
                resource,
                soft: n,
                hard: n,
            })
        };
        if let Some(d) = l.file_size_bytes() {
            push(libc::RLIMIT_FSIZE, d);
        }
        if let Some(n) = l.open_files() {
            push(libc::RLIMIT_NOFILE, n);
        }
        let cg = self.inner.cgroups.is_ok();
        if let Some(m) = l.memory_bytes().filter(|_| !cg) {
            push(libc::RLIMIT_AS, m);
        }
        // RLIMIT_NPROC does not bind root; a sandbox user is never root.
        if let Some(n) = l.pids().filter(|_| !cg && (!is_root() || self.isolating())) {
            push(libc::RLIMIT_NPROC, n);
        }
        if let Some(d) = l.cpu_time() {
            let secs = cpu_seconds(d);
            v.push(Rlimit {
                resource: libc::RLIMIT_CPU,
                soft: secs,
                hard: secs + 1,
            });
        }
        v
    }

    /// `apply_resource_limits`.
    pub(crate) async fn apply_limits(
        &self,
        id: &WorkspaceId,
        limits: &ResourceLimits,
    ) -> Result<LimitReport> {
        let ws = self.get(id)?;
        let report = self.apply_limits_sync(&ws, limits)?;
        self.seat_init(&ws).await?;
        Ok(report)
    }

    /// Moves an isolated workspace's sandbox init into the workspace
    /// cgroup, once both exist: its commands are then forked inside the
    /// cgroup instead of each joining it between fork and exec. On cgroup
    /// v1 a join takes the cgroup threadgroup lock for writing, which waits
    /// for an RCU grace period (milliseconds on a busy host): paid once per
    /// workspace here, where a pooled workspace pays it before it is handed
    /// out, rather than once per command.
    pub(crate) async fn seat_init(&self, ws: &Workspace) -> Result<()> {
        let (Some(sandbox), Some(cg)) = (ws.started_sandbox(), ws.cgroup()) else {
            return Ok(());
        };
        if ws.init_seated() {
            return Ok(());
        }
        sandbox.join(cg.attach_fds()?).await?;
        ws.set_init_seated();
        Ok(())
    }

    /// Reports `limits` (refusing in strict mode), writes those a cgroup
    /// enforces (making the workspace cgroup on first need) and merges them
    /// into the workspace's limits for later commands.
    pub(crate) fn apply_limits_sync(
        &self,
        ws: &Workspace,
        limits: &ResourceLimits,
    ) -> Result<LimitReport> {
        let report = self.report(limits);
        if limits.strict() || self.inner.config.strict {
            report.check_strict()?;
        }
        let wants_cgroup =
            limits.memory_bytes().is_some() || limits.pids().is_some() || limits.cpus().is_some();
        let cgroup = match (&self.inner.cgroups, wants_cgroup) {
            (Ok(support), true) => {
                let mut slot = lock(&ws.cgroup);
                match &*slot {
                    Some(cg) => Some(cg.clone()),
                    None => {
                        let cg = Arc::new(support.create(ws.id.as_str())?);
                        *slot = Some(cg.clone());
                        Some(cg)
                    }
                }
            }
            _ => None,
        };
        if let Some(cg) = &cgroup {
            if let Some(m) = limits.memory_bytes() {
                cg.set_memory(m)?;
            }
            if let Some(p) = limits.pids() {
                // An isolated workspace's init sits in its cgroup
                // ([`Self::seat_init`]): one more process than its commands
                // may make, so they get exactly `p`.
                cg.set_pids(p + u64::from(ws.sandbox_ids.is_some()))?;
            }
            if let Some(c) = limits.cpus() {
                cg.set_cpus(c)?;
            }
        }
        let mut current = lock(&ws.limits);
        *current = current.overlay(limits);
        Ok(report)
    }
}

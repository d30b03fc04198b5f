//! The [`Orchestrator`] implementation of [`FakeOrchestrator`]: each call is
//! recorded, may fail on demand, then acts on the fake's workspaces.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::copy::{copy_in, copy_out, read_host_tree};
use super::machine::{Machine, SIGKILL};
use super::run::{drive, plan, Job};
use super::stop::await_end;
use super::{Call, FakeOrchestrator, FakeWorkspace, MECHANISM};
use crate::error::{Error, Result};
use crate::limits::{LimitEntry, LimitReport, ResourceLimits};
use crate::orchestrator::Orchestrator;
use crate::paths::SandboxPath;
use crate::types::{
    Availability, Capabilities, CommandSpec, ExecOutput, ProcessId, ProcessSnapshot, Stream,
    WorkspaceId, WorkspaceSpec,
};

#[async_trait]
impl Orchestrator for FakeOrchestrator {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    async fn is_available(&self) -> Availability {
        match self.enter(Call::IsAvailable).await {
            Ok(()) => self.lock().availability.clone(),
            Err(e) => Availability::unavailable(e.to_string()),
        }
    }

    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        self.enter(Call::CreateWorkspace {
            execution_id: spec.execution_id.clone(),
            image: spec.image.clone(),
            labels: spec.labels.clone(),
        })
        .await?;
        // In-memory workspaces have nothing to bind a host path into.
        if !spec.mounts.is_empty() {
            return Err(Error::Unsupported {
                backend: self.name().to_string(),
                operation: "mounts".into(),
            });
        }
        let id = self.fresh_id();
        let ws = FakeWorkspace::new(spec.limits.clone(), spec.execution_id.clone());
        let mut st = self.lock();
        st.created_total += 1;
        st.workspaces.insert(id.clone(), ws);
        Ok(id)
    }

    async fn apply_resource_limits(
        &self,
        id: &WorkspaceId,
        limits: &ResourceLimits,
    ) -> Result<LimitReport> {
        self.enter(Call::ApplyResourceLimits {
            id: id.clone(),
            limits: limits.clone(),
        })
        .await?;
        self.machine(id)?;
        let report = LimitReport {
            entries: limits
                .requested()
                .into_iter()
                .map(|(kind, requested)| {
                    let enforced = self.capabilities.enforces(kind);
                    LimitEntry {
                        kind,
                        requested,
                        enforced_by: enforced.then_some(MECHANISM),
                        note: (!enforced)
                            .then(|| format!("fake backend {} does not enforce it", self.name)),
                    }
                })
                .collect(),
        };
        if limits.strict() {
            report.check_strict()?;
        }
        self.with_ws(id, |ws, _| {
            let merged = ws.limits.clone().unwrap_or_default().overlay(limits);
            ws.machine.set_limits(merged.clone());
            ws.limits = Some(merged);
            Ok(())
        })?;
        Ok(report)
    }

    async fn copy_to(
        &self,
        id: &WorkspaceId,
        host_path: &Path,
        sandbox_path: &SandboxPath,
    ) -> Result<()> {
        self.enter(Call::CopyTo {
            id: id.clone(),
            host: host_path.to_path_buf(),
            sandbox: sandbox_path.clone(),
        })
        .await?;
        let machine = self.copy_target(id, "copy_to")?;
        let tree = read_host_tree(host_path)?;
        let mut st = machine.lock();
        copy_in(&mut st.fs, tree, sandbox_path)
    }

    async fn copy_from(
        &self,
        id: &WorkspaceId,
        sandbox_path: &SandboxPath,
        host_path: &Path,
    ) -> Result<()> {
        self.enter(Call::CopyFrom {
            id: id.clone(),
            sandbox: sandbox_path.clone(),
            host: host_path.to_path_buf(),
        })
        .await?;
        let machine = self.copy_target(id, "copy_from")?;
        let st = machine.lock();
        copy_out(&st.fs, sandbox_path, host_path)
    }

    async fn run_command(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput> {
        self.enter(Call::RunCommand {
            id: id.clone(),
            argv: cmd.argv().to_vec(),
            live_output: cmd.output().is_some(),
        })
        .await?;
        let machine = self.machine(id)?;
        let delay = self.lock().run_delay;
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if self.shell {
            let (launch, job) = plan(&machine, cmd)?;
            return Ok(drive(machine, launch, job).await);
        }
        self.with_ws(id, |ws, scripted| {
            Self::write_scripted_files(ws, scripted);
            Ok(())
        })?;
        let out = self.lock().output.clone();
        if let Some(sink) = cmd.output() {
            sink.emit(Stream::Stdout, &out.stdout);
            sink.emit(Stream::Stderr, &out.stderr);
        }
        Ok(out)
    }

    async fn start_background(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ProcessId> {
        self.enter(Call::StartBackground {
            id: id.clone(),
            argv: cmd.argv().to_vec(),
        })
        .await?;
        let machine = self.machine(id)?;
        if !self.capabilities.background {
            return Err(self.unsupported("start_background"));
        }
        let pid = self.fresh_pid()?;
        let job = if self.shell {
            let (launch, job) = plan(&machine, cmd)?;
            tokio::spawn(drive(machine, launch, job.clone()));
            job
        } else {
            let output = self.lock().output.clone();
            self.with_ws(id, |ws, scripted| {
                Self::write_scripted_files(ws, scripted);
                Ok(())
            })?;
            Job::finished(output)
        };
        self.with_ws(id, |ws, _| {
            ws.processes.insert(pid.clone(), job);
            Ok(())
        })?;
        Ok(pid)
    }

    async fn process_status(&self, id: &WorkspaceId, pid: &ProcessId) -> Result<ProcessSnapshot> {
        self.enter(Call::ProcessStatus {
            id: id.clone(),
            pid: pid.clone(),
        })
        .await?;
        Ok(self.job(id, pid)?.snapshot())
    }

    async fn wait_process(
        &self,
        id: &WorkspaceId,
        pid: &ProcessId,
        timeout: Option<Duration>,
    ) -> Result<Option<ExecOutput>> {
        self.enter(Call::WaitProcess {
            id: id.clone(),
            pid: pid.clone(),
            timeout,
        })
        .await?;
        let job = self.job(id, pid)?;
        Ok(job.wait(timeout).await)
    }

    async fn stop(&self, id: &WorkspaceId, pid: Option<&ProcessId>) -> Result<()> {
        self.enter(Call::Stop {
            id: id.clone(),
            pid: pid.cloned(),
        })
        .await?;
        let machine = self.machine(id)?;
        let (pids, jobs) = match pid {
            Some(pid) => {
                let job = self.job(id, pid)?;
                let pids = job
                    .group()
                    .map(|g| machine.kill_group(g, SIGKILL))
                    .unwrap_or_default();
                (pids, vec![job])
            }
            None => {
                let jobs =
                    self.with_ws(id, |ws, _| Ok(ws.processes.values().cloned().collect()))?;
                (machine.kill_all(false), jobs)
            }
        };
        await_end(&self.name, id.as_str(), &machine, &pids, &jobs).await
    }

    async fn cleanup(&self, id: &WorkspaceId) -> Result<()> {
        self.enter(Call::Cleanup { id: id.clone() }).await?;
        let gone = self.lock().workspaces.remove(id);
        if let Some(ws) = gone {
            ws.machine.kill_all(true);
        }
        Ok(())
    }

    fn workspace_path(&self, _id: &WorkspaceId) -> Option<PathBuf> {
        None
    }

    async fn residue(&self, id: &WorkspaceId) -> Result<Vec<String>> {
        self.enter(Call::Residue { id: id.clone() }).await?;
        Ok(if self.is_live(id) {
            vec![format!("fake workspace {id} of backend {}", self.name)]
        } else {
            Vec::new()
        })
    }

    async fn reap_orphans(&self) -> Result<Vec<String>> {
        self.enter(Call::ReapOrphans).await?;
        let orphans: Vec<(WorkspaceId, FakeWorkspace)> = {
            let mut st = self.lock();
            let ids: Vec<WorkspaceId> = st
                .workspaces
                .iter()
                .filter(|(_, w)| w.orphan)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| st.workspaces.remove(&id).map(|w| (id, w)))
                .collect()
        };
        Ok(orphans
            .into_iter()
            .map(|(id, ws)| {
                ws.machine.kill_all(true);
                format!("fake workspace {id}")
            })
            .collect())
    }
}

impl FakeOrchestrator {
    /// What a copy checks before it touches anything: the workspace, then
    /// the capability. Returns its machine.
    fn copy_target(&self, id: &WorkspaceId, operation: &str) -> Result<Arc<Machine>> {
        let machine = self.machine(id)?;
        if !self.capabilities.copy {
            return Err(self.unsupported(operation));
        }
        Ok(machine)
    }

    /// A background process of a live workspace.
    fn job(&self, id: &WorkspaceId, pid: &ProcessId) -> Result<Arc<Job>> {
        self.with_ws(id, |ws, _| {
            ws.processes
                .get(pid)
                .cloned()
                .ok_or_else(|| Error::process_not_found(pid))
        })
    }
}

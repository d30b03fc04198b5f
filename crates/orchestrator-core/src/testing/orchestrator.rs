//! The [`Orchestrator`] implementation of [`FakeOrchestrator`]: each call is
//! recorded, may fail on demand, then acts on the fake's workspaces.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::copy::{copy_in, copy_out, read_host_tree};
use super::machine::Machine;
use super::run::{drive, plan, Job};
use super::{Call, FakeOrchestrator, FakeWorkspace};
use crate::error::{Error, Result};
use crate::limits::{LimitEntry, LimitReport, Mechanism, ResourceLimits};
use crate::orchestrator::Orchestrator;
use crate::paths::sandbox_relative;
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
            Err(e) => Availability::no(e.to_string()),
        }
    }

    async fn create_workspace(&self, spec: &WorkspaceSpec) -> Result<WorkspaceId> {
        self.enter(Call::CreateWorkspace {
            execution_id: spec.execution_id.clone(),
            image: spec.image.clone(),
            labels: spec.labels.clone(),
        })
        .await?;
        if let Some(l) = &spec.limits {
            l.validate()?;
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
        limits.validate()?;
        let report = LimitReport {
            entries: limits
                .requested()
                .into_iter()
                .map(|(kind, requested)| {
                    let enforced = self.capabilities.enforces(kind);
                    LimitEntry {
                        kind,
                        requested,
                        enforced_by: enforced.then_some(Mechanism::Runbox),
                        note: (!enforced)
                            .then(|| format!("fake backend {} does not enforce it", self.name)),
                    }
                })
                .collect(),
        };
        if limits.strict {
            report.check_strict()?;
        }
        self.with_ws(id, |ws, _| {
            ws.limits = Some(limits.clone());
            ws.machine.set_limits(limits.clone());
            Ok(())
        })?;
        Ok(report)
    }

    async fn copy_to(&self, id: &WorkspaceId, host_path: &Path, sandbox_path: &str) -> Result<()> {
        self.enter(Call::CopyTo {
            id: id.clone(),
            host: host_path.to_path_buf(),
            sandbox: sandbox_path.to_string(),
        })
        .await?;
        let machine = self.copy_target(id, "copy_to", sandbox_path)?;
        let tree = read_host_tree(host_path)?;
        let mut st = machine.lock();
        copy_in(&mut st.fs, tree, sandbox_path)
    }

    async fn copy_from(
        &self,
        id: &WorkspaceId,
        sandbox_path: &str,
        host_path: &Path,
    ) -> Result<()> {
        self.enter(Call::CopyFrom {
            id: id.clone(),
            sandbox: sandbox_path.to_string(),
            host: host_path.to_path_buf(),
        })
        .await?;
        let machine = self.copy_target(id, "copy_from", sandbox_path)?;
        let st = machine.lock();
        copy_out(&st.fs, sandbox_path, host_path)
    }

    async fn run_command(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ExecOutput> {
        self.enter(Call::RunCommand {
            id: id.clone(),
            argv: cmd.argv.clone(),
            live_output: cmd.output.is_some(),
        })
        .await?;
        cmd.validate()?;
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
        if let Some(sink) = &cmd.output {
            sink.emit(Stream::Stdout, &out.stdout);
            sink.emit(Stream::Stderr, &out.stderr);
        }
        Ok(out)
    }

    async fn start_background(&self, id: &WorkspaceId, cmd: &CommandSpec) -> Result<ProcessId> {
        self.enter(Call::StartBackground {
            id: id.clone(),
            argv: cmd.argv.clone(),
        })
        .await?;
        if !self.capabilities.background {
            return Err(self.unsupported("start_background"));
        }
        cmd.validate()?;
        let pid = self.fresh_pid()?;
        let job = if self.shell {
            let machine = self.machine(id)?;
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
        match pid {
            Some(pid) => self.job(id, pid)?.stop(&machine),
            None => machine.kill_all(false),
        }
        Ok(())
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
    /// What a copy checks before it touches anything: the capability, the
    /// sandbox path's lexical rules, the workspace. Returns its machine.
    fn copy_target(
        &self,
        id: &WorkspaceId,
        operation: &str,
        sandbox_path: &str,
    ) -> Result<Arc<Machine>> {
        if !self.capabilities.copy {
            return Err(self.unsupported(operation));
        }
        sandbox_relative(sandbox_path)?;
        self.machine(id)
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

//! Starting a command in its workspace's sandbox: pipes made here (their
//! command ends handed to the init with the workspace cgroup's files), the
//! request sent, the result a [`Running`] like a host command's.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use orchestrator_core::ExitStatus;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;

use crate::error::NativeOrchestratorError;
use crate::process::capture::Shared;
use crate::process::group::{Group, Leader};
use crate::process::spawn::{
    baseline, pipe_pair, start_failure, OutputPipe, Running, SpawnPlan, Started, TreeGuard,
};
use crate::sandbox::{Sandbox, Spawn};

fn spawn_err(program: &str, source: std::io::Error) -> NativeOrchestratorError {
    NativeOrchestratorError::Spawn {
        program: program.to_string(),
        source,
    }
}

/// Starts `plan`'s command through `sandbox`'s init.
pub(crate) async fn spawn(plan: SpawnPlan, sandbox: Arc<Sandbox>) -> Started {
    let program = plan.cmd.argv[0].clone();
    let io_err = |e| spawn_err(&program, e);
    let (out_r, out_w) = pipe_pair().map_err(io_err)?;
    let (err_r, err_w) = pipe_pair().map_err(io_err)?;
    let stdin = match plan.cmd.stdin.is_some() {
        true => Some(pipe_pair().map_err(io_err)?),
        false => None,
    };
    let cgroup_fds = match (&plan.cgroup, plan.born_in_cgroup) {
        (Some(cg), false) => cg.attach_fds()?,
        _ => Vec::new(),
    };
    let request = Spawn {
        id: 0,
        argv: plan
            .cmd
            .argv
            .iter()
            .map(|a| a.clone().into_bytes())
            .collect(),
        env: plan
            .cmd
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}").into_bytes())
            .collect(),
        cwd: plan.sandbox_cwd.clone().into_bytes(),
        limits: plan.rlimits.clone(),
        stdin: stdin.is_some(),
        cgroups: cgroup_fds.len() as u32,
    };
    let (stdin_r, stdin_w) = match stdin {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    let mut fds: Vec<OwnedFd> = Vec::with_capacity(3 + cgroup_fds.len());
    fds.extend(stdin_r);
    fds.push(out_w);
    fds.push(err_w);
    fds.extend(cgroup_fds);
    let (peak_handle, oom_before, cpu_before) = baseline(plan.cgroup.as_ref());
    let started = Instant::now();
    let cmd = match sandbox.spawn(request, fds).await? {
        Ok(cmd) => cmd,
        Err(errno) => {
            let e = std::io::Error::from_raw_os_error(errno);
            return match start_failure(&e) {
                Some(reason) => Ok(Err(ExitStatus::FailedToStart {
                    reason,
                    message: format!("{program}: {e}"),
                })),
                None => Err(spawn_err(&program, e)),
            };
        }
    };
    let group = Group::Sandboxed(sandbox.clone(), cmd.id());
    let guard = TreeGuard {
        group: group.clone(),
        armed: true,
    };
    let pipe_fds = vec![out_r.as_raw_fd(), err_r.as_raw_fd()];
    let stdout = pipe::Receiver::from_owned_fd(out_r).map_err(io_err)?;
    let stderr = pipe::Receiver::from_owned_fd(err_r).map_err(io_err)?;
    let stdin_task = match (plan.cmd.stdin, stdin_w) {
        (Some(data), Some(w)) => {
            let mut tx = pipe::Sender::from_owned_fd(w).map_err(io_err)?;
            Some(tokio::spawn(async move {
                let _ = tx.write_all(&data).await;
                let _ = tx.shutdown().await;
            }))
        }
        _ => None,
    };
    Ok(Ok(Running {
        leader: Leader::Sandboxed(cmd),
        group,
        shared: Arc::new(Shared::new(plan.cmd.output_cap, plan.cmd.sink)),
        stdout: Some(Box::new(stdout) as OutputPipe),
        stderr: Some(Box::new(stderr) as OutputPipe),
        stdin_task,
        pipe_fds,
        started,
        timeout: plan.cmd.timeout,
        cgroup: plan.cgroup,
        oom_before,
        cpu_before,
        peak_handle,
        guard,
    }))
}

//! Starting a command in its workspace's sandbox: pipes made here (their
//! command ends handed to the init with the workspace cgroup's files), the
//! request sent, the result a [`Running`] like a host command's.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use crate::process::group::{Group, Leader};
use crate::process::spawn::{
    baseline, not_started, on_pipes, pipe_pair, spawn_err, Pipes, SpawnPlan, Started,
};
use crate::sandbox::{Sandbox, Spawn};

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
        Err(errno) => return not_started(&program, std::io::Error::from_raw_os_error(errno)),
    };
    let group = Group::Sandboxed(sandbox.clone(), cmd.id());
    let pipes = Pipes {
        out_r,
        err_r,
        stdin_w,
    };
    let baseline = (peak_handle, oom_before, cpu_before);
    on_pipes(
        plan,
        Leader::Sandboxed(cmd),
        group,
        pipes,
        started,
        baseline,
    )
}

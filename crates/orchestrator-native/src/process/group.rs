//! A started command's process tree and its main process, wherever it
//! runs: a process group on the host, or a command of a workspace's
//! sandbox (killed and waited for through its init).

use std::sync::Arc;

use crate::process::signal::{self, Pgid};
use crate::sandbox::{Command, Sandbox};

/// A command's process tree, as something that can be killed.
#[derive(Debug, Clone)]
pub(crate) enum Group {
    /// A process group of host processes.
    Host(Pgid),
    /// Command `id` of a sandbox.
    Sandboxed(Arc<Sandbox>, u64),
}

impl Group {
    /// SIGKILLs the group and every descendant of its members.
    pub(crate) fn kill_tree(&self) {
        match self {
            Group::Host(pgid) => signal::kill_tree(*pgid),
            Group::Sandboxed(sandbox, id) => sandbox.kill(*id),
        }
    }

    /// SIGKILLs what is left of the group after its leader ended.
    pub(crate) fn kill_leftovers(&self) {
        match self {
            Group::Host(pgid) => {
                let _ = signal::signal_group(*pgid, libc::SIGKILL);
            }
            Group::Sandboxed(sandbox, id) => sandbox.kill(*id),
        }
    }

    /// The host process group, for a host command.
    pub(crate) fn host(&self) -> Option<Pgid> {
        match self {
            Group::Host(pgid) => Some(*pgid),
            Group::Sandboxed(..) => None,
        }
    }
}

/// A started command's main process, to wait for.
pub(crate) enum Leader {
    Host(tokio::process::Child),
    /// A host process cloned into its cgroup, held by its pidfd.
    Cloned(crate::process::pidfd::PidfdChild),
    Sandboxed(Command),
}

impl Leader {
    /// Waits for it to end; `None` when its status cannot be had (the
    /// sandbox ended first, or waiting failed).
    pub(crate) async fn wait(&mut self) -> Option<std::process::ExitStatus> {
        match self {
            Leader::Host(child) => child.wait().await.ok(),
            Leader::Cloned(child) => child.wait().await,
            Leader::Sandboxed(cmd) => cmd.wait().await,
        }
    }
}

//! The sandbox of an isolated workspace: one init per workspace, in new
//! user, mount, pid, network, ipc, uts and cgroup namespaces, that forks
//! every command of the workspace.
//!
//! - [`outer`]: the binary re-executed before `main` (a constructor), the
//!   outer process that unshares the namespaces and forks the init;
//! - [`launch`]: starting the outer process (posix_spawn, no fork);
//! - [`init`]: the init (pid 1 inside), serving the control socket;
//! - [`rootfs`]: the filesystem view the init builds;
//! - [`command`]: a command's process between fork and exec;
//! - [`privileges`], [`seccomp`]: what the init gives up before serving;
//! - [`protocol`], [`wire`]: the messages and how they cross the socket;
//! - [`client`]: the service's side;
//! - [`probe`]: whether this host can isolate at all.

mod client;
pub(crate) mod command;
mod init;
mod launch;
mod outer;
mod privileges;
mod probe;
mod protocol;
mod rootfs;
mod seccomp;
mod sys;
mod wire;

#[cfg(test)]
mod hardening_tests;

pub(crate) use client::{Command, Sandbox};
pub(crate) use probe::probe;
pub(crate) use protocol::{Setup, Spawn};
pub(crate) use rootfs::SANDBOX_ID;
pub use seccomp::DENIED as SECCOMP_DENIED;

use orchestrator_core::{Mechanism, NetworkMode};

/// Every mechanism of full isolation, as the isolation report names them.
pub mod mechanisms {
    use orchestrator_core::Mechanism;

    /// A user namespace: the sandbox user is an unprivileged host id.
    pub const USER_NAMESPACE: Mechanism = Mechanism::named("user-namespace");
    /// A pid namespace: host processes are invisible and unsignalable.
    pub const PID_NAMESPACE: Mechanism = Mechanism::named("pid-namespace");
    /// A mount namespace with a fresh read-only root (pivot_root).
    pub const MOUNT_NAMESPACE: Mechanism = Mechanism::named("mount-namespace");
    /// A network namespace with only loopback (network `none`).
    pub const NETWORK_NAMESPACE: Mechanism = Mechanism::named("network-namespace");
    /// IPC, UTS and cgroup namespaces.
    pub const IPC_NAMESPACE: Mechanism = Mechanism::named("ipc-namespace");
    /// See [`IPC_NAMESPACE`].
    pub const UTS_NAMESPACE: Mechanism = Mechanism::named("uts-namespace");
    /// See [`IPC_NAMESPACE`].
    pub const CGROUP_NAMESPACE: Mechanism = Mechanism::named("cgroup-namespace");
    /// Every capability dropped (bounding and ambient sets too), securebits
    /// locked.
    pub const CAPABILITIES: Mechanism = Mechanism::named("capabilities-dropped");
    /// no_new_privs: exec never gains privileges.
    pub const NO_NEW_PRIVS: Mechanism = Mechanism::named("no-new-privs");
    /// A seccomp filter denying the system calls that widen the sandbox.
    pub const SECCOMP: Mechanism = Mechanism::named("seccomp");
}

/// The mechanisms in force for a sandbox with `network`.
pub(crate) fn enforced_by(network: NetworkMode) -> Vec<Mechanism> {
    use mechanisms::*;
    let mut v = vec![USER_NAMESPACE, PID_NAMESPACE, MOUNT_NAMESPACE];
    if network == NetworkMode::None {
        v.push(NETWORK_NAMESPACE);
    }
    v.extend([
        IPC_NAMESPACE,
        UTS_NAMESPACE,
        CGROUP_NAMESPACE,
        CAPABILITIES,
        NO_NEW_PRIVS,
        SECCOMP,
    ]);
    v
}

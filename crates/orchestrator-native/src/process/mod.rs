//! A command's life: resolving it against its workspace, starting it (a
//! host process in its own process group, cloned straight into its cgroup
//! v2 cgroup where it can be, or a command forked by the workspace's
//! sandbox init) into the workspace cgroup, capturing its
//! output, driving it to an end, and signalling it.

pub(crate) mod capture;
pub(crate) mod cloned;
pub(crate) mod drive;
pub(crate) mod group;
pub(crate) mod pidfd;
pub(crate) mod sandboxed;
pub(crate) mod signal;
pub(crate) mod spawn;

//! A command's life as a host process: resolving it against its workspace,
//! spawning it into its own process group (and cgroup), capturing its
//! output, driving it to an end, and signalling it.

pub(crate) mod capture;
pub(crate) mod drive;
pub(crate) mod signal;
pub(crate) mod spawn;

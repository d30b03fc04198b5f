//! Sending signals: the only place that calls kill(2), with pid types that
//! cannot hold the values kill(2) treats as "many processes".
//!
//! kill(2) with pid 0 signals the caller's own process group, -1 every
//! process the caller may signal, and any other negative value a whole
//! group. A [`Pid`] is always a single process (`> 0`) and a [`Pgid`] a group
//! other than 0 and 1 (`-1` would be every process), so neither can reach
//! kill(2) as one of those.

use std::fmt;

use crate::procfs;

/// One process id: always `> 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Pid(i32);

impl Pid {
    /// `None` for 0 and negative values (they name groups or everything).
    pub fn new(raw: i32) -> Option<Self> {
        (raw > 0).then_some(Self(raw))
    }

    /// The raw value (`> 0`).
    pub fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One process group id: always `> 1`, so `-pgid` is never 0, -1 or 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Pgid(i32);

impl Pgid {
    /// `None` for 0, 1 and negative values.
    pub fn new(raw: i32) -> Option<Self> {
        (raw > 1).then_some(Self(raw))
    }

    /// The raw value (`> 1`).
    pub fn get(self) -> i32 {
        self.0
    }

    /// The group's leader (a group's id is its leader's pid).
    pub fn leader(self) -> Pid {
        Pid(self.0)
    }
}

/// Sends `sig` to one process.
pub(crate) fn signal_pid(pid: Pid, sig: i32) -> std::io::Result<()> {
    raw_kill(pid.0, sig)
}

/// Sends `sig` to every process of one group.
pub(crate) fn signal_group(pgid: Pgid, sig: i32) -> std::io::Result<()> {
    raw_kill(-pgid.0, sig)
}

/// `target` is `> 0` (one process) or `< -1` (one group), as the types
/// above guarantee.
fn raw_kill(target: i32, sig: i32) -> std::io::Result<()> {
    debug_assert!(!(-1..=0).contains(&target), "kill({target}) refused");
    // SAFETY: kill(2) touches no memory of ours.
    if unsafe { libc::kill(target, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// SIGKILLs each of `pids` (those already gone are no error).
pub(crate) fn kill_pids(pids: impl IntoIterator<Item = Pid>) {
    for pid in pids {
        let _ = signal_pid(pid, libc::SIGKILL);
    }
}

/// SIGKILLs process group `pgid` and every descendant of its members.
pub(crate) fn kill_tree(pgid: Pgid) {
    // Kill the group first so it cannot fork further, then stragglers that
    // left the group; repeat once for children forked in between.
    for _ in 0..2 {
        let _ = signal_group(pgid, libc::SIGKILL);
        kill_pids(procfs::tree_of_group(pgid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_that_name_many_processes_are_refused() {
        assert_eq!(Pid::new(0), None);
        assert_eq!(Pid::new(-1), None);
        assert_eq!(Pid::new(i32::MIN), None);
        assert_eq!(Pid::new(1).map(Pid::get), Some(1));
    }

    #[test]
    fn groups_that_name_many_processes_are_refused() {
        assert_eq!(Pgid::new(0), None);
        assert_eq!(Pgid::new(1), None);
        assert_eq!(Pgid::new(-1), None);
        assert_eq!(Pgid::new(-42), None);
        assert_eq!(Pgid::new(2).map(Pgid::get), Some(2));
    }

    #[test]
    fn signals_reach_an_own_child_and_its_group() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = Pid::new(child.id() as i32).unwrap();
        signal_pid(pid, 0).unwrap();
        let pgid = Pgid::new(pid.get()).unwrap();
        signal_group(pgid, libc::SIGKILL).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}

//! The simulated machine behind one shell-mode fake workspace: its files, its
//! process table (pids, process groups, signals) and the accounting its
//! limits are enforced against (process count, memory, CPU).
//!
//! Every signal the fake delivers is fatal (no process installs handlers),
//! so a signalled process leaves the table at once; its task notices at its
//! next await point and ends without doing anything more.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::fs::Fs;
use crate::limits::ResourceLimits;

/// SIGKILL.
pub(crate) const SIGKILL: i32 = 9;
/// SIGXCPU: the CPU time limit's soft signal.
pub(crate) const SIGXCPU: i32 = 24;
/// SIGXFSZ: a write beyond the file size limit.
pub(crate) const SIGXFSZ: i32 = 25;

type Ctl = Arc<watch::Sender<Option<i32>>>;

struct Proc {
    group: u32,
    ppid: u32,
    name: String,
    mem: u64,
    ctl: Ctl,
}

/// The mutable part of a [`Machine`].
pub(crate) struct MachineState {
    /// The workspace's files.
    pub(crate) fs: Fs,
    /// The limits in force (the last ones applied).
    pub(crate) limits: ResourceLimits,
    procs: BTreeMap<u32, Proc>,
    next_pid: u32,
    mem_used: u64,
    oom_kills: u64,
    cpu_used: Duration,
    cpu_since: Instant,
    closed: bool,
    survive_signals: bool,
}

/// One workspace's simulated machine; shared by the fake and every task
/// that runs one of its processes.
pub(crate) struct Machine {
    state: Mutex<MachineState>,
}

/// A live process: its pid, its group, and the channel its signal arrives on.
pub(crate) struct Pid {
    /// Its pid (unique within the machine, never reused).
    pub(crate) pid: u32,
    /// Its process group: the pid of the command the caller started.
    pub(crate) group: u32,
    ctl: Ctl,
}

/// Why a process could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForkError {
    /// The pids limit is reached (EAGAIN).
    Limit,
    /// The workspace was cleaned up.
    Closed,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// This signal ended it.
    Signaled(i32),
}

impl Ended {
    /// The status a shell sees (`$?`): the code, or 128 + the signal.
    pub(crate) fn shell_status(self) -> i32 {
        match self {
            Ended::Exited(c) => c,
            Ended::Signaled(s) => 128 + s,
        }
    }
}

impl Pid {
    /// Resolves with the signal once one is delivered.
    async fn killed(&self) -> i32 {
        let mut rx = self.ctl.subscribe();
        // The sender lives in `self`, so the channel cannot close here.
        let sig = match rx.wait_for(Option::is_some).await {
            Ok(sig) => sig.unwrap_or(SIGKILL),
            Err(_) => SIGKILL,
        };
        sig
    }
}

impl Machine {
    /// A machine with no files, no processes and these limits.
    pub(crate) fn new(limits: ResourceLimits) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(MachineState {
                fs: Fs::default(),
                limits,
                procs: BTreeMap::new(),
                next_pid: 1,
                mem_used: 0,
                oom_kills: 0,
                cpu_used: Duration::ZERO,
                cpu_since: Instant::now(),
                closed: false,
                survive_signals: false,
            }),
        })
    }

    /// The state; plain data, so a poisoned lock is taken as it is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, MachineState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the limits; CPU bandwidth is measured from now on.
    pub(crate) fn set_limits(&self, limits: ResourceLimits) {
        let mut st = self.lock();
        st.limits = limits;
        st.cpu_used = Duration::ZERO;
        st.cpu_since = Instant::now();
    }

    /// Creates a process: a child of `parent` (pid, group) in its group, or
    /// with `None` the leader of a new group. Refused at the pids limit.
    pub(crate) fn spawn(&self, parent: Option<(u32, u32)>, name: &str) -> Result<Pid, ForkError> {
        let mut st = self.lock();
        if st.closed {
            return Err(ForkError::Closed);
        }
        if st
            .limits
            .pids()
            .is_some_and(|max| st.procs.len() as u64 >= max)
        {
            return Err(ForkError::Limit);
        }
        let pid = st.next_pid;
        st.next_pid += 1;
        let (ppid, group) = parent.unwrap_or((0, pid));
        let ctl: Ctl = Arc::new(watch::channel(None).0);
        st.procs.insert(
            pid,
            Proc {
                group,
                ppid,
                name: name.to_string(),
                mem: 0,
                ctl: ctl.clone(),
            },
        );
        Ok(Pid { pid, group, ctl })
    }

    /// Makes every process survive signals, SIGKILL included, as a process
    /// in uninterruptible sleep does (a fault for tests of `stop`).
    pub(crate) fn set_survive_signals(&self, survive: bool) {
        self.lock().survive_signals = survive;
    }

    /// Delivers `sig` to `pid` (0 only checks that it exists); false when
    /// there is no such process.
    pub(crate) fn signal(&self, pid: u32, sig: i32) -> bool {
        let mut st = self.lock();
        if sig == 0 || st.survive_signals {
            return st.procs.contains_key(&pid);
        }
        match st.procs.remove(&pid) {
            Some(p) => {
                st.mem_used -= p.mem;
                p.ctl.send_replace(Some(sig));
                true
            }
            None => false,
        }
    }

    /// Delivers `sig` to every process of `group`; returns their pids.
    pub(crate) fn kill_group(&self, group: u32, sig: i32) -> Vec<u32> {
        let pids: Vec<u32> = {
            let st = self.lock();
            st.procs
                .iter()
                .filter(|(_, p)| p.group == group)
                .map(|(pid, _)| *pid)
                .collect()
        };
        for &pid in &pids {
            self.signal(pid, sig);
        }
        pids
    }

    /// Kills every process and returns their pids; with `close`, no process
    /// can start afterwards.
    pub(crate) fn kill_all(&self, close: bool) -> Vec<u32> {
        let pids: Vec<u32> = {
            let mut st = self.lock();
            st.closed |= close;
            st.procs.keys().copied().collect()
        };
        for &pid in &pids {
            self.signal(pid, SIGKILL);
        }
        pids
    }

    /// Does `pid` exist?
    pub(crate) fn alive(&self, pid: u32) -> bool {
        self.lock().procs.contains_key(&pid)
    }

    /// The pids of every process, sorted.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.lock().procs.keys().copied().collect()
    }

    /// `/proc/PID/stat` of a live process (the fields the kernel puts
    /// first: pid, name, state, ppid, pgrp).
    pub(crate) fn stat(&self, pid: u32) -> Option<String> {
        let st = self.lock();
        let p = st.procs.get(&pid)?;
        Some(format!(
            "{pid} ({}) S {} {} {} 0 -1\n",
            p.name, p.ppid, p.group, p.group
        ))
    }

    /// Charges `bytes` of memory to `pid`; false when that would pass the
    /// memory limit, which counts as an OOM kill (the caller kills `pid`).
    pub(crate) fn charge_memory(&self, pid: u32, bytes: u64) -> bool {
        let mut st = self.lock();
        if st
            .limits
            .memory_bytes()
            .is_some_and(|max| st.mem_used + bytes > max)
        {
            st.oom_kills += 1;
            return false;
        }
        st.mem_used += bytes;
        if let Some(p) = st.procs.get_mut(&pid) {
            p.mem += bytes;
        }
        true
    }

    /// How many OOM kills there were so far.
    pub(crate) fn oom_kills(&self) -> u64 {
        self.lock().oom_kills
    }

    /// Adds CPU time used by any process; returns how long the caller must
    /// sleep to stay within the CPU bandwidth limit.
    pub(crate) fn charge_cpu(&self, used: Duration) -> Option<Duration> {
        let mut st = self.lock();
        st.cpu_used += used;
        let cpus = st.limits.cpus()?;
        let allowed = st.cpu_since.elapsed().mul_f64(cpus);
        let ahead = st.cpu_used.checked_sub(allowed)?;
        Some(ahead.div_f64(cpus))
    }

    /// Removes a process that ended by itself.
    fn exited(&self, pid: u32) {
        let mut st = self.lock();
        if let Some(p) = st.procs.remove(&pid) {
            st.mem_used -= p.mem;
        }
    }
}

/// Runs `body` as process `pid` until it returns an exit code or a signal
/// ends it, then takes the process out of the table.
pub(crate) async fn run_as(machine: &Machine, pid: &Pid, body: impl Future<Output = i32>) -> Ended {
    let ended = tokio::select! {
        biased;
        sig = pid.killed() => Ended::Signaled(sig),
        code = body => Ended::Exited(code),
    };
    machine.exited(pid.pid);
    ended
}

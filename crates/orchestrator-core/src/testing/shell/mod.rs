//! The fake's shell: one virtual process's context ([`Ctx`]: its variables,
//! working directory, descriptors, CPU clock) and what it sees of the
//! machine (paths, `/proc`, `/dev`), so scripts run against the workspace's
//! in-memory files and process table the way `sh` runs on a real backend.
//!
//! A simple command runs inside the process that starts it; `( )`, `&` and a
//! command's top level are processes of their own (they count against the
//! pids limit and show in `/proc`). Pipeline stages run one after another,
//! each with the previous stage's whole output as its input.

mod exec;
mod parse;
pub(crate) mod programs;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::fs::{Node, SANDBOX_ROOT};
use super::machine::{Ended, ForkError, Machine, Pid, SIGKILL, SIGXCPU, SIGXFSZ};
use super::run::Job;
use crate::types::Stream;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a script stops early: `exit` (or `exec`) with this status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit(pub(crate) i32);

/// What a descriptor reads from.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// These bytes, then end of file.
    Data(Arc<Vec<u8>>),
    /// `/dev/zero`: zeros without end.
    Zero,
}

/// Where a descriptor writes to.
#[derive(Clone)]
pub(crate) enum Output {
    /// The command's captured stdout or stderr.
    Capture(Arc<Job>, Stream),
    /// A workspace file (resolved path), appended to.
    File(PathBuf),
    /// `/dev/null`.
    Null,
    /// A pipe or `$(...)`: collected for the next reader.
    Buffer(Arc<Mutex<Vec<u8>>>),
}

/// What a path names, as a command inside the sandbox sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Loc {
    /// A place in the workspace (which may not exist yet).
    Ws(PathBuf),
    /// `/dev/null`.
    Null,
    /// `/dev/zero`.
    Zero,
    /// `/proc`, or `/proc/PID`.
    Proc(Option<u32>),
    /// `/proc/PID/stat`.
    ProcStat(u32),
    /// Anything outside the workspace: the fake has nothing there.
    Outside,
}

/// One virtual process.
pub(crate) struct Ctx {
    pub(crate) machine: Arc<Machine>,
    pub(crate) pid: u32,
    pub(crate) group: u32,
    pub(crate) cwd: PathBuf,
    pub(crate) vars: BTreeMap<String, String>,
    pub(crate) exported: BTreeSet<String>,
    /// `$0`, `$1`, ...
    pub(crate) args: Vec<String>,
    /// `$?`.
    pub(crate) status: i32,
    pub(crate) stdin: Input,
    pub(crate) stdout: Output,
    pub(crate) stderr: Output,
    /// `$!`.
    pub(crate) last_bg: Option<u32>,
    /// Files this process holds open through redirections.
    pub(crate) open_files: u64,
    children: Vec<JoinHandle<Ended>>,
    cpu_used: Duration,
    running_since: Option<Instant>,
    group_cpu: Arc<Mutex<Duration>>,
}

impl Ctx {
    /// The first process of a command: its stdout and stderr go to `job`.
    pub(crate) fn leader(
        machine: Arc<Machine>,
        pid: &Pid,
        cwd: PathBuf,
        env: BTreeMap<String, String>,
        stdin: Vec<u8>,
        job: &Arc<Job>,
        group_cpu: &Arc<Mutex<Duration>>,
    ) -> Self {
        Self {
            machine,
            pid: pid.pid,
            group: pid.group,
            cwd,
            exported: env.keys().cloned().collect(),
            vars: env,
            args: vec!["sh".to_string()],
            status: 0,
            stdin: Input::Data(Arc::new(stdin)),
            stdout: Output::Capture(job.clone(), Stream::Stdout),
            stderr: Output::Capture(job.clone(), Stream::Stderr),
            last_bg: None,
            open_files: 0,
            children: Vec::new(),
            cpu_used: Duration::ZERO,
            running_since: Some(Instant::now()),
            group_cpu: group_cpu.clone(),
        }
    }

    /// A copy of this process's state for a child (`pid`), or for `$(...)`
    /// when `pid` is this process's own.
    pub(crate) fn child(&self, pid: u32) -> Self {
        Self {
            machine: self.machine.clone(),
            pid,
            group: self.group,
            cwd: self.cwd.clone(),
            vars: self.vars.clone(),
            exported: self.exported.clone(),
            args: self.args.clone(),
            status: self.status,
            stdin: self.stdin.clone(),
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
            last_bg: self.last_bg,
            open_files: self.open_files,
            children: Vec::new(),
            cpu_used: Duration::ZERO,
            running_since: Some(Instant::now()),
            group_cpu: self.group_cpu.clone(),
        }
    }

    /// Forks a child process in this process's group.
    pub(crate) fn fork(&mut self, name: &str) -> Result<(Ctx, Pid), String> {
        match self.machine.spawn(Some((self.pid, self.group)), name) {
            Ok(pid) => Ok((self.child(pid.pid), pid)),
            Err(ForkError::Limit) => Err("can't fork: Resource temporarily unavailable".into()),
            Err(ForkError::Closed) => Err("can't fork: the workspace is gone".into()),
        }
    }

    /// Remembers a background child for `wait`.
    pub(crate) fn adopt(&mut self, child: JoinHandle<Ended>) {
        self.children.push(child);
    }

    /// Waits for every background child; the last one's status.
    pub(crate) async fn wait_children(&mut self) -> i32 {
        let children = std::mem::take(&mut self.children);
        let mut status = 0;
        for c in children {
            status = match self.blocked(c).await {
                Ok(ended) => ended.shell_status(),
                Err(_) => 128 + SIGKILL,
            };
        }
        status
    }

    /// Runs the program in `argv` as this whole process.
    pub(crate) async fn run_argv(mut self, argv: Vec<String>) -> i32 {
        match programs::run(&mut self, &argv).await {
            Ok(code) | Err(Exit(code)) => code,
        }
    }

    // ----- CPU --------------------------------------------------------------

    fn charge(&mut self) -> Option<Duration> {
        let since = self.running_since?;
        let now = Instant::now();
        let used = now - since;
        self.running_since = Some(now);
        self.cpu_used += used;
        *self.group_cpu.lock().unwrap_or_else(|p| p.into_inner()) += used;
        self.machine.charge_cpu(used)
    }

    /// Where a running process can be stopped: charges the CPU it used
    /// (delivering SIGXCPU past the CPU time limit, sleeping off any excess
    /// over the CPU bandwidth limit) and lets a pending signal end it.
    pub(crate) async fn checkpoint(&mut self) {
        let throttle = self.charge();
        let cpu_limit = self.machine.lock().limits.cpu_time();
        if cpu_limit.is_some_and(|l| self.cpu_used >= l) {
            self.machine.signal(self.pid, SIGXCPU);
        }
        if let Some(d) = throttle {
            self.blocked(tokio::time::sleep(d)).await;
        }
        tokio::task::yield_now().await;
    }

    /// Awaits `f` as a process blocked in the kernel: no CPU is charged.
    pub(crate) async fn blocked<F: Future>(&mut self, f: F) -> F::Output {
        self.charge();
        self.running_since = None;
        let r = f.await;
        self.running_since = Some(Instant::now());
        r
    }

    // ----- paths ------------------------------------------------------------

    /// What `path` names from this process's working directory; with
    /// `follow_last` false a symlink in the last component is the link.
    pub(crate) fn locate(&self, path: &str, follow_last: bool) -> Loc {
        match path {
            "/dev/null" => return Loc::Null,
            "/dev/zero" => return Loc::Zero,
            "/proc" | "/proc/" => return Loc::Proc(None),
            _ => {}
        }
        if let Some(rest) = path.strip_prefix("/proc/") {
            let mut parts = rest.trim_end_matches('/').splitn(2, '/');
            let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
            return match (pid, parts.next()) {
                (Some(pid), None) => Loc::Proc(Some(pid)),
                (Some(pid), Some("stat")) => Loc::ProcStat(pid),
                _ => Loc::Outside,
            };
        }
        let p = Path::new(path);
        if p.is_absolute() && !p.starts_with(SANDBOX_ROOT) {
            return Loc::Outside;
        }
        let st = self.machine.lock();
        let r = if follow_last {
            st.fs.resolve(&self.cwd, p)
        } else {
            st.fs.resolve_parent(&self.cwd, p)
        };
        r.map(Loc::Ws).unwrap_or(Loc::Outside)
    }

    /// Is `loc` an existing directory?
    pub(crate) fn is_dir(&self, loc: &Loc) -> bool {
        match loc {
            Loc::Ws(p) => self.machine.lock().fs.is_dir(p),
            Loc::Proc(None) => true,
            Loc::Proc(Some(pid)) => self.machine.alive(*pid),
            _ => false,
        }
    }

    /// The entry at `loc`, for `test`; devices and `/proc` files count as
    /// non-empty files.
    pub(crate) fn node(&self, loc: &Loc) -> Option<Node> {
        match loc {
            Loc::Ws(p) => self.machine.lock().fs.get(p).cloned(),
            Loc::Null | Loc::Zero => Some(Node::File(vec![0])),
            Loc::Proc(_) if self.is_dir(loc) => Some(Node::Dir),
            Loc::ProcStat(pid) => self.machine.stat(*pid).map(|s| Node::File(s.into_bytes())),
            _ => None,
        }
    }

    /// Opens `path` for reading.
    pub(crate) fn open_read(&self, path: &str) -> Result<Input, &'static str> {
        match self.locate(path, true) {
            Loc::Ws(p) => match self.machine.lock().fs.read(&p) {
                Ok(d) => Ok(Input::Data(Arc::new(d.to_vec()))),
                Err(e) => Err(e.message()),
            },
            Loc::Null => Ok(Input::Data(Arc::default())),
            Loc::Zero => Ok(Input::Zero),
            Loc::ProcStat(pid) => match self.machine.stat(pid) {
                Some(s) => Ok(Input::Data(Arc::new(s.into_bytes()))),
                None => Err("No such file or directory"),
            },
            Loc::Proc(_) => Err("Is a directory"),
            Loc::Outside => Err("No such file or directory"),
        }
    }

    /// Opens `path` for writing (truncating unless `append`).
    pub(crate) fn open_write(&mut self, path: &str, append: bool) -> Result<Output, &'static str> {
        match self.locate(path, true) {
            Loc::Ws(p) => {
                let limit = self.machine.lock().limits.open_files();
                if limit.is_some_and(|l| 3 + self.open_files >= l) {
                    return Err("Too many open files");
                }
                let mut st = self.machine.lock();
                let r = if append {
                    st.fs.open_append(&p)
                } else {
                    st.fs.create(&p)
                };
                r.map_err(|e| e.message())?;
                self.open_files += 1;
                Ok(Output::File(p))
            }
            Loc::Null | Loc::Zero => Ok(Output::Null),
            Loc::Proc(_) | Loc::ProcStat(_) | Loc::Outside => Err("Permission denied"),
        }
    }

    // ----- output -----------------------------------------------------------

    /// Writes to descriptor 1 or 2; false when the write failed (the writer
    /// stops: its output cap or file size limit ended it).
    pub(crate) fn write(&mut self, fd: u8, data: &[u8]) -> bool {
        let out = if fd == 2 {
            self.stderr.clone()
        } else {
            self.stdout.clone()
        };
        self.write_to(&out, data)
    }

    /// Writes to an open output.
    pub(crate) fn write_to(&mut self, out: &Output, data: &[u8]) -> bool {
        match out {
            Output::Null => true,
            Output::Buffer(b) => {
                b.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(data);
                true
            }
            Output::Capture(job, stream) => {
                let ok = job.write(*stream, data);
                if !ok {
                    self.machine.kill_group(self.group, SIGKILL);
                }
                ok
            }
            Output::File(p) => {
                let mut st = self.machine.lock();
                let max = st.limits.file_size_bytes().unwrap_or(u64::MAX);
                match st.fs.append(p, data, max) {
                    Ok(n) if n == data.len() => true,
                    Ok(_) => {
                        drop(st);
                        self.machine.signal(self.pid, SIGXFSZ);
                        false
                    }
                    Err(_) => false,
                }
            }
        }
    }

    /// Writes a message to stderr.
    pub(crate) fn warn(&mut self, msg: impl AsRef<str>) {
        let line = format!("{}\n", msg.as_ref());
        self.write(2, line.as_bytes());
    }
}

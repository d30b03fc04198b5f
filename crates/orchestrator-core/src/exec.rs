//! Shared exec plumbing: how a command is resolved against its workspace's
//! limits, how its output is captured, how newly applied limits overlay the
//! ones in force, and how a finished command becomes a process snapshot.
//!
//! Every backend runs commands through these, so "the smaller of the
//! command's and the workspace's timeout", "64 MiB kept when no output limit
//! is set" or "PATH, HOME and LANG, then the caller's variables" mean the
//! same thing whichever backend runs the command.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::limits::ResourceLimits;
use crate::paths::SandboxPath;
use crate::types::{
    CappedBuffer, CommandSpec, ExecOutput, ExitStatus, OutputSink, ProcessSnapshot, Stream,
};

/// PATH of a command whose caller sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// LANG of a command whose caller sets none.
pub const DEFAULT_LANG: &str = "C.UTF-8";

/// Output kept per stream when no output limit is set: enough for any
/// sane program, bounded so a chatty one cannot exhaust the service's
/// memory. Beyond it the rest is dropped and the command goes on.
pub const DEFAULT_OUTPUT_CAP: u64 = 64 << 20;

/// The base environment of a sandbox: PATH, HOME (`home`, the workspace as
/// the sandbox sees it) and LANG. Never the service's own environment.
pub fn base_environment(home: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
    env.insert("HOME".to_string(), home.to_string());
    env.insert("LANG".to_string(), DEFAULT_LANG.to_string());
    env
}

/// The environment a command starts with: the [`base_environment`], then
/// the caller's variables, which win.
pub fn command_environment(home: &str, cmd: &CommandSpec) -> BTreeMap<String, String> {
    let mut env = base_environment(home);
    for (k, v) in cmd.env() {
        env.insert(k.clone(), v.clone());
    }
    env
}

/// The smaller of two optional bounds (a bound that is set wins over none).
pub fn min_bound<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How much output a command keeps per stream and whether going over ends
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCap {
    /// Bytes kept per stream.
    pub bytes: u64,
    /// A limit was requested: going over stops the command
    /// ([`ExitStatus::OutputLimitExceeded`]). Without one, the rest is
    /// dropped and the command goes on.
    pub enforced: bool,
}

/// A command resolved against its workspace's limits: what every backend
/// derives from a [`CommandSpec`] and the limits in force before it spawns.
#[derive(Debug, Clone)]
pub struct ResolvedCommand {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The complete environment ([`command_environment`]).
    pub env: BTreeMap<String, String>,
    /// The working directory, relative to the workspace (`None`: its root).
    pub workdir: Option<SandboxPath>,
    /// Bytes for stdin.
    pub stdin: Option<Vec<u8>>,
    /// The wall timeout: the smaller of the command's and the workspace's.
    pub timeout: Option<Duration>,
    /// The output cap: the smaller of the command's and the workspace's.
    pub output_cap: OutputCap,
    /// Live output.
    pub sink: Option<OutputSink>,
}

impl ResolvedCommand {
    /// Resolves `cmd` against `limits`; `home` is the workspace as the
    /// command sees it (a host directory, `/workspace` in a container).
    pub fn new(cmd: &CommandSpec, limits: &ResourceLimits, home: &str) -> Self {
        let requested = min_bound(cmd.output_limit(), limits.output_bytes());
        Self {
            argv: cmd.argv().to_vec(),
            env: command_environment(home, cmd),
            workdir: cmd.workdir().cloned(),
            stdin: cmd.stdin().map(<[u8]>::to_vec),
            timeout: min_bound(cmd.timeout(), limits.wall_timeout()),
            output_cap: OutputCap {
                bytes: requested.unwrap_or(DEFAULT_OUTPUT_CAP),
                enforced: requested.is_some(),
            },
            sink: cmd.output().cloned(),
        }
    }
}

/// Captured output of both streams, capped, with live emission. With a
/// requested output limit the sink sees what is kept (the command stops at
/// the cap); without one the cap only bounds what is kept in memory, so the
/// sink sees every byte (a live terminal is not cut at 64 MiB).
#[derive(Debug, Clone)]
pub struct OutputCapture {
    stdout: CappedBuffer,
    stderr: CappedBuffer,
    cap: OutputCap,
    sink: Option<OutputSink>,
}

impl OutputCapture {
    /// A capture with this cap and optional live sink.
    pub fn new(cap: OutputCap, sink: Option<OutputSink>) -> Self {
        Self {
            stdout: CappedBuffer::new(cap.bytes),
            stderr: CappedBuffer::new(cap.bytes),
            cap,
            sink,
        }
    }

    /// A capture for a resolved command.
    pub fn for_command(cmd: &ResolvedCommand) -> Self {
        Self::new(cmd.output_cap, cmd.sink.clone())
    }

    /// Nothing captured and nothing to keep (a process that never started).
    pub fn empty() -> Self {
        Self::new(
            OutputCap {
                bytes: 0,
                enforced: false,
            },
            None,
        )
    }

    /// Takes one chunk: keeps what fits and emits it live (the kept part
    /// under a requested limit, all of it otherwise). Returns true when the
    /// stream went over a requested limit (the caller stops the command).
    pub fn push(&mut self, stream: Stream, chunk: &[u8]) -> bool {
        let buf = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let kept = buf.push(chunk);
        if let Some(sink) = &self.sink {
            sink.emit(stream, if self.cap.enforced { kept } else { chunk });
        }
        self.cap.enforced && buf.truncated()
    }

    /// The cap in force.
    pub fn cap(&self) -> OutputCap {
        self.cap
    }

    /// Whether an enforced cap was exceeded on either stream.
    pub fn exceeded(&self) -> bool {
        self.cap.enforced && (self.stdout.truncated() || self.stderr.truncated())
    }

    /// Output so far, as a snapshot with this status.
    pub fn snapshot(&self, status: Option<ExitStatus>) -> ProcessSnapshot {
        ProcessSnapshot {
            status,
            stdout: self.stdout.data().to_vec(),
            stderr: self.stderr.data().to_vec(),
            stdout_truncated: self.stdout.truncated(),
            stderr_truncated: self.stderr.truncated(),
        }
    }

    /// The final result: the captured streams with this status and
    /// accounting.
    pub fn finish(
        self,
        status: ExitStatus,
        wall_time: Duration,
        cpu_time: Option<Duration>,
        peak_memory: Option<u64>,
    ) -> ExecOutput {
        let (stdout, stdout_truncated) = self.stdout.into_parts();
        let (stderr, stderr_truncated) = self.stderr.into_parts();
        ExecOutput {
            status,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            wall_time,
            cpu_time,
            peak_memory,
        }
    }
}

impl From<&ExecOutput> for ProcessSnapshot {
    fn from(out: &ExecOutput) -> Self {
        ProcessSnapshot {
            status: Some(out.status.clone()),
            stdout: out.stdout.clone(),
            stderr: out.stderr.clone(),
            stdout_truncated: out.stdout_truncated,
            stderr_truncated: out.stderr_truncated,
        }
    }
}

impl From<ExecOutput> for ProcessSnapshot {
    fn from(out: ExecOutput) -> Self {
        ProcessSnapshot {
            status: Some(out.status),
            stdout: out.stdout,
            stderr: out.stderr,
            stdout_truncated: out.stdout_truncated,
            stderr_truncated: out.stderr_truncated,
        }
    }
}

/// Whole seconds for a CPU-time limit, rounded up so a limit is never
/// tighter than asked (setrlimit and ulimit count whole seconds).
pub fn cpu_seconds(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn limits() -> ResourceLimits {
        ResourceLimits::builder()
            .wall_timeout(Duration::from_secs(10))
            .output_bytes(100)
            .build()
            .unwrap()
    }

    #[test]
    fn resolution_takes_the_smaller_bounds_and_a_clean_environment() {
        let cmd = CommandSpec::new(["echo", "hi"])
            .env("PATH", "/custom")
            .env("X", "1")
            .timeout(Duration::from_secs(20))
            .output_limit(50)
            .build()
            .unwrap();
        let r = ResolvedCommand::new(&cmd, &limits(), "/workspace");
        assert_eq!(r.timeout, Some(Duration::from_secs(10)));
        assert_eq!(
            r.output_cap,
            OutputCap {
                bytes: 50,
                enforced: true
            }
        );
        assert_eq!(r.env["PATH"], "/custom");
        assert_eq!(r.env["HOME"], "/workspace");
        assert_eq!(r.env["LANG"], DEFAULT_LANG);
        assert_eq!(r.env["X"], "1");
        assert_eq!(r.env.len(), 4);

        let bare = CommandSpec::new(["true"]).build().unwrap();
        let r = ResolvedCommand::new(&bare, &ResourceLimits::default(), "/h");
        assert_eq!(r.timeout, None);
        assert_eq!(
            r.output_cap,
            OutputCap {
                bytes: DEFAULT_OUTPUT_CAP,
                enforced: false
            }
        );
        assert_eq!(r.env["PATH"], DEFAULT_PATH);
    }

    #[test]
    fn capture_caps_emits_and_reports() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let sink = OutputSink::new(move |st, d| s2.lock().unwrap().push((st, d.to_vec())));
        let mut c = OutputCapture::new(
            OutputCap {
                bytes: 4,
                enforced: true,
            },
            Some(sink),
        );
        assert!(!c.push(Stream::Stdout, b"ab"));
        assert!(c.push(Stream::Stdout, b"cdef"));
        assert!(c.exceeded());
        assert!(!c.push(Stream::Stderr, b"e"));
        let snap = c.snapshot(None);
        assert_eq!(snap.stdout, b"abcd");
        assert!(snap.stdout_truncated && !snap.stderr_truncated);
        let out = c.finish(ExitStatus::OutputLimitExceeded, Duration::ZERO, None, None);
        assert_eq!(out.stdout, b"abcd");
        assert_eq!(out.stderr, b"e");
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (Stream::Stdout, b"ab".to_vec()),
                (Stream::Stdout, b"cd".to_vec()),
                (Stream::Stderr, b"e".to_vec())
            ]
        );
        let snap: ProcessSnapshot = (&out).into();
        assert_eq!(snap.status, Some(ExitStatus::OutputLimitExceeded));
    }

    #[test]
    fn unenforced_cap_drops_without_stopping_and_streams_everything() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let sink = OutputSink::new(move |_, d| s2.lock().unwrap().extend_from_slice(d));
        let mut c = OutputCapture::new(
            OutputCap {
                bytes: 1,
                enforced: false,
            },
            Some(sink),
        );
        assert!(!c.push(Stream::Stdout, b"xyz"));
        assert!(!c.exceeded());
        let snap = c.snapshot(None);
        assert!(snap.stdout_truncated);
        assert_eq!(snap.stdout, b"x");
        assert_eq!(*seen.lock().unwrap(), b"xyz");
    }

    #[test]
    fn cpu_seconds_round_up() {
        assert_eq!(cpu_seconds(Duration::from_millis(1)), 1);
        assert_eq!(cpu_seconds(Duration::from_secs(2)), 2);
        assert_eq!(cpu_seconds(Duration::from_millis(2001)), 3);
    }
}

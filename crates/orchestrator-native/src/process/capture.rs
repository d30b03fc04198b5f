//! Capturing a command's output: capped per stream, shared with observers
//! of a background process, handed to the live sink as it arrives.

use std::sync::{Arc, Mutex};

use orchestrator_core::{CappedBuffer, ExitStatus, OutputSink, ProcessSnapshot, Stream};
use tokio::io::AsyncReadExt;

/// Output captured so far, shared between the driver and observers.
#[derive(Debug)]
pub(crate) struct Shared {
    capture: Mutex<(CappedBuffer, CappedBuffer)>,
    /// The cap is a requested limit (see [`super::spawn::SpawnPlan::enforce_cap`]).
    pub enforce: bool,
}

impl Shared {
    /// Nothing captured (a process that never started).
    pub fn empty() -> Self {
        Self::new(0, false)
    }

    pub(crate) fn new(cap: u64, enforce: bool) -> Self {
        Self {
            capture: Mutex::new((CappedBuffer::new(cap), CappedBuffer::new(cap))),
            enforce,
        }
    }

    /// Output so far.
    pub fn snapshot(&self, status: Option<ExitStatus>) -> ProcessSnapshot {
        let g = self.capture.lock().unwrap_or_else(|p| p.into_inner());
        ProcessSnapshot {
            status,
            stdout: g.0.data().to_vec(),
            stderr: g.1.data().to_vec(),
            stdout_truncated: g.0.truncated(),
            stderr_truncated: g.1.truncated(),
        }
    }

    /// Takes everything captured (stdout, stderr), leaving empty buffers.
    pub(crate) fn take(&self) -> (CappedBuffer, CappedBuffer) {
        let mut g = self.capture.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *g)
    }
}

/// The largest read buffer of an output stream.
const READ_BUF_MAX: usize = 64 * 1024;

/// Reads a command's stdout and stderr until both end, into `shared` and
/// the live sink. One future for both streams, polled by the driver
/// itself: no task per stream and no wake-ups between tasks, which cost
/// throughput on short commands. Returns true when a requested output
/// limit was exceeded (reading stops there: the writer gets EPIPE and the
/// driver kills it). A stream that ended stays open until both have, so
/// the descriptors the driver noted at spawn stay valid while this future
/// is pending.
pub(crate) async fn read_output(
    mut stdout: Option<tokio::process::ChildStdout>,
    mut stderr: Option<tokio::process::ChildStderr>,
    shared: Arc<Shared>,
    sink: Option<OutputSink>,
) -> bool {
    // Most commands print little: start small, grow while reads fill the
    // buffer (zeroing 64 KiB per stream up front is measurable per command).
    let mut out_buf = vec![0u8; 4 * 1024];
    let mut err_buf = vec![0u8; 4 * 1024];
    let (mut out_open, mut err_open) = (stdout.is_some(), stderr.is_some());
    loop {
        // Both reads are cancel-safe: the one that loses the race has
        // consumed nothing.
        let (stream, read) = tokio::select! {
            r = async { stdout.as_mut()?.read(&mut out_buf).await.ok() }, if out_open => {
                (Stream::Stdout, r)
            }
            r = async { stderr.as_mut()?.read(&mut err_buf).await.ok() }, if err_open => {
                (Stream::Stderr, r)
            }
            else => return false,
        };
        let (buf, n) = match (stream, read) {
            (Stream::Stdout, Some(n)) if n > 0 => (&mut out_buf, n),
            (Stream::Stderr, Some(n)) if n > 0 => (&mut err_buf, n),
            // End of the stream (or an error: nothing more will come).
            (Stream::Stdout, _) => {
                out_open = false;
                continue;
            }
            (Stream::Stderr, _) => {
                err_open = false;
                continue;
            }
        };
        let over = {
            let mut g = shared.capture.lock().unwrap_or_else(|p| p.into_inner());
            let b = match stream {
                Stream::Stdout => &mut g.0,
                Stream::Stderr => &mut g.1,
            };
            let kept = b.push(&buf[..n]);
            if let Some(s) = &sink {
                s.emit(stream, if shared.enforce { kept } else { &buf[..n] });
            }
            b.truncated() && shared.enforce
        };
        if over {
            return true;
        }
        if n == buf.len() && buf.len() < READ_BUF_MAX {
            buf.resize(buf.len() * 4, 0);
        }
    }
}

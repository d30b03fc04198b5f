//! Capturing a command's output: capped per stream, shared with observers
//! of a background process, handed to the live sink as it arrives.

use std::sync::{Arc, Mutex};

use orchestrator_core::exec::{OutputCap, OutputCapture};
use orchestrator_core::{ExitStatus, OutputSink, ProcessSnapshot, Stream};
use tokio::io::AsyncReadExt;

use crate::process::spawn::OutputPipe;
use crate::sync::lock;

/// Output captured so far, shared between the driver and observers.
#[derive(Debug)]
pub(crate) struct Shared {
    capture: Mutex<OutputCapture>,
}

impl Shared {
    /// Nothing captured (a process that never started).
    pub fn empty() -> Self {
        Self {
            capture: Mutex::new(OutputCapture::empty()),
        }
    }

    /// A capture with this cap, emitting live to `sink`.
    pub(crate) fn new(cap: OutputCap, sink: Option<OutputSink>) -> Self {
        Self {
            capture: Mutex::new(OutputCapture::new(cap, sink)),
        }
    }

    /// Takes one chunk; true when it went over a requested limit.
    fn push(&self, stream: Stream, chunk: &[u8]) -> bool {
        lock(&self.capture).push(stream, chunk)
    }

    /// Output so far.
    pub fn snapshot(&self, status: Option<ExitStatus>) -> ProcessSnapshot {
        lock(&self.capture).snapshot(status)
    }

    /// Takes everything captured, leaving an empty capture.
    pub(crate) fn take(&self) -> OutputCapture {
        std::mem::replace(&mut *lock(&self.capture), OutputCapture::empty())
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
    mut stdout: Option<OutputPipe>,
    mut stderr: Option<OutputPipe>,
    shared: Arc<Shared>,
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
        if shared.push(stream, &buf[..n]) {
            return true;
        }
        if n == buf.len() && buf.len() < READ_BUF_MAX {
            buf.resize(buf.len() * 4, 0);
        }
    }
}

//! A command's captured output: each stream kept up to its cap, handed to
//! the live sink as it arrives, and whether going over the cap stops the
//! command.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::{CappedBuffer, ExecOutput, ExitStatus, OutputSink, Stream};

use crate::container::lock;

/// Output captured so far (shared with `process_status`).
#[derive(Debug, Default)]
pub(crate) struct Capture {
    pub stdout: CappedBuffer,
    pub stderr: CappedBuffer,
    /// The cap is a requested limit (going over stops the command).
    pub enforce: bool,
}

impl Capture {
    pub fn new(cap: u64, enforce: bool) -> Self {
        Self {
            stdout: CappedBuffer::new(cap),
            stderr: CappedBuffer::new(cap),
            enforce,
        }
    }

    /// The result of a command that ended with `status` after `wall`,
    /// with the output kept so far.
    pub fn output(&self, status: ExitStatus, wall: Duration) -> ExecOutput {
        ExecOutput {
            status,
            stdout: self.stdout.data().to_vec(),
            stderr: self.stderr.data().to_vec(),
            stdout_truncated: self.stdout.truncated(),
            stderr_truncated: self.stderr.truncated(),
            wall_time: wall,
            cpu_time: None,
            peak_memory: None,
        }
    }
}

/// Stores a chunk; true when it went over the cap.
pub(super) fn on_chunk(
    capture: &Arc<Mutex<Capture>>,
    sink: Option<&OutputSink>,
    stream: Stream,
    data: &[u8],
) -> bool {
    let (kept, over) = {
        let mut c = lock(capture);
        let enforce = c.enforce;
        let buf = match stream {
            Stream::Stdout => &mut c.stdout,
            Stream::Stderr => &mut c.stderr,
        };
        let kept = buf.push(data);
        let over = buf.truncated() && enforce;
        // Without a requested limit live output sees everything.
        let shown = if enforce {
            kept.to_vec()
        } else {
            data.to_vec()
        };
        (shown, over)
    };
    if let Some(s) = sink {
        s.emit(stream, &kept);
    }
    over
}

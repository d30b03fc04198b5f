//! Waiting for SIGINT / SIGTERM / SIGHUP, so `runbox run` can tear its
//! sandbox down before it exits.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves with the signal number when runbox is asked to stop. When no
/// handler can be installed, never resolves.
pub async fn terminated() -> i32 {
    let kinds = [
        (SignalKind::interrupt(), libc_sig::SIGINT),
        (SignalKind::terminate(), libc_sig::SIGTERM),
        (SignalKind::hangup(), libc_sig::SIGHUP),
    ];
    let mut streams = Vec::new();
    for (k, n) in kinds {
        match signal(k) {
            Ok(s) => streams.push((s, n)),
            Err(e) => tracing::warn!(error = %e, "cannot install a signal handler"),
        }
    }
    if streams.is_empty() {
        std::future::pending::<()>().await;
    }
    let (mut a, na) = streams.remove(0);
    let mut rest = streams;
    let (mut b, nb) = rest.pop().map(|(s, n)| (Some(s), n)).unwrap_or((None, 0));
    let (mut c, nc) = rest.pop().map(|(s, n)| (Some(s), n)).unwrap_or((None, 0));
    async fn maybe(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        _ = a.recv() => na,
        _ = maybe(&mut b) => nb,
        _ = maybe(&mut c) => nc,
    }
}

/// Signal numbers (Linux), without a libc dependency.
mod libc_sig {
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
}

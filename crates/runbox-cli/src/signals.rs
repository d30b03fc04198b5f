//! SIGINT / SIGTERM / SIGHUP handling, so `runbox run` can tear its sandbox
//! down before it exits.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Handlers installed for the signals that ask runbox to stop. Install them
/// before anything is provisioned, so no signal ends runbox uncleanly.
pub struct Terminations {
    handlers: Vec<(Signal, i32)>,
}

impl Terminations {
    /// Installs the handlers (a failure is logged; that signal then keeps its
    /// default action).
    pub fn install() -> Self {
        let mut handlers = Vec::new();
        for (kind, number) in [
            (SignalKind::interrupt(), 2),
            (SignalKind::terminate(), 15),
            (SignalKind::hangup(), 1),
        ] {
            match signal(kind) {
                Ok(s) => handlers.push((s, number)),
                Err(e) => {
                    tracing::warn!(error = %e, signal = number, "cannot install a signal handler")
                }
            }
        }
        Self { handlers }
    }

    /// Resolves with the number of the first signal received.
    pub async fn received(&mut self) -> i32 {
        if self.handlers.is_empty() {
            return std::future::pending().await;
        }
        std::future::poll_fn(|cx| {
            for (s, n) in self.handlers.iter_mut() {
                if s.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*n);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

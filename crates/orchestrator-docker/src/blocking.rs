//! Running async cleanup from synchronous code (a `Drop`): on a helper
//! thread with a runtime of its own, so it works while the caller's runtime
//! shuts down, and waited for at most a budget.

use std::future::Future;
use std::time::Duration;

/// Runs `work` on a thread named `name` and waits for it at most `budget`
/// (after that the thread finishes on its own, or ends with the process).
pub(crate) fn run_bounded(
    name: &str,
    budget: Duration,
    work: impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(work);
            let _ = tx.send(());
        });
    if spawned.is_ok() {
        let _ = rx.recv_timeout(budget);
    }
}

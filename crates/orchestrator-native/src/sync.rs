//! Running the backend's blocking work from async code: the blocking pool,
//! inline when the work is small, and locks that survive a panicked holder.

use std::sync::Mutex;

use orchestrator_core::Result;

use crate::error::NativeOrchestratorError;

/// Locks `m`, also after a holder panicked: one panicked task must not
/// leave a workspace that can no longer be used or cleaned up.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` inline when `quick`, else on the blocking pool: work this small
/// (a few syscalls on small files) costs less than a trip through the pool.
pub(crate) async fn maybe_blocking<T: Send + 'static>(
    quick: bool,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if quick {
        f()
    } else {
        blocking(f).await
    }
}

/// Runs `f` on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NativeOrchestratorError::Task(e.to_string()))?
}

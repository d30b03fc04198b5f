//! The service's memory per live idle workspace (RSS growth, and the heap
//! in use as the finer measure).

use execution_service::{ExecutionRequest, ExecutionService, StartOptions};

use super::{figure, Figure};
use crate::timed::{heap_bytes, rss_bytes};
use crate::{BoxError, Opts};

/// RSS growth per live idle workspace of `service` (100 or 1000 live).
pub async fn per_live_workspace(o: &Opts, service: &ExecutionService) -> Result<Figure, BoxError> {
    let live = if o.quick { 100 } else { 1000 };
    // Warm the allocator and the service's maps first.
    let mut ids = Vec::new();
    for _ in 0..10 {
        let id = service.submit(ExecutionRequest::sandbox_only()).await?;
        service.start(&id, StartOptions::default()).await?;
        ids.push(id);
    }
    for id in ids.drain(..) {
        service.complete(&id, Default::default()).await?;
    }
    // Hand memory freed by the earlier phases back to the system first:
    // otherwise the new workspaces fit in the allocator's free lists, RSS
    // barely moves and the figure swings from run to run.
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
    let before = rss_bytes();
    let heap_before = heap_bytes();
    for _ in 0..live {
        let id = service.submit(ExecutionRequest::sandbox_only()).await?;
        service.start(&id, StartOptions::default()).await?;
        ids.push(id);
    }
    let after = rss_bytes();
    let heap_after = heap_bytes();
    for id in &ids {
        service.complete(id, Default::default()).await?;
    }
    let per = after.saturating_sub(before) as f64 / live as f64 / 1024.0;
    let mut f = figure(
        &format!("service RSS growth per live idle workspace ({live} live)"),
        "KiB",
        vec![per],
    );
    // RSS moves in pages and the allocator reuses freed ones; the heap in
    // use (glibc's mallinfo2) is the finer measure of the same thing.
    f.note = Some(format!(
        "RSS {} KiB -> {} KiB; heap in use {:.1} KiB per workspace",
        before / 1024,
        after / 1024,
        heap_after.saturating_sub(heap_before) as f64 / live as f64 / 1024.0
    ));
    Ok(f)
}

//! SIGINT/SIGTERM to xtask become a flag the swarm tasks poll, so an
//! interrupted run stops its current step and still tears the cluster down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Replaces the default action of SIGINT and SIGTERM (death) with setting
/// the flag, for the rest of the process. Returns once the handlers are in
/// place, so no signal slips through between this call and the work.
pub fn install() -> Result<()> {
    let (tx, rx) = mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("swarm-signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let (mut int, mut term) = match (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) {
                    (Ok(i), Ok(t)) => (i, t),
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(()));
                loop {
                    let name = tokio::select! {
                        _ = int.recv() => "SIGINT",
                        _ = term.recv() => "SIGTERM",
                    };
                    REQUESTED.store(true, Ordering::SeqCst);
                    eprintln!("xtask swarm: {name} received: stopping, then tearing down");
                }
            });
        })
        .context("starting the signal thread")?;
    rx.recv()
        .context("the signal thread ended early")?
        .context("installing SIGINT/SIGTERM handlers")
}

/// True once SIGINT or SIGTERM arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Fails once SIGINT or SIGTERM arrived: called between steps.
pub fn check() -> Result<()> {
    if requested() {
        bail!("interrupted by a signal");
    }
    Ok(())
}

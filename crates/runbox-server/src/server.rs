//! The server's life: check the configuration, open the records, recover
//! what a dead server left (before serving anything), accept connections
//! (HTTP/1.1 with a header read timeout, a bounded number at once), reap
//! sandboxes past their TTL, and on shutdown drain, cancel and remove
//! everything.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use execution_service::{ExecutionStore, SqliteStore};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::admission::Admission;
use crate::auth::Tokens;
use crate::backends::{BackendKey, Backends};
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::state::{lock, App, Inner, Runs};

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 1024;
/// How often the reaper looks for sandboxes past their TTL.
const REAP_EVERY: Duration = Duration::from_millis(500);
/// How long recovery of one backend may take at start.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);
/// Name of the SQLite file in the state directory (the CLI's too).
pub const DB_FILE: &str = "runbox.db";

fn state_err(path: &std::path::Path, e: impl std::fmt::Display) -> ServerError {
    ServerError::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Builds the shared state: checks the configuration, opens the store and
/// a clean scratch space.
pub fn open(config: ServerConfig) -> Result<App, ServerError> {
    use std::os::unix::fs::DirBuilderExt;
    let tokens = Tokens::new(&config.tokens);
    if !tokens.enabled() && !config.listen.ip().is_loopback() {
        return Err(ServerError::Unauthenticated(config.listen));
    }
    if config.max_concurrency == 0 {
        return Err(ServerError::Config(
            "--max-concurrency must be at least 1".into(),
        ));
    }
    if config.sandbox_ttl.is_zero() || config.max_sandbox_ttl.is_zero() {
        return Err(ServerError::Config("sandbox TTLs must be above 0".into()));
    }
    if config.sandbox_ttl > config.max_sandbox_ttl {
        return Err(ServerError::Config(
            "--sandbox-ttl is above --max-sandbox-ttl".into(),
        ));
    }
    let dir = &config.state_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| state_err(dir, e))?;
    // Uploads and downloads of a previous life are of no use to anyone.
    let scratch = dir.join("scratch");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(|e| state_err(&scratch, e))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&scratch)
        .map_err(|e| state_err(&scratch, e))?;
    let db = dir.join(DB_FILE);
    let store: Arc<dyn ExecutionStore> =
        Arc::new(SqliteStore::open(&db).map_err(|e| state_err(&db, e))?);
    let admission = Admission::new(config.max_concurrency, config.max_queue);
    Ok(App(Arc::new(Inner {
        tokens,
        backends: Backends::new(store.clone()),
        store,
        admission,
        metrics: Metrics::default(),
        scratch,
        runs: Mutex::new(Runs::default()),
        sandboxes: Mutex::new(Default::default()),
        making: Mutex::new(Default::default()),
        tasks: tokio_util::task::TaskTracker::new(),
        closing: Default::default(),
        config,
    })))
}

/// Reaps what a dead server left: every registered backend's orphaned
/// sandboxes, and records still active whose owner is gone.
pub async fn recover(app: &App) {
    for reg in orchestrator_core::registry::backends() {
        let served = match app.backends.get(&BackendKey::plain(reg.name)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(backend = reg.name, error = %e.detail, "not recovered: backend not made");
                continue;
            }
        };
        if !crate::service::availability(served.orch.as_ref())
            .await
            .is_available()
        {
            tracing::info!(backend = reg.name, "not recovered: backend unavailable");
            continue;
        }
        match tokio::time::timeout(RECOVERY_DEADLINE, served.service.recover()).await {
            Ok(Ok(report)) => tracing::info!(backend = reg.name, ?report, "recovered"),
            Ok(Err(e)) => tracing::warn!(backend = reg.name, error = %e, "recovery failed"),
            Err(_) => tracing::warn!(backend = reg.name, "recovery timed out"),
        }
    }
}

async fn reaper(app: App) {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        let now = SystemTime::now();
        let expired: Vec<_> = lock(&app.sandboxes)
            .values()
            .filter(|s| *lock(&s.expires) <= now)
            .cloned()
            .collect();
        for sb in expired {
            // Its TTL may have been extended since the look above.
            if *lock(&sb.expires) > SystemTime::now() {
                continue;
            }
            tracing::info!(sandbox = %sb.id, "past its TTL: removing");
            if crate::sandboxes::remove(&app, &sb).await.is_ok() {
                app.metrics.sandbox_reaped();
            }
        }
    }
}

/// Stops everything: refuse new work, let running commands go on for the
/// grace period, cancel what is left, remove every sandbox, and wait for
/// the teardowns.
pub async fn drain(app: &App) {
    app.closing.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + app.config.shutdown_grace;
    // Runs and sandbox execs alike hold a slot while they execute.
    while Instant::now() < deadline
        && (!lock(&app.runs).live().is_empty() || app.admission.in_flight() > 0)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.admission.close();
    let live = lock(&app.runs).live();
    let mut cancels = Vec::new();
    for cell in live {
        if let Some(t) = lock(&cell.task).as_ref() {
            t.abort();
        }
        // Runs driven inline by a waiting handler end through their record.
        let svc = cell.served.service.clone();
        cancels.push(tokio::spawn(async move {
            let _ = svc.cancel(&cell.id).await;
            cell.finish(
                crate::result::RunPhase::Cancelled,
                None,
                Some("the server shut down".into()),
            );
        }));
    }
    for c in cancels {
        let _ = tokio::time::timeout(Duration::from_secs(15), c).await;
    }
    let sandboxes: Vec<_> = lock(&app.sandboxes).values().cloned().collect();
    for sb in sandboxes {
        let _ = crate::sandboxes::remove(app, &sb).await;
    }
    app.tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(30), app.tasks.wait()).await;
    // Whatever was being made while the first pass ran.
    let late: Vec<_> = lock(&app.sandboxes).values().cloned().collect();
    for sb in late {
        let _ = crate::sandboxes::remove(app, &sb).await;
    }
    for served in app.backends.all() {
        let _ =
            tokio::time::timeout(Duration::from_secs(15), served.service.wait_for_cleanups()).await;
    }
}

/// Serves until `shutdown` resolves, then drains; `on_listening` is told
/// the bound address once recovery is done and connections are accepted.
pub async fn serve_until(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServerError> {
    let app = open(config)?;
    let addr = app.config.listen;
    // Bound first, so a taken port fails at once; connections wait in the
    // backlog until recovery is done.
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    recover(&app).await;
    let local = listener.local_addr().unwrap_or(addr);
    let router = crate::router::router(app.clone());
    let reap = tokio::spawn(reaper(app.clone()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let conns = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(app.config.header_timeout)
        .keep_alive(true);
    on_listening(local);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = conns.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down");
    drain(&app).await;
    reap.abort();
    // Connections still open (an event stream, an idle keep-alive) get a
    // moment to finish what they were sending.
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
    Ok(())
}

/// Serves until SIGTERM or SIGINT, printing the address on stderr once
/// ready.
pub async fn serve(config: ServerConfig) -> Result<(), ServerError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| ServerError::Config(format!("cannot handle SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| ServerError::Config(format!("cannot handle SIGINT: {e}")))?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    };
    serve_until(config, stop, |a| {
        eprintln!("runbox serve: listening on http://{a}");
    })
    .await
}

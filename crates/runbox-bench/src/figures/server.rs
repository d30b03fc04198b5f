//! `runbox serve` against the service it wraps, in the same process and
//! run: `POST /v1/runs` of `true` over keep-alive HTTP against in-process
//! `ExecutionService::execute` of the same request (the same backend
//! configuration, store kind and limits: the server's default timeout and
//! output cap), one at a time and at concurrency 16; and the server's
//! resident memory per live idle sandbox.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use execution_service::{BackendPreference, ExecutionRequest, ExecutionService, SqliteStore};
use orchestrator_core::{registry, BackendOptions, ResourceLimits};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{against, figure, Figure};
use crate::{BoxError, Opts};

const CONCURRENCY: usize = 16;
const BODY: &[u8] = br#"{"argv": ["true"]}"#;

/// One keep-alive connection.
struct Conn(BufReader<TcpStream>);

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Self, BoxError> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Self(BufReader::new(s)))
    }

    /// A request; the status and body of the answer.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), BoxError> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // One write, as HTTP clients send a small request.
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        self.0.get_mut().write_all(&req).await?;
        let mut line = String::new();
        self.0.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.0.read_line(&mut line).await?;
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse()?;
                }
            }
        }
        let mut buf = vec![0; len];
        self.0.read_exact(&mut buf).await?;
        Ok((status, buf))
    }

    async fn run_true(&mut self) -> Result<(), BoxError> {
        let (status, body) = self.call("POST", "/v1/runs", BODY).await?;
        if status != 200 {
            return Err(format!(
                "POST /v1/runs: {status}: {}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        Ok(())
    }
}

fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(f64::NAN)
}

/// The figures.
pub async fn figures(o: &Opts) -> Result<Vec<Figure>, BoxError> {
    let dir = tempfile::tempdir()?;
    let mut config = runbox_server::ServerConfig::new(dir.path().join("server"));
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.max_concurrency = CONCURRENCY;
    config.max_queue = 1024;
    config.max_sandboxes_per_token = 1024;
    let caps = config.caps.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(runbox_server::serve_until(
        config,
        async move {
            let _ = stop_rx.await;
        },
        move |a| {
            let _ = addr_tx.send(a);
        },
    ));
    let addr = addr_rx.await?;

    // The baseline: the same request, in process.
    let orch = registry::create_with(
        "native",
        &BackendOptions::new().setting("isolation", "auto"),
    )?;
    let store = SqliteStore::open(dir.path().join("inproc.db"))?;
    let service = ExecutionService::builder()
        .store(store)
        .backend_named("native", orch)
        .default_backend("native")
        .build()?;
    let limits = ResourceLimits::builder()
        .wall_timeout(Duration::from_millis(caps.default_timeout_ms))
        .output_bytes(caps.default_output_bytes)
        .build()?;
    let request = move || {
        ExecutionRequest::new(["true"])
            .limits(limits.clone())
            .backend(BackendPreference::Named("native".into()))
            .label("runbox.server.owner", "bench")
            .label("runbox.server.kind", "run")
    };
    let (n, warm) = if o.quick { (30, 5) } else { (400, 40) };

    // One at a time, interleaved.
    let mut conn = Conn::open(addr).await?;
    for _ in 0..warm {
        conn.run_true().await?;
        service.execute(request()).await?;
    }
    let (mut http, mut inproc, mut health) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        conn.call("GET", "/healthz", b"").await?;
        health.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        conn.run_true().await?;
        http.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        service.execute(request()).await?;
        inproc.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut base = figure("in-process execute of true (server defaults)", "ms", inproc);
    base.note = Some("ExecutionService::execute, native isolation auto, SQLite records, the server's default timeout and output cap".into());
    let mut one = against(
        figure("HTTP POST /v1/runs of true, keep-alive", "ms", http),
        &base,
    );
    one.note = Some(format!(
        "p50 overhead {:.3} ms over in-process execute (target <= 0.2 ms)",
        one.p50 - base.p50
    ));

    let mut rtt = figure(
        "HTTP GET /healthz, keep-alive (the transport alone)",
        "ms",
        health,
    );
    rtt.note = Some("the same connection, interleaved with the runs".into());

    // Concurrency 16: rounds of each, interleaved.
    let (rounds, per) = if o.quick { (2, 4) } else { (5, 25) };
    let mut conns = Vec::new();
    for _ in 0..CONCURRENCY {
        conns.push(Conn::open(addr).await?);
    }
    let (mut http_rates, mut inproc_rates) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for mut c in conns.drain(..) {
            tasks.push(tokio::spawn(async move {
                for _ in 0..per {
                    c.run_true().await?;
                }
                Ok::<_, BoxError>(c)
            }));
        }
        for task in tasks {
            conns.push(task.await??);
        }
        http_rates.push((CONCURRENCY * per) as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CONCURRENCY {
            let svc = service.clone();
            let req = request.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..per {
                    svc.execute(req()).await?;
                }
                Ok::<_, BoxError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        inproc_rates.push((CONCURRENCY * per) as f64 / t.elapsed().as_secs_f64());
    }
    let rate_base = figure(
        "in-process execute of true, concurrency 16",
        "exec/s",
        inproc_rates,
    );
    let mut rate = against(
        figure(
            "HTTP POST /v1/runs of true, concurrency 16",
            "exec/s",
            http_rates,
        ),
        &rate_base,
    );
    rate.note =
        Some("16 keep-alive connections, --max-concurrency 16 (target >= 0.9x in-process)".into());

    // Memory per live idle sandbox.
    let count = if o.quick { 8 } else { 64 };
    // A fresh connection: the server closes keep-alive connections idle
    // longer than its header timeout.
    let mut conn = Conn::open(addr).await?;
    let before = rss_kib();
    let mut ids = Vec::new();
    for _ in 0..count {
        let (status, body) = conn.call("POST", "/v1/sandboxes", b"{}").await?;
        if status != 201 {
            return Err(format!(
                "POST /v1/sandboxes: {status}: {}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        ids.push(v["id"].as_str().unwrap_or_default().to_string());
    }
    let per_sandbox = (rss_kib() - before) / count as f64;
    for id in &ids {
        conn.call("DELETE", &format!("/v1/sandboxes/{id}"), b"")
            .await?;
    }
    let mut mem = figure("server RSS per live idle sandbox", "KiB", vec![per_sandbox]);
    mem.note = Some(format!(
        "resident memory of the server process (this one) grown by {count} idle sandboxes, divided by {count}; the sandboxes' own processes are not counted"
    ));

    let _ = stop_tx.send(());
    server.await??;
    Ok(vec![one, base, rtt, rate, rate_base, mem])
}

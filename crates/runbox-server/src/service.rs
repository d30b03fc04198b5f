//! The service routes: health, readiness, what the server offers
//! (`/v1/info`), Prometheus metrics and the OpenAPI document.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use orchestrator_core::{registry, Availability, Orchestrator};
use serde_json::json;

use crate::auth::Caller;
use crate::backends::{capabilities_json, BackendKey};
use crate::metrics::Gauges;
use crate::model::{BackendInfo, Health, Info};
use crate::problem::{ApiError, Problem};
use crate::state::{lock, App};

/// How long a backend may take to say whether it is available.
pub const AVAILABILITY_DEADLINE: Duration = Duration::from_secs(3);

/// Whether a backend can serve, asked within [`AVAILABILITY_DEADLINE`].
pub async fn availability(orch: &dyn Orchestrator) -> Availability {
    tokio::time::timeout(AVAILABILITY_DEADLINE, orch.is_available())
        .await
        .unwrap_or_else(|_| {
            Availability::unavailable(format!(
                "no answer within {} s",
                AVAILABILITY_DEADLINE.as_secs()
            ))
        })
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        reason: None,
    })
}

/// Readiness: the default backend can serve.
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The default backend is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(app): State<App>) -> Result<Json<Health>, ApiError> {
    app.check_open()?;
    let name = app.config.default_backend.clone();
    let served = app
        .backends
        .get(&BackendKey::plain(&name))
        .await
        .map_err(|e| {
            ApiError::unavailable(format!(
                "the default backend {name} is unavailable: {}",
                e.detail
            ))
        })?;
    match availability(served.orch.as_ref()).await {
        Availability::Unavailable { reason } => Err(ApiError::unavailable(format!(
            "the default backend {name} is unavailable: {reason}"
        ))),
        _ => Ok(Json(Health {
            status: "ok".into(),
            reason: None,
        })),
    }
}

/// The server: version, backends and caps.
#[utoipa::path(get, path = "/v1/info", tag = "service",
    responses(
        (status = 200, description = "The server", body = Info),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn info(State(app): State<App>, Caller(_): Caller) -> Json<Info> {
    let mut backends = Vec::new();
    for reg in registry::backends() {
        let (available, reason, caps) = match app.backends.get(&BackendKey::plain(reg.name)).await {
            Ok(s) => {
                let a = availability(s.orch.as_ref()).await;
                let caps = s.orch.capabilities();
                (a.is_available(), a.reason().map(str::to_string), Some(caps))
            }
            Err(e) => (false, Some(e.detail), None),
        };
        backends.push(BackendInfo {
            name: reg.name.to_string(),
            available,
            reason,
            capabilities: caps
                .as_ref()
                .map_or(serde_json::Value::Null, capabilities_json),
            isolation: json!({
                "default": "auto",
                "full_available": caps.as_ref().map(|c| c.isolation),
                "network_isolation": caps.as_ref().map(|c| c.network_isolation),
            }),
        });
    }
    let c = &app.config;
    let k = &c.caps;
    Json(Info {
        version: env!("CARGO_PKG_VERSION").into(),
        default_backend: c.default_backend.clone(),
        backends,
        caps: json!({
            "memory_bytes": k.memory_bytes,
            "cpus": k.cpus,
            "pids": k.pids,
            "timeout_ms": k.timeout_ms,
            "default_timeout_ms": k.default_timeout_ms,
            "cpu_time_ms": k.cpu_time_ms,
            "file_size_bytes": k.file_size_bytes,
            "open_files": k.open_files,
            "output_bytes": k.output_bytes,
            "default_output_bytes": k.default_output_bytes,
            "files": k.files,
            "collect_bytes": k.collect_bytes,
            "max_concurrency": c.max_concurrency,
            "max_queue": c.max_queue,
            "sandbox_ttl_s": c.sandbox_ttl.as_secs(),
            "max_sandbox_ttl_s": c.max_sandbox_ttl.as_secs(),
            "max_sandboxes_per_token": c.max_sandboxes_per_token,
            "json_body_bytes": c.json_body_limit,
            "file_bytes": c.file_limit,
        }),
    })
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
pub async fn metrics(State(app): State<App>) -> Response {
    let pools = app
        .backends
        .all()
        .iter()
        .filter_map(|s| s.orch.pool_stats().map(|p| (s.orch.name().to_string(), p)))
        .collect();
    let g = Gauges {
        in_flight: app.admission.in_flight(),
        queued: app.admission.queued(),
        sandboxes: lock(&app.sandboxes).len(),
        pools,
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(&g),
    )
        .into_response()
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)))]
pub async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| {
        use utoipa::OpenApi as _;
        crate::openapi::ApiDoc::openapi()
            .to_json()
            .unwrap_or_default()
    });
    ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response()
}

//! The routes and the layers around them: problem+json for unknown routes,
//! wrong methods and panics. Bodies are bounded where they are read
//! (`extract::read_body`: JSON bodies and uploads, each with its cap and an
//! overall deadline).

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::problem::ApiError;
use crate::state::App;
use crate::{files, processes, runs, sandboxes, service};

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("the server failed while handling the request").into_response()
}

/// Every route over `app`.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(service::metrics))
        .route("/openapi.json", get(service::openapi))
        .route("/v1/info", get(service::info))
        .route("/v1/runs", post(runs::create).get(runs::list))
        .route("/v1/runs/{id}", get(runs::get))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route(
            "/v1/sandboxes",
            post(sandboxes::create).get(sandboxes::list),
        )
        .route(
            "/v1/sandboxes/{id}",
            get(sandboxes::get).delete(sandboxes::delete),
        )
        .route("/v1/sandboxes/{id}/ttl", post(sandboxes::set_ttl))
        .route("/v1/sandboxes/{id}/exec", post(sandboxes::exec))
        .route(
            "/v1/sandboxes/{id}/files/{*path}",
            get(files::get).put(files::put),
        )
        .route("/v1/sandboxes/{id}/processes", post(processes::start))
        .route(
            "/v1/sandboxes/{id}/processes/{pid}",
            get(processes::get).delete(processes::stop),
        )
        .route(
            "/v1/sandboxes/{id}/processes/{pid}/wait",
            post(processes::wait),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(app)
}

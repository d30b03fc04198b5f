//! Extractors that answer a bad request in problem+json: a JSON body (read
//! whatever its content type says, within the body limit and an overall
//! deadline), path segments and the query.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;
use crate::state::App;

/// A JSON body. An empty body is `{}`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// The most of an oversized body read (and dropped) before answering 413,
/// so that a client still sending reads the answer rather than a reset.
const DRAIN_AT_MOST: u64 = 1 << 30;

/// The body of a request, at most `limit` bytes, all of it within
/// `within`. An oversized body is read on (up to [`DRAIN_AT_MOST`]) and
/// dropped, then `payload_too_large`.
pub async fn read_body(
    body: axum::body::Body,
    limit: u64,
    within: std::time::Duration,
    mut sink: impl FnMut(&[u8]) -> Result<(), ApiError>,
) -> Result<u64, ApiError> {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + within;
    let mut stream = body.into_data_stream();
    let (mut seen, mut over) = (0u64, false);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| {
                ApiError::invalid(format!(
                    "the request body did not arrive within {} s",
                    within.as_secs()
                ))
            })?;
        let Some(chunk) = next else { break };
        let chunk = chunk
            .map_err(|e| ApiError::invalid(format!("the request body could not be read: {e}")))?;
        seen += chunk.len() as u64;
        if seen > limit {
            over = true;
            if seen > DRAIN_AT_MOST {
                break;
            }
            continue;
        }
        sink(&chunk)?;
    }
    if over {
        return Err(ApiError::too_large(format!(
            "the request body is larger than this server takes ({limit} bytes)"
        )));
    }
    Ok(seen)
}

impl<T: DeserializeOwned> FromRequest<App> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &App) -> Result<Self, ApiError> {
        let limit = app.config.json_body_limit as u64;
        let mut buf = Vec::new();
        read_body(req.into_body(), limit, app.config.body_timeout, |c| {
            buf.extend_from_slice(c);
            Ok(())
        })
        .await?;
        let slice: &[u8] = if buf.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &buf
        };
        // serde_json bounds nesting (128 levels), so a deeply nested body
        // is an error here, not a stack overflow.
        serde_json::from_slice(slice)
            .map(ApiJson)
            .map_err(|e| ApiError::invalid(format!("the JSON body is not valid: {e}")))
    }
}

/// Path parameters.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::invalid(format!("bad path: {e}")))
    }
}

/// The query string.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::invalid(format!("bad query: {e}")))
    }
}

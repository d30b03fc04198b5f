//! [`ApiError`]: every failure as `application/problem+json` with a stable
//! `code`, and the mapping from the service's and backends' errors to it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use execution_service::ServiceError;
use orchestrator_core::Error as CoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:runbox:problem:CODE`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a human.
    pub detail: String,
    /// The stable machine-readable code.
    pub code: String,
}

/// An error answer: status, code, detail and, for backpressure, when to
/// retry.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code (`not_found`, `invalid_input`, ...).
    pub code: &'static str,
    /// What went wrong.
    pub detail: String,
    /// `Retry-After` in seconds.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }
    /// 400 `invalid_input`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", detail)
    }
    /// 404 `not_found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
    /// 401 `unauthorized`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    /// 400 `path_escapes_sandbox`.
    pub fn escapes(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "path_escapes_sandbox", detail)
    }
    /// 501 `unsupported`.
    pub fn unsupported(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "unsupported", detail)
    }
    /// 503 `unavailable`.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }
    /// 503 `queue_full`, retry in a second.
    pub fn queue_full(detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", detail);
        e.retry_after = Some(1);
        e
    }
    /// 429 `too_many_sandboxes`.
    pub fn too_many_sandboxes(detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_sandboxes", detail);
        e.retry_after = Some(5);
        e
    }
    /// 413 `payload_too_large`.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
    }
    /// 405 `method_not_allowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method",
        )
    }
    /// 409 `cancelled`: the run was cancelled (by another call, or a
    /// shutdown) while this caller waited for it.
    pub fn cancelled(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "cancelled", detail)
    }
    /// 500 `internal`: the server's own failure (a backend or the store),
    /// never what a client sent.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    fn title(&self) -> &'static str {
        match self.code {
            "unauthorized" => "Unauthorized",
            "not_found" => "Not found",
            "invalid_input" => "Invalid input",
            "path_escapes_sandbox" => "Path escapes the sandbox",
            "limit_not_enforceable" => "Limit not enforceable",
            "unsupported" => "Unsupported",
            "unavailable" => "Backend unavailable",
            "queue_full" => "Queue full",
            "too_many_sandboxes" => "Too many sandboxes",
            "payload_too_large" => "Payload too large",
            "method_not_allowed" => "Method not allowed",
            "cancelled" => "Cancelled",
            _ => "Internal error",
        }
    }

    /// The problem object of this error.
    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:runbox:problem:{}", self.code),
            title: self.title().into(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.into(),
        }
    }

    /// The `{"code", "detail"}` of a collected path that failed.
    pub fn brief(&self) -> serde_json::Value {
        serde_json::json!({"code": self.code, "detail": self.detail})
    }
}

impl From<&CoreError> for ApiError {
    fn from(e: &CoreError) -> Self {
        let detail = e.to_string();
        match e {
            CoreError::NotFound { .. } => Self::not_found(detail),
            CoreError::Unavailable { .. } => Self::unavailable(detail),
            CoreError::InvalidInput(_) => Self::invalid(detail),
            CoreError::PathEscapesSandbox { .. } => Self::escapes(detail),
            CoreError::LimitNotEnforceable { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "limit_not_enforceable",
                detail,
            ),
            CoreError::Unsupported { .. } => Self::unsupported(detail),
            _ => match io_cause(e) {
                Some(io) => Self::of_io(io, detail),
                None => Self::internal(detail),
            },
        }
    }
}

/// The OS error at the root of a backend failure, if there is one.
fn io_cause(e: &CoreError) -> Option<&std::io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

impl ApiError {
    /// A backend failure caused by the path a client gave (a file where
    /// a directory is needed, a name too long, a link loop, a full disk):
    /// the request's fault, not the server's.
    fn of_io(io: &std::io::Error, detail: String) -> Self {
        use std::io::ErrorKind as K;
        // ENAMETOOLONG, ELOOP (Linux numbers; their kinds are not stable).
        if matches!(io.raw_os_error(), Some(36 | 40)) {
            return Self::invalid(detail);
        }
        match io.kind() {
            K::NotFound => Self::not_found(detail),
            K::NotADirectory
            | K::IsADirectory
            | K::InvalidInput
            | K::AlreadyExists
            | K::DirectoryNotEmpty
            | K::TooManyLinks
            | K::PermissionDenied
            | K::ReadOnlyFilesystem => Self::invalid(detail),
            K::StorageFull | K::FileTooLarge => Self::too_large(detail),
            _ => Self::internal(detail),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        Self::from(&e)
    }
}

impl ApiError {
    /// A command's failure: what it names that is not there (its working
    /// directory, say) is the request's fault, while the sandbox itself
    /// missing stays `not_found`.
    pub fn of_command(e: &CoreError) -> Self {
        match e {
            CoreError::NotFound { what, .. } if *what != "workspace" => {
                Self::invalid(e.to_string())
            }
            _ => Self::from(e),
        }
    }
}

impl From<&ServiceError> for ApiError {
    fn from(e: &ServiceError) -> Self {
        match e {
            ServiceError::Orchestrator {
                operation: "run_command",
                source,
                ..
            } => {
                let mut api = Self::of_command(source);
                api.detail = e.to_string();
                api
            }
            ServiceError::Orchestrator { source, .. } | ServiceError::InvalidRequest(source) => {
                let mut api = Self::from(source);
                api.detail = e.to_string();
                api
            }
            ServiceError::UnknownBackend { .. } => Self::invalid(e.to_string()),
            ServiceError::UnknownExecution(_) => Self::not_found(e.to_string()),
            ServiceError::Cancelled(_) => Self::cancelled(e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self::from(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() && self.code == "internal" {
            tracing::error!(detail = %self.detail, "internal error");
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_their_codes() {
        let c = |e: CoreError| ApiError::from(e).code;
        assert_eq!(c(CoreError::invalid("x")), "invalid_input");
        assert_eq!(c(CoreError::workspace_not_found("w")), "not_found");
        assert_eq!(
            c(CoreError::Unavailable {
                backend: "d".into(),
                reason: "down".into()
            }),
            "unavailable"
        );
        let q = ApiError::queue_full("q");
        assert_eq!((q.status.as_u16(), q.retry_after), (503, Some(1)));
        assert_eq!(ApiError::too_many_sandboxes("t").status.as_u16(), 429);
        let p = ApiError::escapes("../x").problem();
        assert_eq!(p.kind, "urn:runbox:problem:path_escapes_sandbox");
        assert_eq!(p.status, 400);
    }
}

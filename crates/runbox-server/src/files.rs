//! Files of a sandbox over HTTP: `PUT` a file (or a tar archive, extracted
//! as a directory) and `GET` a file (a directory comes as tar). Bodies are
//! streamed through the scratch space with a size cap, never held whole in
//! memory.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::auth::Caller;
use crate::extract::ApiPath;
use crate::input;
use crate::problem::{ApiError, Problem};
use crate::state::App;

const TAR: &str = "application/x-tar";

fn scratch(app: &App, prefix: &str) -> Result<tempfile::TempDir, ApiError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&app.scratch)
        .map_err(|e| ApiError::internal(format!("no scratch space: {e}")))
}

fn is_tar(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(TAR))
        })
}

/// Write a file (or, with `Content-Type: application/x-tar`, a directory).
#[utoipa::path(put, path = "/v1/sandboxes/{id}/files/{path}", tag = "files",
    params(("id" = String, Path, description = "The sandbox"), ("path" = String, Path, description = "The sandbox path")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Written"),
        (status = 400, description = "Invalid input or a path outside the sandbox", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sandbox", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Too large", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn put(
    State(app): State<App>,
    Caller(who): Caller,
    ApiPath((id, path)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    app.check_open()?;
    let sb = app.sandbox(&who, &id)?;
    let target = input::sandbox_path(&path)?;
    let cap = app.config.file_limit;
    let too_large = || ApiError::too_large(format!("uploads are at most {cap} bytes"));
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > cap)
    {
        return Err(too_large());
    }
    let dir = scratch(&app, "up-")?;
    let file = dir.path().join("body");
    let mut out = tokio::fs::File::create(&file)
        .await
        .map_err(|e| ApiError::internal(format!("cannot stage the upload: {e}")))?;
    let mut seen: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid(format!("the body could not be read: {e}")))?;
        seen += chunk.len() as u64;
        if seen > cap {
            return Err(too_large());
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("cannot stage the upload: {e}")))?;
    }
    out.flush()
        .await
        .map_err(|e| ApiError::internal(format!("cannot stage the upload: {e}")))?;
    drop(out);
    let source = if is_tar(&headers) {
        let tree = dir.path().join("tree");
        let (archive, unpack_to) = (file.clone(), tree.clone());
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir(&unpack_to)?;
            let mut a = tar::Archive::new(std::fs::File::open(&archive)?);
            a.set_preserve_permissions(false);
            a.set_unpack_xattrs(false);
            a.set_overwrite(true);
            // Entries naming `..` or absolute paths are refused by `unpack`
            // (it never writes outside `unpack_to`).
            a.unpack(&unpack_to)
        })
        .await
        .map_err(|e| ApiError::internal(format!("extraction failed: {e}")))?
        .map_err(|e| ApiError::invalid(format!("the body is not a usable tar archive: {e}")))?;
        tree
    } else {
        file
    };
    sb.served.orch.copy_to(&sb.ws, &source, &target).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read a file (a directory comes as a tar archive).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files/{path}", tag = "files",
    params(("id" = String, Path, description = "The sandbox"), ("path" = String, Path, description = "The sandbox path")),
    responses(
        (status = 200, description = "The file, or a directory as tar", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "A path outside the sandbox", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sandbox or path", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Too large", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(app): State<App>,
    Caller(who): Caller,
    ApiPath((id, path)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let sb = app.sandbox(&who, &id)?;
    let source = input::sandbox_path(&path)?;
    let dir = scratch(&app, "down-")?;
    let copy = dir.path().join("copy");
    sb.served.orch.copy_from(&sb.ws, &source, &copy).await?;
    let cap = app.config.file_limit;
    let meta = tokio::fs::symlink_metadata(&copy)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the copy: {e}")))?;
    let (send, kind) = if meta.is_dir() {
        let archive = dir.path().join("copy.tar");
        let (from, to) = (copy.clone(), archive.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut b = tar::Builder::new(std::fs::File::create(&to)?);
            b.follow_symlinks(false);
            b.append_dir_all(".", &from)?;
            b.finish()
        })
        .await
        .map_err(|e| ApiError::internal(format!("archiving failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("archiving failed: {e}")))?;
        (archive, TAR)
    } else {
        (copy, "application/octet-stream")
    };
    let len = tokio::fs::metadata(&send)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the copy: {e}")))?
        .len();
    if len > cap {
        return Err(ApiError::too_large(format!(
            "{path} is {len} bytes; downloads are at most {cap}"
        )));
    }
    let f = tokio::fs::File::open(&send)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the copy: {e}")))?;
    // The scratch directory lives as long as the body streams.
    let body = tokio_util::io::ReaderStream::new(f).map(move |r| {
        let _keep = &dir;
        r
    });
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

//! Files of a sandbox over HTTP: `PUT` a file (or a tar archive, extracted
//! as a directory) and `GET` a file (a directory comes as tar). Bodies are
//! streamed through the scratch space with a size cap, never held whole in
//! memory.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use std::io::Write;

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

/// Most entries an uploaded archive may hold.
const MAX_ENTRIES: u64 = 100_000;

/// Extracts an uploaded archive into `to`: plain files, directories and
/// symlinks only (sparse files, hard links and devices are refused: a
/// sparse entry of a few bytes would unpack to any size), their sizes
/// summed against `cap`, and `..` or absolute names never written outside
/// `to` (`unpack_in` skips them).
fn extract(archive: &std::path::Path, to: &std::path::Path, cap: u64) -> Result<(), ApiError> {
    let bad =
        |e: std::io::Error| ApiError::invalid(format!("the body is not a usable tar archive: {e}"));
    std::fs::create_dir(to).map_err(|e| ApiError::internal(format!("no scratch space: {e}")))?;
    let file = std::fs::File::open(archive)
        .map_err(|e| ApiError::internal(format!("cannot read the upload: {e}")))?;
    let mut a = tar::Archive::new(file);
    a.set_preserve_permissions(false);
    a.set_unpack_xattrs(false);
    a.set_overwrite(true);
    let (mut total, mut count) = (0u64, 0u64);
    for entry in a.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(ApiError::too_large(format!(
                "archives hold at most {MAX_ENTRIES} entries"
            )));
        }
        let kind = entry.header().entry_type();
        use tar::EntryType as E;
        if !matches!(kind, E::Regular | E::Continuous | E::Directory | E::Symlink) {
            return Err(ApiError::invalid(format!(
                "archive entry {:?} is a {kind:?}: only files, directories and symlinks are taken",
                entry
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )));
        }
        total = total.saturating_add(entry.size());
        if total > cap {
            return Err(ApiError::too_large(format!(
                "the archive unpacks to more than {cap} bytes"
            )));
        }
        entry.unpack_in(to).map_err(bad)?;
    }
    Ok(())
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
        .is_some_and(|n| n > cap.saturating_mul(2).max(1 << 30))
    {
        return Err(too_large());
    }
    let dir = scratch(&app, "up-")?;
    let file = dir.path().join("body");
    let mut out = std::fs::File::create(&file)
        .map_err(|e| ApiError::internal(format!("cannot stage the upload: {e}")))?;
    // The whole upload within the body timeout plus a second per MiB the
    // cap allows: a client dripping bytes cannot hold a connection forever.
    let within = app.config.body_timeout + std::time::Duration::from_secs(cap >> 20);
    // Written as it arrives (small synchronous writes to the scratch
    // space; a blocking-pool hop per chunk would cost more).
    crate::extract::read_body(body, cap, within, |chunk| {
        out.write_all(chunk)
            .map_err(|e| ApiError::internal(format!("cannot stage the upload: {e}")))
    })
    .await
    .map_err(|e| {
        if e.code == "payload_too_large" {
            too_large()
        } else {
            e
        }
    })?;
    drop(out);
    let source = if is_tar(&headers) {
        let tree = dir.path().join("tree");
        let (archive, unpack_to) = (file.clone(), tree.clone());
        tokio::task::spawn_blocking(move || extract(&archive, &unpack_to, cap))
            .await
            .map_err(|e| ApiError::internal(format!("extraction failed: {e}")))??;
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

//! A run's `collect`: each copied-out path read back as base64 (a
//! directory as a tar archive), within one byte budget for them all, or
//! the error that kept it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use execution_service::{FileTransfer, ServiceError};

use crate::problem::ApiError;
use crate::result::CollectedFile;

/// A path to collect and where it was copied out to.
#[derive(Debug, Clone)]
pub struct Collect {
    /// The sandbox path, as the client gave it.
    pub path: String,
    /// The host copy.
    pub host: PathBuf,
}

/// Reads `p` (a file, or a directory as tar) with at most `budget` bytes.
pub fn read_bounded(p: &Path, budget: u64) -> Result<Vec<u8>, ApiError> {
    let meta = std::fs::symlink_metadata(p)
        .map_err(|e| ApiError::internal(format!("cannot read the copy: {e}")))?;
    let too_big = || ApiError::too_large(format!("more than {budget} bytes to collect"));
    if meta.is_dir() {
        let mut out = Bounded {
            buf: Vec::new(),
            cap: budget,
        };
        let mut b = tar::Builder::new(&mut out);
        b.follow_symlinks(false);
        b.append_dir_all(".", p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WriteZero {
                too_big()
            } else {
                ApiError::internal(format!("cannot archive the copy: {e}"))
            }
        })?;
        b.finish().map_err(|_| too_big())?;
        drop(b);
        return Ok(out.buf);
    }
    if meta.len() > budget {
        return Err(too_big());
    }
    let mut buf = Vec::new();
    std::fs::File::open(p)
        .and_then(|f| f.take(budget + 1).read_to_end(&mut buf))
        .map_err(|e| ApiError::internal(format!("cannot read the copy: {e}")))?;
    if buf.len() as u64 > budget {
        return Err(too_big());
    }
    Ok(buf)
}

/// A writer that refuses to grow past its cap.
struct Bounded {
    buf: Vec<u8>,
    cap: u64,
}

impl std::io::Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if (self.buf.len() + data.len()) as u64 > self.cap {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "over the cap",
            ));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `files` of a run's result.
pub async fn collect(
    paths: &[Collect],
    errors: &[(FileTransfer, Arc<ServiceError>)],
    budget: u64,
) -> BTreeMap<String, CollectedFile> {
    let paths = paths.to_vec();
    let errors: Vec<(String, ApiError)> = errors
        .iter()
        .map(|(f, e)| (f.sandbox.to_string(), ApiError::from(&**e)))
        .collect();
    let work = move || {
        let mut left = budget;
        let mut out = BTreeMap::new();
        for c in &paths {
            let failed = errors.iter().find(|(p, _)| {
                crate::input::sandbox_path(&c.path).is_ok_and(|sp| sp.to_string() == *p)
            });
            let entry = match failed {
                Some((_, e)) => CollectedFile {
                    base64: None,
                    error: Some(e.brief()),
                },
                None => match read_bounded(&c.host, left) {
                    Ok(bytes) => {
                        left -= bytes.len() as u64;
                        CollectedFile {
                            base64: Some(base64::engine::general_purpose::STANDARD.encode(&bytes)),
                            error: None,
                        }
                    }
                    Err(e) => CollectedFile {
                        base64: None,
                        error: Some(e.brief()),
                    },
                },
            };
            out.insert(c.path.clone(), entry);
        }
        out
    };
    tokio::task::spawn_blocking(work).await.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_directories_within_the_budget() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"hello").unwrap();
        assert_eq!(read_bounded(&d.path().join("f"), 5).unwrap(), b"hello");
        assert_eq!(
            read_bounded(&d.path().join("f"), 4).unwrap_err().code,
            "payload_too_large"
        );
        std::fs::create_dir(d.path().join("dir")).unwrap();
        std::fs::write(d.path().join("dir/a"), b"x").unwrap();
        let tar = read_bounded(&d.path().join("dir"), 1 << 20).unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.iter().any(|n| n.ends_with('a')), "{names:?}");
        assert_eq!(
            read_bounded(&d.path().join("dir"), 600).unwrap_err().code,
            "payload_too_large"
        );
    }
}

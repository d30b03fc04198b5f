//! Resolving a sandbox path inside the container, where its symlinks are:
//! the `RESOLVE` helper script follows them there and its verdicts become
//! the contract's errors.

use std::path::PathBuf;

use orchestrator_core::{Error, Result, SandboxPath};

use crate::error::DockerOrchestratorError as E;
use crate::exec::{self, Ctx};
use crate::scripts;
use crate::DockerOrchestrator;

fn escape(path: &str, reason: impl Into<String>) -> Error {
    Error::PathEscapesSandbox {
        path: PathBuf::from(path),
        reason: reason.into(),
    }
}

impl DockerOrchestrator {
    /// The absolute container path of `path`; `mode` is the script's:
    /// `from`, `to` or `dir`.
    pub(crate) async fn resolve(
        &self,
        ctx: &Ctx,
        mode: &str,
        path: &SandboxPath,
    ) -> Result<String> {
        let shown = &path.to_string();
        let (code, out, err) = exec::helper(ctx, scripts::RESOLVE, &[mode, path.as_str()]).await?;
        let msg = String::from_utf8_lossy(&out).trim().to_string();
        match code {
            0 => Ok(msg),
            3 => Err(escape(shown, msg)),
            4 => Err(Error::NotFound {
                what: if mode == "dir" { "directory" } else { "path" },
                id: shown.to_string(),
            }),
            6 => Err(Error::invalid(format!("{shown:?}: {msg}"))),
            _ => Err(E::Helper {
                container: ctx.container.clone(),
                reason: format!(
                    "resolving {shown:?} failed ({code}): {msg} {}",
                    String::from_utf8_lossy(&err).trim()
                ),
            }
            .into()),
        }
    }
}

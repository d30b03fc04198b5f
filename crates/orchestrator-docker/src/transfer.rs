//! Copies between the host and a workspace (`copy_to`, `copy_from`): the
//! sandbox path resolved inside the container, then a tar archive through
//! the daemon's archive API under the transfer deadline.

use std::path::Path;

use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use orchestrator_core::{paths, Error, Result, SandboxPath, WorkspaceId};

use crate::archive;
use crate::client::deadline;
use crate::error::DockerOrchestratorError as E;
use crate::exec;
use crate::scripts;
use crate::DockerOrchestrator;

impl DockerOrchestrator {
    /// `copy_to`: uploads `host_path` as an archive next to its
    /// destination, then moves it into place inside the container, so a
    /// failed upload leaves the destination as it was.
    pub(crate) async fn upload(
        &self,
        id: &WorkspaceId,
        host_path: &Path,
        sandbox_path: &SandboxPath,
    ) -> Result<()> {
        let ws = self.ws(id)?;
        if sandbox_path.is_root() {
            return Err(Error::invalid(
                "cannot replace the workspace root; name a path inside it",
            ));
        }
        if std::fs::symlink_metadata(host_path).is_err() {
            return Err(Error::NotFound {
                what: "path",
                id: host_path.display().to_string(),
            });
        }
        let ctx = self.ctx(&ws).await?;
        let dest = self.resolve(&ctx, "to", sandbox_path).await?;
        let (parent, base) = match dest.rsplit_once('/') {
            Some((p, b)) if !b.is_empty() => (
                if p.is_empty() {
                    "/".to_string()
                } else {
                    p.to_string()
                },
                b.to_string(),
            ),
            _ => return Err(Error::invalid(format!("bad destination {dest:?}"))),
        };
        let stage_name = format!(".{base}.runbox-tmp-{}", self.unique());
        let host = host_path.to_path_buf();
        let sn = stage_name.clone();
        let tar = tokio::task::spawn_blocking(move || archive::build(&host, &sn))
            .await
            .map_err(|e| Error::backend(crate::BACKEND_NAME, e))??;
        let opts = UploadToContainerOptionsBuilder::default()
            .path(&parent)
            .build();
        let upload = ctx
            .unless_lost(deadline(
                &ctx.host,
                "upload archive",
                self.config.transfer_timeout,
                ctx.docker.upload_to_container(
                    &ws.container,
                    Some(opts),
                    bollard::body_full(tar.into()),
                ),
            ))
            .await;
        let stage = format!("{}/{stage_name}", parent.trim_end_matches('/'));
        if let Err(e) = upload {
            let _ = exec::helper(&ctx, scripts::FINISH_UPLOAD, &[&stage, &dest, "abort"]).await;
            return Err(e.into());
        }
        let (code, _, err) =
            exec::helper(&ctx, scripts::FINISH_UPLOAD, &[&stage, &dest, "move"]).await?;
        if code != 0 {
            let _ = exec::helper(&ctx, scripts::FINISH_UPLOAD, &[&stage, &dest, "abort"]).await;
            return Err(E::Helper {
                container: ws.container.clone(),
                reason: format!(
                    "cannot move the upload into place at {sandbox_path}: {}",
                    String::from_utf8_lossy(&err).trim()
                ),
            }
            .into());
        }
        Ok(())
    }

    /// `copy_from`: downloads the resolved path as an archive and
    /// extracts it to `host_path` with the hostile-archive checks.
    pub(crate) async fn download(
        &self,
        id: &WorkspaceId,
        sandbox_path: &SandboxPath,
        host_path: &Path,
    ) -> Result<()> {
        let ws = self.ws(id)?;
        let host_path = &paths::host_copy_target(host_path, sandbox_path.file_name())?;
        let ctx = self.ctx(&ws).await?;
        let src = self.resolve(&ctx, "from", sandbox_path).await?;
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(&src)
            .build();
        let download = async {
            let mut stream = ctx
                .docker
                .download_from_container(&ws.container, Some(opts));
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = stream.next().await {
                buf.extend_from_slice(&chunk?);
            }
            Ok::<_, bollard::errors::Error>(buf)
        };
        let tar = ctx
            .unless_lost(deadline(
                &ctx.host,
                "download archive",
                self.config.transfer_timeout,
                download,
            ))
            .await?;
        let host = host_path.to_path_buf();
        tokio::task::spawn_blocking(move || archive::extract(&tar[..], &host))
            .await
            .map_err(|e| Error::backend(crate::BACKEND_NAME, e))??;
        Ok(())
    }
}

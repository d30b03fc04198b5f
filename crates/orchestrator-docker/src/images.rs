//! Workspace images: whether one exists locally (remembered once seen, so
//! `create_workspace` does not ask every time) and pulling a missing one
//! with progress.

use bollard::Docker;
use futures_util::StreamExt;
use orchestrator_core::Result;

use crate::client::deadline;
use crate::config::{DockerConfig, PullEvent, PullProgress};
use crate::container::lock;
use crate::error::DockerOrchestratorError as E;
use crate::DockerOrchestrator;

impl DockerOrchestrator {
    /// Pulls `image`, reporting progress to `progress` (or the configured
    /// callback). The error names the image and why the pull failed.
    pub async fn pull_image(&self, image: &str, progress: Option<&PullProgress>) -> Result<()> {
        let docker = self.docker().await?;
        let p = progress.or(self.config.pull_progress.as_ref());
        pull(&docker, &self.config, image, p).await?;
        Ok(())
    }

    /// Makes sure `image` exists locally, pulling it when missing (unless
    /// pulling is switched off). Always asks the daemon; `create_workspace`
    /// skips the question for an image this backend has already seen.
    pub async fn ensure_image(&self, image: &str) -> Result<()> {
        self.ensure_image_uncached(image).await?;
        lock(&self.shared.images).insert(image.to_string());
        Ok(())
    }

    /// [`Self::ensure_image`], skipped for an image seen present before.
    pub(crate) async fn ensure_image_cached(&self, image: &str) -> Result<()> {
        if lock(&self.shared.images).contains(image) {
            return Ok(());
        }
        self.ensure_image(image).await
    }

    async fn ensure_image_uncached(&self, image: &str) -> Result<()> {
        let docker = self.docker().await?;
        if image_exists(&docker, &self.config, image).await? {
            return Ok(());
        }
        if !self.config.pull_missing {
            return Err(E::ImagePull {
                image: image.to_string(),
                reason: "the image is not available locally and pulling is switched off".into(),
            }
            .into());
        }
        pull(
            &docker,
            &self.config,
            image,
            self.config.pull_progress.as_ref(),
        )
        .await?;
        if !image_exists(&docker, &self.config, image).await? {
            return Err(E::ImagePull {
                image: image.to_string(),
                reason: "the pull finished but the image is still missing".into(),
            }
            .into());
        }
        Ok(())
    }
}

/// Whether `image` exists locally.
pub(crate) async fn image_exists(
    docker: &Docker,
    config: &DockerConfig,
    image: &str,
) -> Result<bool, E> {
    match deadline(
        &config.host_description(),
        "inspect image",
        config.request_timeout,
        docker.inspect_image(image),
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.status_code() == Some(404) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Pulls `image`, reporting progress; the whole pull has `config.pull_timeout`.
pub(crate) async fn pull(
    docker: &Docker,
    config: &DockerConfig,
    image: &str,
    progress: Option<&PullProgress>,
) -> Result<(), E> {
    let (name, tag) = split_tag(image);
    let opts = bollard::query_parameters::CreateImageOptionsBuilder::default()
        .from_image(name)
        .tag(tag)
        .build();
    tracing::info!(image, "pulling image");
    let work = async {
        let mut stream = docker.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| E::ImagePull {
                image: image.to_string(),
                reason: e.to_string(),
            })?;
            if let Some(err) = info.error_detail.as_ref().and_then(|d| d.message.clone()) {
                return Err(E::ImagePull {
                    image: image.to_string(),
                    reason: err,
                });
            }
            if let Some(p) = progress {
                let detail = info.progress_detail.as_ref();
                p.emit(&PullEvent {
                    image: image.to_string(),
                    layer: info.id.clone(),
                    status: info.status.clone().unwrap_or_default(),
                    current: detail.and_then(|d| d.current).map(|v| v.max(0) as u64),
                    total: detail.and_then(|d| d.total).map(|v| v.max(0) as u64),
                });
            }
        }
        Ok(())
    };
    match tokio::time::timeout(config.pull_timeout, work).await {
        Err(_) => Err(E::ImagePull {
            image: image.to_string(),
            reason: format!("no result within {:?}", config.pull_timeout),
        }),
        Ok(r) => r,
    }
}

/// `name:tag` → (`name`, `tag`), defaulting the tag to `latest`; a digest
/// (`name@sha256:...`) is kept whole.
fn split_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split() {
        assert_eq!(split_tag("busybox"), ("busybox", "latest"));
        assert_eq!(split_tag("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(split_tag("reg:5000/a/b"), ("reg:5000/a/b", "latest"));
        assert_eq!(split_tag("reg:5000/a/b:x"), ("reg:5000/a/b", "x"));
        assert_eq!(split_tag("a@sha256:00"), ("a@sha256:00", ""));
    }
}

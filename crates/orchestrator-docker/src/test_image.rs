//! The busybox test image (feature `test-util`): `runbox-testbox:latest`,
//! built `FROM scratch` with the host's static busybox through the daemon's
//! build API, since no image can be pulled on our machines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;

use crate::client::negotiated;
use crate::config::{DockerConfig, PullEvent, PullProgress};
use crate::error::DockerOrchestratorError as E;
use crate::images::image_exists;

/// The tag of the test image.
pub const TEST_IMAGE: &str = "runbox-testbox:latest";

/// Options of [`ensure_test_image`].
#[derive(Debug, Clone, Default)]
pub struct TestImageOptions {
    /// Rebuild even when the image exists.
    pub force: bool,
    /// The static busybox binary; default: `$RUNBOX_BUSYBOX`, `/bin/busybox`,
    /// `/usr/bin/busybox` (Debian package `busybox-static`).
    pub busybox: Option<PathBuf>,
    /// Receives the build's output lines.
    pub log: Option<PullProgress>,
}

fn find_busybox(opt: &TestImageOptions) -> Result<PathBuf, E> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = &opt.busybox {
        candidates.push(p.clone());
    } else {
        if let Ok(p) = std::env::var("RUNBOX_BUSYBOX") {
            candidates.push(p.into());
        }
        candidates.push("/bin/busybox".into());
        candidates.push("/usr/bin/busybox".into());
    }
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    Err(E::ImageBuild {
        image: TEST_IMAGE.into(),
        reason: format!(
            "no busybox binary at {}; install the Debian package busybox-static",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// True when the ELF file has no program interpreter (statically linked).
fn is_static_elf(bytes: &[u8]) -> bool {
    let rd16 = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let rd32 = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let rd64 = |o: usize| {
        bytes.get(o..o + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    };
    // 64-bit little-endian ELF only (what Debian's amd64/arm64 ship).
    if bytes.get(0..4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (rd64(0x20), rd16(0x36), rd16(0x38)) else {
        return false;
    };
    (0..phnum as usize).all(|i| {
        let off = phoff as usize + i * phentsize as usize;
        rd32(off) != Some(3) // PT_INTERP
    })
}

fn build_context(busybox: &Path) -> Result<Vec<u8>, E> {
    let bin =
        std::fs::read(busybox).map_err(|e| E::io(format!("read {}", busybox.display()), e))?;
    if !is_static_elf(&bin) {
        return Err(E::ImageBuild {
            image: TEST_IMAGE.into(),
            reason: format!(
                "{} is not a statically linked 64-bit ELF; install the Debian package busybox-static",
                busybox.display()
            ),
        });
    }
    let dockerfile = "FROM scratch\n\
        COPY busybox /bin/busybox\n\
        COPY passwd /etc/passwd\n\
        COPY group /etc/group\n\
        RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
        RUN [\"/bin/busybox\", \"mkdir\", \"-p\", \"/tmp\", \"/usr/bin\", \"/workspace\", \"/run\"]\n\
        RUN [\"/bin/busybox\", \"chmod\", \"1777\", \"/tmp\"]\n\
        ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
        LABEL io.runbox.testbox=\"1\"\n\
        CMD [\"sh\"]\n";
    let files: [(&str, &[u8], u32); 4] = [
        ("Dockerfile", dockerfile.as_bytes(), 0o644),
        ("busybox", &bin, 0o755),
        (
            "passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        ),
        ("group", b"root:x:0:\nnogroup:x:65534:\n", 0o644),
    ];
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data)
            .map_err(|e| E::io("build context", e))?;
    }
    b.into_inner().map_err(|e| E::io("build context", e))
}

/// Makes sure the busybox test image [`TEST_IMAGE`] exists, building it
/// `FROM scratch` with the host's static busybox through the daemon's build
/// API when it is missing (or when `options.force`). Returns the tag.
pub async fn ensure_test_image(
    config: &DockerConfig,
    options: &TestImageOptions,
) -> Result<String, E> {
    let docker = negotiated(config, config.request_timeout).await?;
    if !options.force && image_exists(&docker, config, TEST_IMAGE).await? {
        return Ok(TEST_IMAGE.to_string());
    }
    let busybox = find_busybox(options)?;
    let context = build_context(&busybox)?;
    let opts = bollard::query_parameters::BuildImageOptionsBuilder::default()
        .t(TEST_IMAGE)
        .rm(true)
        .forcerm(true)
        .build();
    tracing::info!(image = TEST_IMAGE, busybox = %busybox.display(), "building test image");
    let work = async {
        let mut stream = docker.build_image(opts, None, Some(bollard::body_full(context.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| E::ImageBuild {
                image: TEST_IMAGE.into(),
                reason: e.to_string(),
            })?;
            if let Some(msg) = info.error_detail.as_ref().and_then(|d| d.message.clone()) {
                return Err(E::ImageBuild {
                    image: TEST_IMAGE.into(),
                    reason: msg,
                });
            }
            if let (Some(log), Some(line)) = (&options.log, &info.stream) {
                log.emit(&PullEvent {
                    image: TEST_IMAGE.into(),
                    layer: None,
                    status: line.trim_end().to_string(),
                    current: None,
                    total: None,
                });
            }
        }
        Ok(())
    };
    let limit = Duration::from_secs(180);
    match tokio::time::timeout(limit, work).await {
        Err(_) => Err(E::ImageBuild {
            image: TEST_IMAGE.into(),
            reason: format!("no result within {limit:?}"),
        }),
        Ok(r) => r,
    }?;
    if !image_exists(&docker, config, TEST_IMAGE).await? {
        return Err(E::ImageBuild {
            image: TEST_IMAGE.into(),
            reason: "the build finished but the image does not exist".into(),
        });
    }
    Ok(TEST_IMAGE.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_elf_detection() {
        assert!(!is_static_elf(b"not an elf"));
        if let Ok(b) = std::fs::read("/bin/busybox") {
            assert!(is_static_elf(&b));
        }
        if let Ok(b) = std::fs::read("/bin/sh") {
            // dash / bash on Debian are dynamically linked.
            let target = std::fs::canonicalize("/bin/sh").unwrap_or_default();
            if !target.ends_with("busybox") {
                assert!(!is_static_elf(&b));
            }
        }
    }
}

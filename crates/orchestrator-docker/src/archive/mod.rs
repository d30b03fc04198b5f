//! Tar archives between the host and containers: [`build()`] packs what
//! `copy_to` uploads, [`extract()`] unpacks what `copy_from` downloads.

mod build;
mod extract;
#[cfg(test)]
mod tests;

pub(crate) use build::build;
pub(crate) use extract::extract;

/// Fuzz and test hook (feature `test-util`): builds the tar archive the backend would upload for `host`,
/// its top entry named `name`.
#[cfg(feature = "test-util")]
pub fn build_archive_for_tests(
    host: &std::path::Path,
    name: &str,
) -> Result<Vec<u8>, crate::DockerOrchestratorError> {
    build(host, name)
}

/// Fuzz and test hook (feature `test-util`): extracts an archive from a container under `dest` with the
/// backend's hostile-archive checks (entries with `..`, absolute paths, or
/// links out of `dest` are rejected; nothing is left half-written).
#[cfg(feature = "test-util")]
pub fn extract_archive_for_tests(
    archive: &[u8],
    dest: &std::path::Path,
) -> Result<(), crate::DockerOrchestratorError> {
    extract(archive, dest)
}

//! Packing a host file or directory under one top-level name: symlinks
//! are stored as symlinks, special files are skipped, ownership is
//! normalised to root.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::DockerOrchestratorError as E;

fn new_header(kind: tar::EntryType, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h
}

fn mtime_of(md: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    md.mtime().max(0) as u64
}

fn add_path<W: Write>(b: &mut tar::Builder<W>, host: &Path, name: &Path) -> Result<(), E> {
    let md =
        fs::symlink_metadata(host).map_err(|e| E::io(format!("stat {}", host.display()), e))?;
    let ft = md.file_type();
    let mode = md.permissions().mode();
    if ft.is_symlink() {
        let target =
            fs::read_link(host).map_err(|e| E::io(format!("readlink {}", host.display()), e))?;
        let mut h = new_header(tar::EntryType::Symlink, 0o777, mtime_of(&md));
        b.append_link(&mut h, name, &target)
            .map_err(|e| E::io(format!("archive {}", host.display()), e))?;
    } else if ft.is_dir() {
        let mut h = new_header(tar::EntryType::Directory, mode, mtime_of(&md));
        b.append_data(&mut h, name, std::io::empty())
            .map_err(|e| E::io(format!("archive {}", host.display()), e))?;
        let mut entries: Vec<_> = fs::read_dir(host)
            .map_err(|e| E::io(format!("read {}", host.display()), e))?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| E::io(format!("read {}", host.display()), e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            add_path(b, &e.path(), &name.join(e.file_name()))?;
        }
    } else if ft.is_file() {
        let f = fs::File::open(host).map_err(|e| E::io(format!("open {}", host.display()), e))?;
        let mut h = new_header(tar::EntryType::Regular, mode, mtime_of(&md));
        h.set_size(md.len());
        b.append_data(&mut h, name, f)
            .map_err(|e| E::io(format!("archive {}", host.display()), e))?;
    } else {
        tracing::warn!(path = %host.display(), "skipping special file (fifo, socket or device)");
    }
    Ok(())
}

/// Packs `host` (file or directory) as `name` (a single path component).
pub(crate) fn build(host: &Path, name: &str) -> Result<Vec<u8>, E> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    add_path(&mut b, host, Path::new(name))?;
    b.into_inner()
        .map_err(|e| E::io(format!("archive {}", host.display()), e))
}

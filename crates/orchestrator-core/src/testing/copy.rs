//! Copies between host paths and a fake workspace's file tree, with a real
//! backend's rules: symlinks never lead out, the workspace root is never
//! replaced, host directories are never replaced or merged.

use std::path::{Path, PathBuf};

use super::fs::{Fs, Node};
use super::run::escape;
use crate::error::{Error, Result};
use crate::paths::{host_copy_target, SandboxPath};

/// Reads a host file or directory tree (symlinks verbatim); each entry with
/// its path relative to `host` (empty for `host` itself).
pub(crate) fn read_host_tree(host: &Path) -> Result<Vec<(PathBuf, Node)>> {
    let mut out = Vec::new();
    read_into(host, PathBuf::new(), &mut out)?;
    Ok(out)
}

fn read_into(host: &Path, rel: PathBuf, out: &mut Vec<(PathBuf, Node)>) -> Result<()> {
    let io = |what: &str, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                what: "host path",
                id: host.display().to_string(),
            }
        } else {
            Error::invalid(format!("cannot {what} {}: {e}", host.display()))
        }
    };
    let md = std::fs::symlink_metadata(host).map_err(|e| io("read", e))?;
    if md.file_type().is_symlink() {
        let target = std::fs::read_link(host).map_err(|e| io("read link", e))?;
        out.push((rel, Node::Symlink(target)));
    } else if md.is_dir() {
        out.push((rel.clone(), Node::Dir));
        let mut entries: Vec<_> = std::fs::read_dir(host)
            .map_err(|e| io("list", e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| io("list", e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            read_into(&e.path(), rel.join(e.file_name()), out)?;
        }
    } else {
        let data = std::fs::read(host).map_err(|e| io("read", e))?;
        out.push((rel, Node::File(data)));
    }
    Ok(())
}

/// Puts a tree read by [`read_host_tree`] at `sandbox_path`, replacing what
/// is there.
pub(crate) fn copy_in(
    fs: &mut Fs,
    tree: Vec<(PathBuf, Node)>,
    sandbox_path: &SandboxPath,
) -> Result<()> {
    let dest = fs
        .resolve(Path::new(""), sandbox_path.as_path())
        .map_err(|o| escape(sandbox_path.as_str(), o))?;
    if dest.as_os_str().is_empty() {
        return Err(Error::invalid(
            "cannot replace the workspace root; name a path inside it",
        ));
    }
    let mut ancestor = dest.parent();
    while let Some(a) = ancestor {
        match fs.get(a) {
            Some(Node::Dir) | None => {}
            Some(_) => {
                return Err(Error::invalid(format!(
                    "{sandbox_path}: {} is not a directory",
                    a.display()
                )))
            }
        }
        ancestor = a.parent();
    }
    fs.remove_tree(&dest);
    for (sub, node) in tree {
        fs.insert(&under(&dest, &sub), node);
    }
    Ok(())
}

/// Copies `sandbox_path` out to `host` (into it when it is a directory).
/// Nothing is written when the source is missing or holds a symlink that
/// leads out of the workspace.
pub(crate) fn copy_out(fs: &Fs, sandbox_path: &SandboxPath, host: &Path) -> Result<()> {
    let src = fs
        .resolve(Path::new(""), sandbox_path.as_path())
        .map_err(|o| escape(sandbox_path.as_str(), o))?;
    let tree = fs.subtree(&src);
    if tree.is_empty() {
        return Err(Error::NotFound {
            what: "sandbox path",
            id: sandbox_path.to_string(),
        });
    }
    for (sub, node) in &tree {
        if let Node::Symlink(target) = node {
            let at = under(&src, sub);
            let dir = at.parent().unwrap_or(Path::new(""));
            fs.resolve(dir, target)
                .map_err(|o| escape(&at.display().to_string(), o))?;
        }
    }
    let dest = host_copy_target(host, sandbox_path.file_name())?;
    let io =
        |p: &Path, e: std::io::Error| Error::invalid(format!("cannot write {}: {e}", p.display()));
    if matches!(tree[0].1, Node::Dir) && std::fs::symlink_metadata(&dest).is_ok() {
        // An existing file where the directory goes is replaced.
        std::fs::remove_file(&dest).map_err(|e| io(&dest, e))?;
    }
    for (sub, node) in tree {
        let p = under(&dest, &sub);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        match node {
            Node::Dir => std::fs::create_dir_all(&p).map_err(|e| io(&p, e))?,
            Node::File(d) => std::fs::write(&p, d).map_err(|e| io(&p, e))?,
            Node::Symlink(t) => std::os::unix::fs::symlink(t, &p).map_err(|e| io(&p, e))?,
        }
    }
    Ok(())
}

/// `base/sub`, or `base` for an empty `sub` (no trailing slash).
fn under(base: &Path, sub: &Path) -> PathBuf {
    if sub.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(sub)
    }
}

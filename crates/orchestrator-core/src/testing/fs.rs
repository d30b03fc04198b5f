//! The fake's in-memory file tree: files, directories and symlinks, and path
//! resolution that follows links the way the kernel would.
//!
//! Paths are relative to the workspace root, which commands see as
//! [`SANDBOX_ROOT`]; an absolute link target under it stays inside, any other
//! absolute target (or a `..` above the root) leads outside.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::paths::MAX_SYMLINK_HOPS;

/// Where commands see the workspace root.
pub(crate) const SANDBOX_ROOT: &str = "/workspace";

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A directory (its entries are the keys below it).
    Dir,
    /// A symbolic link and its target, verbatim.
    Symlink(PathBuf),
}

static ROOT: Node = Node::Dir;

/// Why a path does not name a place inside the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outside {
    /// It leads out of the workspace (`..` above the root, a link outside).
    Escapes,
    /// Too many symlinks.
    Loop,
}

/// Why a file operation failed, as the errno a command would report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsError {
    /// ENOENT.
    NotFound,
    /// EEXIST.
    Exists,
    /// ENOTDIR.
    NotDir,
    /// EISDIR.
    IsDir,
}

impl FsError {
    /// What `strerror` says.
    pub(crate) fn message(self) -> &'static str {
        match self {
            FsError::NotFound => "No such file or directory",
            FsError::Exists => "File exists",
            FsError::NotDir => "Not a directory",
            FsError::IsDir => "Is a directory",
        }
    }
}

/// The tree: every entry but the root, by its path from the root.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fs {
    nodes: BTreeMap<PathBuf, Node>,
}

impl Fs {
    /// The entry at `p` (already resolved), the root for an empty path.
    pub(crate) fn get(&self, p: &Path) -> Option<&Node> {
        if p.as_os_str().is_empty() {
            Some(&ROOT)
        } else {
            self.nodes.get(p)
        }
    }

    /// Is `p` (resolved) a directory?
    pub(crate) fn is_dir(&self, p: &Path) -> bool {
        matches!(self.get(p), Some(Node::Dir))
    }

    /// Resolves `rel` against the directory `base` (both from the root),
    /// following every symlink, the last component's too. Components that do
    /// not exist are taken as they are.
    pub(crate) fn resolve(&self, base: &Path, rel: &Path) -> Result<PathBuf, Outside> {
        self.walk(base, rel, true)
    }

    /// Like [`Fs::resolve`] but a symlink in the last component is not
    /// followed (the link itself is meant: `ln -s`, `rm`).
    pub(crate) fn resolve_parent(&self, base: &Path, rel: &Path) -> Result<PathBuf, Outside> {
        self.walk(base, rel, false)
    }

    fn walk(&self, base: &Path, rel: &Path, follow_last: bool) -> Result<PathBuf, Outside> {
        let mut cur: Vec<OsString> = base.iter().map(|c| c.to_os_string()).collect();
        let mut todo: VecDeque<OsString> = VecDeque::new();
        if rel.is_absolute() {
            cur.clear();
            todo.extend(inside_root(rel)?.iter().map(|c| c.to_os_string()));
        } else {
            todo.extend(rel.iter().map(|c| c.to_os_string()));
        }
        let mut hops = 0usize;
        while let Some(comp) = todo.pop_front() {
            if comp == "." || comp.is_empty() || comp == "/" {
                continue;
            }
            if comp == ".." {
                cur.pop().ok_or(Outside::Escapes)?;
                continue;
            }
            let mut candidate: PathBuf = cur.iter().collect();
            candidate.push(&comp);
            let last = todo.is_empty();
            match self.nodes.get(&candidate) {
                Some(Node::Symlink(target)) if follow_last || !last => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(Outside::Loop);
                    }
                    let spliced = if target.is_absolute() {
                        cur.clear();
                        inside_root(target)?
                    } else {
                        target.clone()
                    };
                    for (i, c) in spliced.iter().enumerate() {
                        todo.insert(i, c.to_os_string());
                    }
                }
                _ => cur.push(comp),
            }
        }
        Ok(cur.iter().collect())
    }

    /// The file's bytes.
    pub(crate) fn read(&self, p: &Path) -> Result<&[u8], FsError> {
        match self.get(p) {
            Some(Node::File(d)) => Ok(d),
            Some(Node::Dir) => Err(FsError::IsDir),
            _ => Err(FsError::NotFound),
        }
    }

    fn parent_is_dir(&self, p: &Path) -> Result<(), FsError> {
        match self.get(p.parent().unwrap_or(Path::new(""))) {
            Some(Node::Dir) => Ok(()),
            Some(_) => Err(FsError::NotDir),
            None => Err(FsError::NotFound),
        }
    }

    /// Creates or truncates the file at `p` (open with O_CREAT|O_TRUNC).
    pub(crate) fn create(&mut self, p: &Path) -> Result<(), FsError> {
        self.open_append(p)?;
        self.nodes.insert(p.to_path_buf(), Node::File(Vec::new()));
        Ok(())
    }

    /// Creates the file at `p` if it is missing (open with O_CREAT|O_APPEND).
    pub(crate) fn open_append(&mut self, p: &Path) -> Result<(), FsError> {
        match self.get(p) {
            Some(Node::File(_)) => Ok(()),
            Some(_) => Err(FsError::IsDir),
            None => {
                self.parent_is_dir(p)?;
                self.nodes.insert(p.to_path_buf(), Node::File(Vec::new()));
                Ok(())
            }
        }
    }

    /// Appends to the file at `p`, at most until it holds `max` bytes;
    /// returns how many bytes were written.
    pub(crate) fn append(&mut self, p: &Path, data: &[u8], max: u64) -> Result<usize, FsError> {
        match self.nodes.get_mut(p) {
            Some(Node::File(d)) => {
                let room = max.saturating_sub(d.len() as u64);
                let n = (data.len() as u64).min(room) as usize;
                d.extend_from_slice(&data[..n]);
                Ok(n)
            }
            Some(_) => Err(FsError::IsDir),
            None => Err(FsError::NotFound),
        }
    }

    /// Creates the directory `p`; with `parents`, its missing ancestors too
    /// and no error when it exists.
    pub(crate) fn mkdir(&mut self, p: &Path, parents: bool) -> Result<(), FsError> {
        if parents {
            let mut cur = PathBuf::new();
            for c in p.iter() {
                cur.push(c);
                match self.get(&cur) {
                    Some(Node::Dir) => {}
                    Some(_) => return Err(FsError::NotDir),
                    None => {
                        self.nodes.insert(cur.clone(), Node::Dir);
                    }
                }
            }
            return Ok(());
        }
        if self.get(p).is_some() {
            return Err(FsError::Exists);
        }
        self.parent_is_dir(p)?;
        self.nodes.insert(p.to_path_buf(), Node::Dir);
        Ok(())
    }

    /// Puts `node` at `p` (resolved), creating missing parent directories.
    pub(crate) fn insert(&mut self, p: &Path, node: Node) {
        if let Some(parent) = p.parent() {
            let _ = self.mkdir(parent, true);
        }
        self.nodes.insert(p.to_path_buf(), node);
    }

    /// Creates a symlink at `p` that points at `target`.
    pub(crate) fn symlink(&mut self, target: &Path, p: &Path) -> Result<(), FsError> {
        if self.get(p).is_some() {
            return Err(FsError::Exists);
        }
        self.parent_is_dir(p)?;
        self.nodes
            .insert(p.to_path_buf(), Node::Symlink(target.to_path_buf()));
        Ok(())
    }

    /// Removes `p` and everything below it.
    pub(crate) fn remove_tree(&mut self, p: &Path) {
        if p.as_os_str().is_empty() {
            self.nodes.clear();
            return;
        }
        let doomed: Vec<PathBuf> = self.below(p).map(|(k, _)| k.clone()).collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
        self.nodes.remove(p);
    }

    /// The names in directory `p`, sorted.
    pub(crate) fn list(&self, p: &Path) -> Result<Vec<String>, FsError> {
        match self.get(p) {
            Some(Node::Dir) => Ok(self
                .below(p)
                .filter(|(k, _)| k.parent() == Some(p))
                .filter_map(|(k, _)| Some(k.file_name()?.to_string_lossy().into_owned()))
                .collect()),
            Some(_) => Err(FsError::NotDir),
            None => Err(FsError::NotFound),
        }
    }

    /// `p` itself and every entry below it, each with its path relative to
    /// `p` (empty for `p`), in path order.
    pub(crate) fn subtree(&self, p: &Path) -> Vec<(PathBuf, Node)> {
        let Some(top) = self.get(p) else {
            return Vec::new();
        };
        let mut out = vec![(PathBuf::new(), top.clone())];
        if matches!(top, Node::Dir) {
            out.extend(
                self.below(p)
                    .filter_map(|(k, n)| Some((k.strip_prefix(p).ok()?.to_path_buf(), n.clone()))),
            );
        }
        out
    }

    /// Every entry strictly below `p`.
    fn below<'a>(&'a self, p: &'a Path) -> impl Iterator<Item = (&'a PathBuf, &'a Node)> + 'a {
        self.nodes
            .range(p.to_path_buf()..)
            .take_while(move |(k, _)| k.starts_with(p))
            .filter(move |(k, _)| k.as_path() != p)
    }
}

/// The part of an absolute path below [`SANDBOX_ROOT`].
fn inside_root(abs: &Path) -> Result<PathBuf, Outside> {
    abs.strip_prefix(SANDBOX_ROOT)
        .map(Path::to_path_buf)
        .map_err(|_| Outside::Escapes)
}

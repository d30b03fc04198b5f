//! Sandbox path rules, shared by every backend.
//!
//! A sandbox path is relative to the workspace root. [`SandboxPath`] is
//! such a path parsed once at the boundary with the lexical rules (no
//! absolute paths, no `..`, no NUL), so every trait method takes an already
//! checked path and every backend rejects the same inputs the same way. For
//! backends with a host directory, [`resolve_in_root`] also follows symlinks
//! component by component and rejects any that lead outside the root.
//!
//! [`resolve_in_root`] checks before the operation, not atomically with it:
//! a process inside the sandbox that swaps a directory for a symlink at the
//! same moment can race it. Backends that copy against such a process
//! resolve beneath a directory descriptor instead (the native backend's
//! copies do; see docs/security.md).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Most symlinks followed while resolving one path (as Linux's ELOOP limit).
pub const MAX_SYMLINK_HOPS: usize = 40;

fn escape(path: &str, reason: &str) -> Error {
    Error::PathEscapesSandbox {
        path: PathBuf::from(path),
        reason: reason.to_string(),
    }
}

/// A path inside a sandbox, relative to the workspace root, normalised
/// (`.` components dropped; the empty path is the root). It can only exist
/// valid: [`SandboxPath::new`] applies the lexical rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SandboxPath {
    /// Normalised, `/`-separated, no leading or trailing `/`; empty = root.
    rel: String,
}

impl SandboxPath {
    /// Parses a sandbox path. Absolute paths and `..` are
    /// [`Error::PathEscapesSandbox`]; a NUL byte is [`Error::InvalidInput`].
    pub fn new(path: impl AsRef<str>) -> Result<Self> {
        let rel = sandbox_relative(path.as_ref())?;
        // Built from a &str, so the components are valid UTF-8.
        let rel = rel.to_string_lossy().into_owned();
        Ok(Self { rel })
    }

    /// The workspace root itself.
    pub fn root() -> Self {
        Self { rel: String::new() }
    }

    /// Is this the workspace root?
    pub fn is_root(&self) -> bool {
        self.rel.is_empty()
    }

    /// The normalised relative path (`""` for the root).
    pub fn as_str(&self) -> &str {
        &self.rel
    }

    /// The normalised relative path as a [`Path`] (empty for the root).
    pub fn as_path(&self) -> &Path {
        Path::new(&self.rel)
    }

    /// The last component (`None` for the root).
    pub fn file_name(&self) -> Option<&std::ffi::OsStr> {
        self.as_path().file_name()
    }

    /// The path under a base directory: `base` for the root, else
    /// `base/rel` (for container paths such as `/workspace`).
    pub fn under(&self, base: &str) -> String {
        if self.is_root() {
            base.to_string()
        } else {
            format!("{}/{}", base.trim_end_matches('/'), self.rel)
        }
    }
}

impl std::fmt::Display for SandboxPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_root() { "." } else { &self.rel })
    }
}

impl std::str::FromStr for SandboxPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<&str> for SandboxPath {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<String> for SandboxPath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

/// Applies the lexical rules to a sandbox path and returns it normalised:
/// `.` components dropped, an empty result meaning the workspace root.
///
/// Absolute paths and `..` are [`Error::PathEscapesSandbox`]; a NUL byte is
/// [`Error::InvalidInput`].
pub fn sandbox_relative(path: &str) -> Result<PathBuf> {
    if path.contains('\0') {
        return Err(Error::invalid(format!(
            "sandbox path {path:?} contains a NUL byte"
        )));
    }
    if path.starts_with('/') {
        return Err(escape(
            path,
            "absolute paths are not allowed; paths are relative to the workspace root",
        ));
    }
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(escape(path, "'..' is not allowed")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(escape(path, "absolute paths are not allowed"))
            }
        }
    }
    Ok(out)
}

/// Resolves a sandbox path under `root` (which should be canonical) on the
/// host the way the kernel would, and returns the real host path.
///
/// Each component is looked up in the already-resolved prefix; a symlink's
/// target is spliced in front of the remaining components and followed in
/// order, so `..` always goes up from the *resolved* prefix (through a link
/// `sub -> .`, `sub/..` really goes up). Components that do not exist yet
/// are taken as they are (a destination may not exist). A path that would
/// leave `root` at any step, directly or through links (absolute targets
/// outside `root` included), is [`Error::PathEscapesSandbox`].
pub fn resolve_in_root(root: &Path, sandbox_path: &SandboxPath) -> Result<PathBuf> {
    let path = sandbox_path.as_str();
    let rel = sandbox_path.as_path();
    let mut cur: Vec<OsString> = Vec::new();
    let mut todo: VecDeque<OsString> = rel.iter().map(|c| c.to_os_string()).collect();
    let mut hops = 0usize;
    while let Some(comp) = todo.pop_front() {
        if comp == "." || comp.is_empty() {
            continue;
        }
        if comp == ".." {
            if cur.pop().is_none() {
                return Err(escape(path, "a symlink leads outside the sandbox"));
            }
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(cur.iter());
        candidate.push(&comp);
        match std::fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(escape(path, "too many levels of symbolic links"));
                }
                let target = std::fs::read_link(&candidate).map_err(|e| {
                    Error::invalid(format!("cannot read symlink {}: {e}", candidate.display()))
                })?;
                let target = if target.is_absolute() {
                    let inside = target.strip_prefix(root).map_err(|_| {
                        escape(
                            path,
                            &format!("symlink {} points outside the sandbox", candidate.display()),
                        )
                    })?;
                    cur.clear();
                    inside.to_path_buf()
                } else {
                    target
                };
                for (i, c) in target.iter().enumerate() {
                    todo.insert(i, c.to_os_string());
                }
            }
            _ => cur.push(comp),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(cur.iter());
    Ok(out)
}

/// Where a copy out of a sandbox lands on the host, the way `cp` decides:
/// into an existing directory `host` under the source's name (`src_name`,
/// the last component of the sandbox path; `None` for the workspace root),
/// else at `host` itself. An existing *file* there is replaced; an existing
/// directory is never replaced or merged, so no host data is deleted: that
/// is [`Error::InvalidInput`].
pub fn host_copy_target(host: &Path, src_name: Option<&std::ffi::OsStr>) -> Result<PathBuf> {
    // One stat in the common cases: `host` missing, or an existing file
    // (neither is a directory, and a link to a directory counts as one).
    let target = match std::fs::metadata(host) {
        Ok(m) if m.is_dir() => match src_name {
            Some(name) => host.join(name),
            None => {
                return Err(Error::invalid(format!(
                    "{} is an existing directory; copying the whole workspace needs a destination that does not exist yet",
                    host.display()
                )))
            }
        },
        _ => return Ok(host.to_path_buf()),
    };
    if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
        return Err(Error::invalid(format!(
            "{} is an existing directory; runbox does not replace or merge host directories",
            target.display()
        )));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn lexical_rules() {
        assert_eq!(sandbox_relative("a/./b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(sandbox_relative("").unwrap(), PathBuf::new());
        assert_eq!(sandbox_relative(".").unwrap(), PathBuf::new());
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", "/"] {
            assert!(
                matches!(sandbox_relative(bad), Err(Error::PathEscapesSandbox { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            sandbox_relative("a\0b"),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn symlinks_followed_inside_rejected_outside() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("real", root.join("inside")).unwrap();
        symlink("/etc", root.join("abs_out")).unwrap();
        symlink("../../", root.join("real/up")).unwrap();
        symlink(root.join("real"), root.join("abs_in")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        // `..` applies to the resolved prefix: through `sub -> .`,
        // `d/s -> ../sub/..` leads to the root's parent.
        std::fs::create_dir_all(root.join("d")).unwrap();
        symlink(".", root.join("sub")).unwrap();
        symlink("../sub/..", root.join("d/s")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();

        assert_eq!(
            resolve_in_root(&root, &SandboxPath::new("inside/sub").unwrap()).unwrap(),
            root.join("real/sub")
        );
        assert_eq!(
            resolve_in_root(&root, &SandboxPath::new("abs_in/new").unwrap()).unwrap(),
            root.join("real/new")
        );
        assert_eq!(
            resolve_in_root(&root, &SandboxPath::new("missing/x").unwrap()).unwrap(),
            root.join("missing/x")
        );
        for bad in [
            "abs_out",
            "abs_out/passwd",
            "real/up",
            "real/up/x",
            "inside/up",
            "loop1",
        ] {
            assert!(
                matches!(
                    resolve_in_root(&root, &SandboxPath::new(bad).unwrap()),
                    Err(Error::PathEscapesSandbox { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn sandbox_paths_are_parsed_once() {
        let p = SandboxPath::new("./a//b/").unwrap();
        assert_eq!(p.as_str(), "a/b");
        assert_eq!(p.under("/workspace"), "/workspace/a/b");
        assert_eq!(p.file_name(), Some(std::ffi::OsStr::new("b")));
        let root = SandboxPath::new(".").unwrap();
        assert!(root.is_root());
        assert_eq!(root, SandboxPath::root());
        assert_eq!(root.under("/workspace"), "/workspace");
        assert_eq!(root.to_string(), ".");
        assert!(matches!(
            "../x".parse::<SandboxPath>(),
            Err(Error::PathEscapesSandbox { .. })
        ));
        assert!(matches!(
            SandboxPath::new("/etc"),
            Err(Error::PathEscapesSandbox { .. })
        ));
        assert!(matches!(
            SandboxPath::new("a\0"),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn host_targets_never_replace_directories() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("dir");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(d.path().join("file"), b"x").unwrap();
        let name = Some(std::ffi::OsStr::new("out.txt"));
        // Into an existing directory, under the source's name.
        assert_eq!(host_copy_target(&dir, name).unwrap(), dir.join("out.txt"));
        // A file is replaced; a new path is used as it is.
        assert_eq!(
            host_copy_target(&d.path().join("file"), name).unwrap(),
            d.path().join("file")
        );
        assert_eq!(
            host_copy_target(&d.path().join("new"), None).unwrap(),
            d.path().join("new")
        );
        // An existing directory is never the target.
        assert!(host_copy_target(&dir, Some(std::ffi::OsStr::new("sub"))).is_err());
        assert!(host_copy_target(&dir, None).is_err());
    }

    proptest! {
        #[test]
        fn lexical_result_never_escapes(parts in proptest::collection::vec(prop_oneof![
            Just("..".to_string()), Just(".".to_string()), Just("".to_string()),
            "[a-z]{1,4}".prop_map(|s| s), Just("/".to_string())
        ], 0..8)) {
            let p = parts.join("/");
            if let Ok(rel) = sandbox_relative(&p) {
                prop_assert!(rel.is_relative());
                prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
                prop_assert!(!p.starts_with('/'));
                prop_assert!(!p.split('/').any(|c| c == ".."));
            } else {
                prop_assert!(p.starts_with('/') || p.split('/').any(|c| c == ".."));
            }
        }

        #[test]
        fn resolved_paths_stay_in_root(links in proptest::collection::vec(("[a-c]", prop_oneof![
            Just("..".to_string()), Just("../..".to_string()), Just("/tmp".to_string()),
            Just("a".to_string()), Just("b/c".to_string()), Just(".".to_string())
        ]), 0..4), query in "[a-c](/[a-c]){0,3}") {
            let d = tempfile::tempdir().unwrap();
            let root = d.path().canonicalize().unwrap();
            for (name, target) in &links {
                let _ = symlink(target, root.join(name));
            }
            if let Ok(p) = resolve_in_root(&root, &SandboxPath::new(&query).unwrap()) {
                prop_assert!(p.starts_with(&root), "{} escaped {}", p.display(), root.display());
                // Every existing prefix resolves within the root too.
                if let Ok(real) = p.canonicalize() {
                    prop_assert!(real.starts_with(&root));
                }
            }
        }
    }
}

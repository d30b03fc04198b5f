//! Tearing workspaces down: killing every process, removing the directory
//! and the cgroup, reporting residue, reaping what dead owners left.

use std::path::Path;
use std::sync::Arc;

use orchestrator_core::{Result, WorkspaceId};

use crate::backend::Inner;
use crate::cgroup::WorkspaceCgroup;
use crate::error::NativeOrchestratorError;
use crate::process::signal::{kill_pids, kill_tree, Pid};
use crate::procfs::{self, PidFloor};
use crate::sync::{blocking, lock};
use crate::workspace::{owner_of, Workspace};
use crate::NativeOrchestrator;

/// Which cgroup [`NativeOrchestrator::remove_all`] should remove.
#[derive(Clone, Copy)]
pub(crate) enum CgroupRef<'a> {
    /// The workspace is ours: we know its cgroup (or that it has none) and
    /// the scan floor for leftover processes (`None`: nothing ever ran).
    Known(Option<&'a WorkspaceCgroup>, Option<Pid>),
    /// Not ours (recovery): look the cgroup up by name.
    Lookup,
}

/// Removes a directory that holds a handful of entries and no
/// subdirectory, with one listing (cheap enough to do inline). `Ok(false)`,
/// with nothing removed, for anything bigger: the caller takes the general
/// path on the blocking pool.
fn remove_small_flat(dir: &Path) -> std::io::Result<bool> {
    const MAX: usize = 32;
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for e in rd {
        let e = e?;
        if names.len() == MAX || e.file_type()?.is_dir() {
            return Ok(false);
        }
        names.push(e.file_name());
    }
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    for n in names {
        gone(std::fs::remove_file(dir.join(n)))?;
    }
    match std::fs::remove_dir(dir) {
        // Something appeared meanwhile: the general path removes it.
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(false),
        r => gone(r).map(|()| true),
    }
}

/// Removes a workspace directory tree. A sandbox may have left directories
/// its owner cannot enter or change (mode 000, say; as root that does not
/// matter, rootless it does): those are given back u+rwx, without following
/// links, and the removal is tried again.
pub(crate) fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            make_removable(dir);
            std::fs::remove_dir_all(dir)
        }
        r => r,
    }
}

fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let is_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    if !is_dir {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            make_removable(&e.path());
        }
    }
}

/// Kills the processes found by their workspace directory, from `floor` up.
fn kill_in_dir(dir: &Path, floor: PidFloor) {
    kill_pids(procfs::processes_in_dir(dir, floor));
}

impl NativeOrchestrator {
    /// Kills every process of a workspace (background, foreground, cgroup,
    /// its sandbox's).
    pub(crate) fn kill_everything(ws: &Workspace) {
        if let Some(sandbox) = ws.started_sandbox() {
            sandbox.kill_all();
        }
        Self::kill_groups(ws);
        match ws.cgroup() {
            // An init seated in the cgroup goes on serving the workspace.
            Some(cg) if ws.init_seated() => {
                let init = ws.started_sandbox().and_then(|s| s.init_pid());
                cg.kill_all_but(init)
            }
            Some(cg) => cg.kill_all(),
            // No cgroup: processes that left their group are found by
            // their working directory.
            None => {
                if let Some(floor) = ws.scan_floor() {
                    kill_in_dir(&ws.dir, PidFloor::From(floor));
                }
            }
        }
    }

    /// Kills the process groups of running commands.
    fn kill_groups(ws: &Workspace) {
        for b in lock(&ws.background).values() {
            if let Some(group) = b.running_group() {
                group.kill_tree();
            }
        }
        for pgid in lock(&ws.foreground).iter() {
            kill_tree(*pgid);
        }
    }

    /// Removes everything a workspace id may have on the host.
    pub(crate) fn remove_all(&self, id: &str, dir: &Path, cgroup: CgroupRef<'_>) -> Result<()> {
        let loaded;
        let (cgroup, floor) = match cgroup {
            CgroupRef::Known(c, floor) => (c, floor.map(PidFloor::From)),
            CgroupRef::Lookup => {
                loaded = self.inner.cgroups.as_ref().ok().and_then(|s| s.load(id));
                (loaded.as_ref(), Some(PidFloor::Any))
            }
        };
        match (cgroup, floor) {
            // Its removal below kills what is still in it.
            (Some(_), _) => {}
            (None, Some(floor)) => kill_in_dir(dir, floor),
            (None, None) => {}
        }
        // The directory goes last: while it exists, `reap_orphans` (after a
        // crash half-way through) finds the workspace and finishes the job.
        if let Some(cg) = cgroup {
            cg.remove()?;
        }
        match remove_tree(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NativeOrchestratorError::io("remove workspace", dir, e).into()),
        }
    }

    /// `cleanup`: idempotent; a workspace of another live owner is left alone.
    pub(crate) async fn tear_down(&self, id: &WorkspaceId) -> Result<()> {
        let ws = lock(&self.inner.workspaces).remove(id);
        // A sandbox ends with its init: once its outer process has exited,
        // no process of it is left.
        if let Some(sandbox) = ws.as_ref().and_then(|w| w.started_sandbox()) {
            sandbox.shutdown().await;
        }
        let this = self.clone();
        let id = id.clone();
        // Nothing running, no cgroup, a few files: cheaper done inline than
        // through the blocking pool.
        let quick = ws.as_ref().filter(|ws| {
            ws.cgroup().is_none()
                && lock(&ws.foreground).is_empty()
                && lock(&ws.background)
                    .values()
                    .all(|b| b.result.borrow().is_some())
        });
        if let Some(ws) = quick {
            if let Some(floor) = ws.scan_floor() {
                kill_in_dir(&ws.dir, PidFloor::From(floor));
            }
            if remove_small_flat(&ws.dir)
                .map_err(|e| NativeOrchestratorError::io("remove workspace", &ws.dir, e))?
            {
                tracing::debug!(workspace = %id, "workspace cleaned up");
                return Ok(());
            }
        }
        blocking(move || match ws {
            Some(ws) => {
                Self::kill_groups(&ws);
                let cgroup = ws.cgroup();
                this.remove_all(
                    id.as_str(),
                    &ws.dir,
                    CgroupRef::Known(cgroup.as_deref(), ws.scan_floor()),
                )?;
                tracing::debug!(workspace = %id, "workspace cleaned up");
                Ok(())
            }
            None => this.tear_down_unknown(&id),
        })
        .await
    }

    /// Cleanup of a workspace this backend does not hold (another backend's,
    /// or already gone): leftovers are removed only when no live process
    /// owns them.
    fn tear_down_unknown(&self, id: &WorkspaceId) -> Result<()> {
        match owner_of(id.as_str()) {
            // An owner whose liveness cannot be told counts as alive.
            Some(o) if o != self.inner.owner && !o.is_dead() => {
                tracing::warn!(workspace = %id, owner = o.pid, "not cleaning a workspace owned by a live process");
                Ok(())
            }
            _ => {
                let dir = self.inner.root.join(id.as_str());
                self.remove_all(id.as_str(), &dir, CgroupRef::Lookup)
            }
        }
    }

    /// `residue`: what of workspace `id` is still on the host.
    pub(crate) async fn residue_of(&self, id: &WorkspaceId) -> Result<Vec<String>> {
        let this = self.clone();
        let id = id.clone();
        blocking(move || {
            let mut r = Vec::new();
            let dir = this.inner.root.join(id.as_str());
            if dir.exists() {
                r.push(format!("directory {}", dir.display()));
            }
            if let Some(cg) = this
                .inner
                .cgroups
                .as_ref()
                .ok()
                .and_then(|s| s.load(id.as_str()))
            {
                for d in cg.existing_dirs() {
                    r.push(format!("cgroup {}", d.display()));
                }
                for p in cg.procs() {
                    r.push(format!("process {p} in the workspace cgroup"));
                }
            }
            for p in procfs::processes_in_dir(&dir, PidFloor::Any) {
                r.push(format!(
                    "process {p} with its working directory in the workspace"
                ));
            }
            Ok(r)
        })
        .await
    }

    /// `reap_orphans`: removes the workspaces under the root whose owner is
    /// known to be dead (an owner that cannot be judged keeps its own).
    pub(crate) async fn reap(&self) -> Result<Vec<String>> {
        let this = self.clone();
        blocking(move || {
            let mut reaped = Vec::new();
            let root = &this.inner.root;
            let entries = std::fs::read_dir(root)
                .map_err(|e| NativeOrchestratorError::io("read", root, e))?;
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with("ws-") || WorkspaceId::new(name.clone()).is_err() {
                    continue;
                }
                let live = match owner_of(&name) {
                    Some(o) => o == this.inner.owner || !o.is_dead(),
                    None => false,
                };
                if live {
                    continue;
                }
                let dir = this.inner.root.join(&name);
                this.remove_all(&name, &dir, CgroupRef::Lookup)?;
                reaped.push(format!("native workspace {name} ({})", dir.display()));
            }
            Ok(reaped)
        })
        .await
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        crate::pool::drain(self);
        // Nothing outlives the backend: remove what callers forgot.
        let all: Vec<Arc<Workspace>> = lock(&self.workspaces).drain().map(|(_, w)| w).collect();
        for ws in all {
            NativeOrchestrator::kill_everything(&ws);
            if let Some(sandbox) = ws.started_sandbox() {
                sandbox.close();
            }
            let _ = remove_tree(&ws.dir);
            if let Some(cg) = ws.cgroup() {
                let _ = cg.remove();
            }
        }
    }
}

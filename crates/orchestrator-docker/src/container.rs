//! Workspace containers: creating them hardened (read-only root, private
//! tmpfs `/tmp`, the workspace volume, no capabilities, no_new_privs),
//! starting and removing them (shared by `create_workspace` and the warm
//! pool's refills), and the process-wide list of containers that are alive
//! on purpose.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, ContainerSummary, HostConfig, Mount as BollardMount, MountType,
    MountVolumeOptions,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use orchestrator_core::exec::base_environment;
use orchestrator_core::owner::Owner;
use orchestrator_core::{Mount, ResourceLimits, WorkspaceId};

use crate::client::deadline;
use crate::config::{DockerConfig, LABEL_EXECUTION, LABEL_WORKSPACE, OWNER_LABEL, OWNER_VALUE};
use crate::error::DockerOrchestratorError as E;
use crate::limits;

/// The container's main process, under docker-init: prepares runbox's
/// helper directory, then idles (commands run as execs). Doing the setup
/// here instead of in an exec after start saves a round trip per workspace.
pub(crate) const KEEPALIVE: &str =
    "mkdir -p /run/runbox /workspace && chmod 1777 /run/runbox; while :; do sleep 3600; done";
/// Where the workspace lives inside the container.
pub(crate) const WORKSPACE_DIR: &str = "/workspace";

/// Containers (ids, or names while their creation is in flight) of live
/// workspaces and warm pools of every backend in this process, so
/// `reap_orphans` of one instance never removes another's.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks a container (id or name) as alive on purpose.
pub(crate) fn live_add(container: &str) {
    lock(&LIVE).push(container.to_string());
}

/// Forgets containers marked with [`live_add`].
pub(crate) fn live_remove(containers: &[&str]) {
    lock(&LIVE).retain(|c| !containers.contains(&c.as_str()));
}

/// Settles the mark of a container created under `name` (marked with
/// [`live_add`] before its create request): once created, the mark moves
/// to its id; if the create failed, the name's mark is dropped.
pub(crate) fn settle_live<Er>(name: &str, created: Result<String, Er>) -> Result<String, Er> {
    if let Ok(cid) = &created {
        live_add(cid);
    }
    live_remove(&[name]);
    created
}

/// Whether a listed container is alive on purpose (by id or by name).
pub(crate) fn is_live(c: &ContainerSummary) -> bool {
    let live = lock(&LIVE);
    c.id.as_ref().is_some_and(|id| live.contains(id))
        || c.names
            .iter()
            .flatten()
            .any(|n| live.iter().any(|l| l == n.trim_start_matches('/')))
}

/// Whether a name (a swarm service's) is alive on purpose.
pub(crate) fn is_live_name(name: &str) -> bool {
    lock(&LIVE).iter().any(|l| l == name)
}

/// The owner a container's labels name (`None` without them).
pub(crate) fn owner_of(c: &ContainerSummary) -> Option<Owner> {
    let labels = c.labels.as_ref()?;
    Owner::from_label_fn(OWNER_LABEL, |k| labels.get(k).map(String::as_str))
}

/// Whether this process may remove a container of `owner`: the owner is
/// this process or is known to be gone (an owner on another host never
/// is).
pub(crate) fn gone_or_me(owner: &Owner) -> bool {
    *owner == Owner::current() || owner.is_dead()
}

/// A name part no other backend of this process draws (the counter is
/// process-wide, so a coarse clock cannot make two backends collide).
pub(crate) fn unique(pid: u32) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{pid:x}-{:x}-{n}", nanos & 0xffff_ffff_ffff)
}

/// The name of a workspace's container as created.
pub(crate) fn name_of(id: &WorkspaceId) -> String {
    format!("runbox-{id}")
}

/// The container's own environment, for anything started outside runbox's
/// exec wrapper (`docker exec` by hand): what a command without variables
/// of its own gets.
pub(crate) fn container_env() -> Vec<String> {
    base_environment(WORKSPACE_DIR)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// What a workspace container is made of.
pub(crate) struct Recipe<'a> {
    pub id: &'a WorkspaceId,
    pub image: &'a str,
    /// The spec's labels (the configured ones are always added).
    pub labels: &'a BTreeMap<String, String>,
    pub execution_id: Option<&'a str>,
    pub limits: &'a ResourceLimits,
    /// Host paths bound into the workspace.
    pub mounts: &'a [Mount],
}

/// The workspace directory's anonymous volume: writable although the root
/// filesystem is read-only, and reachable by the daemon's archive API
/// (which refuses a read-only root and cannot see into tmpfs mounts).
/// Removed with the container (`v=true`); labelled like it, so `residue`
/// and `reap_orphans` find one left behind.
pub(crate) fn workspace_volume(labels: &HashMap<String, String>) -> BollardMount {
    BollardMount {
        target: Some(WORKSPACE_DIR.into()),
        typ: Some(MountType::VOLUME),
        volume_options: Some(MountVolumeOptions {
            labels: Some(labels.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The workspace volume, then the recipe's bind mounts under it (the
/// daemon mounts parents first).
fn mounts(mounts: &[Mount], volume_labels: &HashMap<String, String>) -> Vec<BollardMount> {
    let mut all = vec![workspace_volume(volume_labels)];
    all.extend(mounts.iter().map(|m| BollardMount {
        target: Some(m.sandbox().under(WORKSPACE_DIR)),
        source: Some(m.host().to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(m.is_read_only()),
        ..Default::default()
    }));
    all
}

/// The private tmpfs mounts: `/tmp` (size and inode caps from the
/// configuration; executables allowed, as on a normal host) and a small
/// `/run` for runbox's helper state and programs' runtime files.
fn tmpfs(config: &DockerConfig) -> HashMap<String, String> {
    HashMap::from([
        (
            "/tmp".to_string(),
            format!(
                "rw,exec,nosuid,nodev,mode=1777,size={},nr_inodes={}",
                config.tmp_size_bytes, config.tmp_inodes
            ),
        ),
        (
            "/run".to_string(),
            "rw,noexec,nosuid,nodev,mode=755,size=16m,nr_inodes=4096".to_string(),
        ),
    ])
}

/// The hardening every workspace container gets (pooled ones too), on top
/// of its namespaces: no capabilities, no_new_privs (so nothing regains
/// them through a setuid binary), the daemon's default seccomp profile
/// (left in place: a container without `seccomp=unconfined` gets it) and
/// a read-only root filesystem with private tmpfs `/tmp` and `/run` and
/// the workspace volume as the only writable places.
fn harden(config: &DockerConfig, hc: HostConfig) -> HostConfig {
    HostConfig {
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        readonly_rootfs: Some(true),
        tmpfs: Some(tmpfs(config)),
        ..hc
    }
}

/// The labels of a workspace container: the configured ones, the spec's,
/// then runbox's own (owner, workspace, execution), which win.
pub(crate) fn labels(
    config: &DockerConfig,
    owner: &Owner,
    r: &Recipe<'_>,
) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = HashMap::new();
    for (k, v) in config.labels.iter().chain(r.labels.iter()) {
        labels.insert(k.clone(), v.clone());
    }
    labels.insert(OWNER_LABEL.into(), OWNER_VALUE.into());
    labels.insert(LABEL_WORKSPACE.into(), r.id.to_string());
    if let Some(e) = r.execution_id {
        labels.insert(LABEL_EXECUTION.into(), e.to_string());
    }
    labels.extend(owner.labels(OWNER_LABEL));
    labels
}

/// The labels of a workspace volume: owner and workspace.
pub(crate) fn volume_labels(owner: &Owner, id: &WorkspaceId) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = owner.labels(OWNER_LABEL).into_iter().collect();
    labels.insert(OWNER_LABEL.into(), OWNER_VALUE.into());
    labels.insert(LABEL_WORKSPACE.into(), id.to_string());
    labels
}

/// Creates (does not start) a workspace container named [`name_of`] the
/// workspace; returns its id. A 404 means the image is missing.
pub(crate) async fn create(
    docker: &Docker,
    config: &DockerConfig,
    owner: &Owner,
    r: &Recipe<'_>,
) -> Result<String, E> {
    let labels = labels(config, owner, r);
    let volume_labels = volume_labels(owner, r.id);
    let cg = limits::cgroup_fields(r.limits);
    let body = ContainerCreateBody {
        image: Some(r.image.to_string()),
        entrypoint: Some(vec!["sh".into(), "-c".into(), KEEPALIVE.into()]),
        cmd: Some(vec![]),
        env: Some(container_env()),
        working_dir: Some(WORKSPACE_DIR.into()),
        labels: Some(labels),
        stop_timeout: Some(1),
        host_config: Some(harden(
            config,
            HostConfig {
                init: Some(true),
                network_mode: Some(config.network_mode.clone()),
                memory: cg.memory,
                memory_swap: cg.memory_swap,
                nano_cpus: cg.nano_cpus,
                pids_limit: cg.pids_limit,
                mounts: Some(mounts(r.mounts, &volume_labels)),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let name = name_of(r.id);
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    match deadline(
        &config.host_description(),
        "create container",
        config.request_timeout,
        docker.create_container(Some(opts), body),
    )
    .await
    {
        Ok(created) => Ok(created.id),
        Err(e @ E::Timeout { .. }) => {
            // The daemon may still create it: try not to leave it behind
            // (reap_orphans removes it otherwise: it names this process
            // but no live workspace).
            let _ = remove(docker, config, &name).await;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Starts a created container.
pub(crate) async fn start(
    docker: &Docker,
    config: &DockerConfig,
    container: &str,
) -> Result<(), E> {
    deadline(
        &config.host_description(),
        "start container",
        config.request_timeout,
        docker.start_container(container, None),
    )
    .await
}

/// Removes a container by force; a container already gone is fine.
pub(crate) async fn remove(
    docker: &Docker,
    config: &DockerConfig,
    container: &str,
) -> Result<(), E> {
    let opts = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    let host = config.host_description();
    for attempt in 0..50 {
        match deadline(
            &host,
            "remove container",
            config.request_timeout,
            docker.remove_container(container, Some(opts.clone())),
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(e) if e.status_code() == Some(404) => return Ok(()),
            // Removal already in progress: wait for it.
            Err(e) if e.status_code() == Some(409) && attempt < 49 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes containers from synchronous code (a `Drop`), on a helper thread
/// with its own runtime and client, waiting at most 4 × the request
/// deadline. Works while the caller's runtime shuts down. With
/// `await_missing`, a container that does not exist (yet) is looked for
/// again for that long: its creation may still be in flight.
pub(crate) fn remove_blocking(
    config: &DockerConfig,
    containers: Vec<String>,
    await_missing: Duration,
) {
    if containers.is_empty() {
        return;
    }
    let config = config.clone();
    let limit = config.request_timeout * 4;
    crate::blocking::run_bounded("runbox-docker-drop", limit, async move {
        let Ok(docker) = crate::client::negotiated(&config, config.request_timeout).await else {
            return;
        };
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        for c in &containers {
            let until = Instant::now() + await_missing;
            loop {
                let r = tokio::time::timeout(
                    config.request_timeout,
                    docker.remove_container(c, Some(opts.clone())),
                )
                .await;
                let missing = matches!(
                    r,
                    Ok(Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }))
                );
                if !missing || Instant::now() >= until {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_labels_keep_their_names() {
        let labels = Owner::current().labels(OWNER_LABEL);
        let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "io.runbox.owner.boot",
                "io.runbox.owner.host",
                "io.runbox.owner.pid",
                "io.runbox.owner.start"
            ]
        );
    }
}

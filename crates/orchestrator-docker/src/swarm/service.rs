//! A swarm workspace's service: its spec (one replica, restart condition
//! none, hardened container, limits, placement), creating it and waiting
//! until its task runs, and removing it.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, Limit, Mount, MountTmpfsOptions, MountType,
    NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, Task,
    TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::ListTasksOptions;
use orchestrator_core::owner::Owner;
use orchestrator_core::{Error, Result};

use super::config::{SwarmConfig, LABEL_BACKEND, LABEL_CONSTRAINTS};
use super::manager::Managers;
use crate::container::{self, Recipe, KEEPALIVE, WORKSPACE_DIR};
use crate::error::DockerOrchestratorError as E;
use crate::limits;

/// How often a starting task is looked at.
const POLL: Duration = Duration::from_millis(100);
/// How long a task may wait for a node that satisfies its constraints
/// before the workspace is refused: a node may be joining, but a
/// constraint no node meets should not take the whole start deadline.
const NO_NODE_GRACE: Duration = Duration::from_secs(5);

/// The placement constraints a spec's labels ask for (see
/// [`LABEL_CONSTRAINTS`]); a malformed one is InvalidInput.
pub(crate) fn constraints(
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<String>> {
    let Some(v) = labels.get(LABEL_CONSTRAINTS) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for c in v.split(';').map(str::trim).filter(|c| !c.is_empty()) {
        let ok = c
            .split_once("==")
            .or_else(|| c.split_once("!="))
            .is_some_and(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty());
        if !ok {
            return Err(Error::invalid(format!(
                "placement constraint {c:?} (label {LABEL_CONSTRAINTS}) is not ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE"
            )));
        }
        out.push(c.to_string());
    }
    Ok(out)
}

/// The private tmpfs mounts, as service mounts: `/tmp` with the
/// configured size, and a small `/run`.
fn tmpfs_mounts(config: &SwarmConfig) -> Vec<Mount> {
    let tmpfs = |target: &str, size: u64, mode: i64| Mount {
        target: Some(target.into()),
        typ: Some(MountType::TMPFS),
        tmpfs_options: Some(MountTmpfsOptions {
            size_bytes: Some(size as i64),
            mode: Some(mode),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![
        tmpfs("/tmp", config.docker.tmp_size_bytes, 0o1777),
        tmpfs("/run", 16 << 20, 0o755),
    ]
}

/// The spec of workspace `r`'s service, named `name`.
pub(crate) fn spec(
    config: &SwarmConfig,
    owner: &Owner,
    name: &str,
    r: &Recipe<'_>,
) -> Result<ServiceSpec> {
    let mut labels = container::labels(&config.docker, owner, r);
    labels.insert(LABEL_BACKEND.into(), super::BACKEND_NAME.into());
    let mut mounts = vec![container::workspace_volume(&container::volume_labels(
        owner, r.id,
    ))];
    mounts.extend(tmpfs_mounts(config));
    let cg = limits::cgroup_fields(r.limits);
    // Swarm has no predefined "none" network: a task without networks gets
    // the node's default bridge, which `lifecycle` disconnects before the
    // workspace is handed out. Any other mode is the host's network.
    let networks = match config.docker.network_mode.as_str() {
        "none" => vec![],
        _ => vec![NetworkAttachmentConfig {
            target: Some("host".into()),
            ..Default::default()
        }],
    };
    Ok(ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(r.image.to_string()),
                labels: Some(labels),
                command: Some(vec!["sh".into(), "-c".into(), KEEPALIVE.into()]),
                args: Some(vec![]),
                env: Some(container::container_env()),
                dir: Some(WORKSPACE_DIR.into()),
                read_only: Some(true),
                mounts: Some(mounts),
                init: Some(true),
                capability_drop: Some(vec!["ALL".into()]),
                stop_grace_period: Some(config.stop_grace.as_nanos() as i64),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: cg.nano_cpus,
                    memory_bytes: cg.memory,
                    pids: cg.pids_limit,
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                max_attempts: Some(0),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(constraints(r.labels)?),
                ..Default::default()
            }),
            networks: Some(networks),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        // No IPVS needed: no virtual IP.
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The running task of a service: where it runs and its container.
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    pub node_id: String,
    pub container: String,
}

/// The tasks of service `name`; none for a service that is gone (the
/// managers answer 404 for a filter naming an unknown service).
pub(crate) async fn tasks(managers: &Managers, name: &str) -> std::result::Result<Vec<Task>, E> {
    let filters = HashMap::from([("service".to_string(), vec![name.to_string()])]);
    let listed = managers
        .call("list tasks", |d| {
            let opts = ListTasksOptions {
                filters: Some(filters.clone()),
            };
            async move { d.list_tasks(Some(opts)).await }
        })
        .await;
    match listed {
        Err(e) if e.status_code() == Some(404) => Ok(Vec::new()),
        r => r,
    }
}

/// A task's status message and error, for messages.
fn status_text(t: &Task) -> String {
    let s = t.status.as_ref();
    let state = s
        .and_then(|s| s.state)
        .map_or("unknown".to_string(), |s| s.to_string());
    let msg = s.and_then(|s| s.message.clone()).unwrap_or_default();
    let err = s.and_then(|s| s.err.clone()).unwrap_or_default();
    format!(
        "{state}: {msg}{}{err}",
        if err.is_empty() { "" } else { ": " }
    )
}

/// Waits until service `name`'s task runs: its node and container. A
/// task that fails (a missing image, say) or finds no node ends the wait
/// with an error saying why; the start deadline bounds it.
pub(crate) async fn wait_running(
    config: &SwarmConfig,
    managers: &Managers,
    name: &str,
    image: &str,
) -> Result<Placed> {
    let t0 = tokio::time::Instant::now();
    let until = t0 + config.start_timeout;
    let mut last = String::from("no task yet");
    loop {
        for t in tasks(managers, name).await? {
            let s = t.status.as_ref();
            let state = s.and_then(|s| s.state);
            last = status_text(&t);
            let given_up = matches!(
                t.desired_state,
                Some(TaskState::SHUTDOWN | TaskState::REMOVE | TaskState::COMPLETE)
            );
            let not_started = matches!(
                state,
                None | Some(
                    TaskState::NEW
                        | TaskState::ALLOCATED
                        | TaskState::PENDING
                        | TaskState::ASSIGNED
                        | TaskState::ACCEPTED
                        | TaskState::PREPARING
                        | TaskState::READY
                        | TaskState::STARTING
                )
            );
            if given_up && not_started {
                // The swarm shut the task down before it ran (its node was
                // lost, say): with restart condition none nothing replaces it.
                return Err(Error::Unavailable {
                    backend: super::BACKEND_NAME.into(),
                    reason: format!("the swarm gave up the workspace's task before it ran: {last}"),
                });
            }
            match state {
                Some(TaskState::RUNNING) => {
                    let node_id = t.node_id.clone().unwrap_or_default();
                    let container = s
                        .and_then(|s| s.container_status.as_ref())
                        .and_then(|c| c.container_id.clone())
                        .unwrap_or_default();
                    if !node_id.is_empty() && !container.is_empty() {
                        return Ok(Placed { node_id, container });
                    }
                }
                Some(
                    TaskState::FAILED
                    | TaskState::REJECTED
                    | TaskState::COMPLETE
                    | TaskState::SHUTDOWN
                    | TaskState::ORPHANED
                    | TaskState::REMOVE,
                ) => {
                    if last.contains("No such image") {
                        return Err(Error::invalid(format!(
                            "image {image} is not on the swarm node chosen ({last}); \
                             load it there or use a registry the nodes can pull from"
                        )));
                    }
                    return Err(E::Helper {
                        container: name.to_string(),
                        reason: format!("the workspace's task ended before it ran: {last}"),
                    }
                    .into());
                }
                // No node meets the constraints, and none is merely
                // unavailable for now (down, or `unknown` after a leader
                // change): waiting would not help.
                Some(TaskState::PENDING)
                    if last.contains("no suitable node")
                        && !last.contains("not available")
                        && t0.elapsed() >= NO_NODE_GRACE =>
                {
                    return Err(Error::Unavailable {
                        backend: super::BACKEND_NAME.into(),
                        reason: format!("no swarm node can run the workspace: {last}"),
                    });
                }
                _ => {}
            }
        }
        if tokio::time::Instant::now() >= until {
            return Err(Error::Unavailable {
                backend: super::BACKEND_NAME.into(),
                reason: format!(
                    "the workspace's task did not run within {:?}: {last}",
                    config.start_timeout
                ),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Removes service `name`; one already gone is fine.
pub(crate) async fn remove(managers: &Managers, name: &str) -> std::result::Result<(), E> {
    match managers
        .call("remove service", |d| {
            let name = name.to_string();
            async move { d.delete_service(&name).await }
        })
        .await
    {
        Err(e) if e.status_code() == Some(404) => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::{ResourceLimits, WorkspaceId};
    use std::collections::BTreeMap;

    #[test]
    fn constraints_are_split_and_checked() {
        let mut l = BTreeMap::new();
        assert!(constraints(&l).expect("none").is_empty());
        l.insert(
            LABEL_CONSTRAINTS.to_string(),
            "node.hostname==n2; node.labels.disk!=hdd".to_string(),
        );
        assert_eq!(
            constraints(&l).expect("two"),
            ["node.hostname==n2", "node.labels.disk!=hdd"]
        );
        l.insert(LABEL_CONSTRAINTS.to_string(), "node.hostname".to_string());
        assert!(matches!(constraints(&l), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn the_spec_is_one_hardened_replica_with_the_limits() {
        let id = WorkspaceId::new("sw-1").expect("id");
        let lim = ResourceLimits::builder()
            .memory_bytes(64 << 20)
            .pids(50)
            .build()
            .expect("limits");
        let labels = BTreeMap::new();
        let r = Recipe {
            id: &id,
            image: "img",
            labels: &labels,
            execution_id: Some("e1"),
            limits: &lim,
            mounts: &[],
        };
        let s = spec(&SwarmConfig::new(), &Owner::current(), "runbox-sw-1", &r).expect("spec");
        let t = s.task_template.expect("template");
        let c = t.container_spec.expect("container");
        assert_eq!(c.read_only, Some(true));
        assert_eq!(c.init, Some(true));
        assert_eq!(c.capability_drop, Some(vec!["ALL".to_string()]));
        let labels = c.labels.expect("labels");
        assert_eq!(labels["io.runbox.workspace"], "sw-1");
        assert_eq!(labels["io.runbox.execution"], "e1");
        assert_eq!(labels[LABEL_BACKEND], "swarm");
        let lim = t.resources.expect("resources").limits.expect("limits");
        assert_eq!(lim.memory_bytes, Some(64 << 20));
        assert!(lim.pids.is_some_and(|p| p >= 50), "{lim:?}");
        assert_eq!(
            t.restart_policy.expect("restart").condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        assert_eq!(
            s.mode
                .expect("mode")
                .replicated
                .expect("replicated")
                .replicas,
            Some(1)
        );
        // No network: none attached (the default bridge the task gets is
        // disconnected once it runs).
        assert_eq!(t.networks, Some(vec![]));
    }
}

//! The swarm backend on a real multi-node cluster (`cargo xtask swarm-up`):
//! workspaces spread over nodes, limits in the task's cgroup and changed in
//! place, a node's daemon killed and a node's link cut while it runs a
//! workspace. The cases need the cluster and change it (they restore it),
//! so they are ignored by default; `cargo xtask swarm-test` runs them one
//! at a time with `--include-ignored`.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator_core::{
    CommandSpec, Error, Orchestrator, ResourceLimits, WorkspaceId, WorkspaceSpec,
};
use orchestrator_docker::swarm::LABEL_CONSTRAINTS;
use orchestrator_docker::{SwarmConfig, SwarmOrchestrator, TEST_IMAGE};

/// One node of the test cluster, as `cluster.env` describes it.
#[derive(Debug, Clone)]
struct TestNode {
    hostname: String,
    pidfile: String,
    link: String,
    start: String,
}

fn var(k: &str) -> String {
    std::env::var(k)
        .unwrap_or_else(|_| panic!("{k} is not set: run through `cargo xtask swarm-test`"))
}

fn nodes() -> Vec<TestNode> {
    let n: usize = var("RUNBOX_SWARM_NODE_COUNT").parse().expect("node count");
    (1..=n)
        .map(|i| TestNode {
            hostname: var(&format!("RUNBOX_SWARM_NODE_{i}_HOSTNAME")),
            pidfile: var(&format!("RUNBOX_SWARM_NODE_{i}_PIDFILE")),
            link: var(&format!("RUNBOX_SWARM_NODE_{i}_LINK")),
            start: var(&format!("RUNBOX_SWARM_NODE_{i}_START")),
        })
        .collect()
}

fn backend() -> SwarmOrchestrator {
    let mut config = SwarmConfig::from_env();
    assert!(
        !config.managers.is_empty(),
        "RUNBOX_SWARM_MANAGERS is not set: run through `cargo xtask swarm-test`"
    );
    if config.docker.default_image.is_none() {
        config.docker.default_image = Some(TEST_IMAGE.to_string());
    }
    SwarmOrchestrator::new(config).expect("backend")
}

fn on(node: &str) -> WorkspaceSpec {
    WorkspaceSpec::new().label(LABEL_CONSTRAINTS, format!("node.hostname=={node}"))
}

fn sh(script: &str) -> CommandSpec {
    CommandSpec::shell(script).build().expect("command")
}

async fn out(b: &SwarmOrchestrator, id: &WorkspaceId, script: &str) -> String {
    let o = b.run_command(id, &sh(script)).await.expect("run");
    assert!(o.status.success(), "{script}: {o:?}");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Waits until the managers see `hostname` ready (true) or not (false).
async fn await_node(b: &SwarmOrchestrator, hostname: &str, ready: bool, within: Duration) {
    let until = Instant::now() + within;
    loop {
        if let Ok(nodes) = b.nodes().await {
            if nodes
                .iter()
                .any(|n| n.hostname == hostname && n.ready == ready)
            {
                return;
            }
        }
        assert!(
            Instant::now() < until,
            "node {hostname} not ready={ready} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Brings a node back when dropped (a test that fails midway must not
/// leave the cluster broken for the next): its daemon started if it is
/// not running, its link up.
struct Restore(TestNode);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["-n", "runbox-swarm-br", "link", "set", &self.0.link, "up"])
            .status();
        let alive = std::fs::read_to_string(&self.0.pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}/exe")).exists());
        if !alive {
            let _ = Command::new(&self.0.start).status();
        }
    }
}

/// Waits until the managers see every node ready (after a test that
/// killed or cut off one, or a leader change, some are `unknown` a while).
async fn all_ready(b: &SwarmOrchestrator) {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(nodes) = b.nodes().await {
            if !nodes.is_empty() && nodes.iter().all(|n| n.ready) {
                return;
            }
        }
        assert!(
            Instant::now() < until,
            "the swarm's nodes are not all ready"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn run(cmd: &mut Command) {
    let s = cmd.status().expect("spawn");
    assert!(s.success(), "{cmd:?}: {s}");
}

/// Restarts a node's daemon and waits until the managers see it ready.
async fn restart(b: &SwarmOrchestrator, node: &TestNode) {
    run(&mut Command::new(&node.start));
    await_node(b, &node.hostname, true, Duration::from_secs(90)).await;
}

async fn assert_no_residue(b: &SwarmOrchestrator, id: &WorkspaceId, within: Duration) {
    let until = Instant::now() + within;
    loop {
        let left = b.residue(id).await.expect("residue");
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "workspace {id} left {left:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the swarm test cluster: cargo xtask swarm-test"]
async fn twelve_concurrent_workspaces_spread_over_the_nodes() {
    let b = std::sync::Arc::new(backend());
    all_ready(&b).await;
    let made = futures_util::future::join_all((0..12).map(|i| {
        let b = b.clone();
        async move {
            let id = b
                .create_workspace(&WorkspaceSpec::new())
                .await
                .expect("create");
            let got = out(&b, &id, &format!("echo {i} > n && cat n")).await;
            assert_eq!(got, i.to_string());
            (id.clone(), b.node_of(&id).expect("node"))
        }
    }))
    .await;
    let spread: BTreeSet<&String> = made.iter().map(|(_, n)| n).collect();
    assert!(spread.len() >= 2, "all twelve on {spread:?}");
    futures_util::future::join_all(made.iter().map(|(id, _)| b.cleanup(id)))
        .await
        .into_iter()
        .collect::<orchestrator_core::Result<Vec<()>>>()
        .expect("cleanup");
    for (id, _) in &made {
        assert_no_residue(&b, id, Duration::from_secs(5)).await;
    }
}

/// `cat` of the first file that exists, inside the container.
fn read_cgroup(v1: &str, v2: &str) -> String {
    format!("cat /sys/fs/cgroup/{v1} 2>/dev/null || cat /sys/fs/cgroup/{v2}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the swarm test cluster: cargo xtask swarm-test"]
async fn limits_are_in_the_task_cgroup_and_change_in_place() {
    let b = backend();
    all_ready(&b).await;
    let lim = ResourceLimits::builder()
        .memory_bytes(64 << 20)
        .pids(64)
        .cpus(0.5)
        .build()
        .expect("limits");
    let id = b
        .create_workspace(&WorkspaceSpec::new().limits(lim))
        .await
        .expect("create");
    let mem = read_cgroup("memory/memory.limit_in_bytes", "memory.max");
    assert_eq!(out(&b, &id, &mem).await, (64u64 << 20).to_string());
    let pids: u64 = out(&b, &id, &read_cgroup("pids/pids.max", "pids.max"))
        .await
        .parse()
        .expect("pids");
    assert!((64..=80).contains(&pids), "pids.max {pids}");
    let quota = out(&b, &id, &read_cgroup("cpu/cpu.cfs_quota_us", "cpu.max")).await;
    assert!(quota.starts_with("50000"), "cpu quota {quota}");
    // In place: the same container (a file written before survives), new
    // limits.
    out(&b, &id, "echo kept > marker").await;
    let before = out(&b, &id, "cat /proc/1/stat | cut -d' ' -f22").await;
    let more = ResourceLimits::builder()
        .memory_bytes(96 << 20)
        .build()
        .expect("limits");
    b.apply_resource_limits(&id, &more).await.expect("apply");
    assert_eq!(out(&b, &id, &mem).await, (96u64 << 20).to_string());
    assert_eq!(out(&b, &id, "cat marker").await, "kept");
    assert_eq!(
        out(&b, &id, "cat /proc/1/stat | cut -d' ' -f22").await,
        before,
        "the container restarted"
    );
    b.cleanup(&id).await.expect("cleanup");
    assert_no_residue(&b, &id, Duration::from_secs(5)).await;
}

/// A workspace on `victim` running a long command, and one on `other`.
struct Doomed {
    b: Arc<SwarmOrchestrator>,
    doomed: WorkspaceId,
    safe: WorkspaceId,
    running: tokio::task::JoinHandle<orchestrator_core::Result<orchestrator_core::ExecOutput>>,
}

async fn doomed_and_safe(victim: &TestNode, other: &TestNode) -> Doomed {
    let b = Arc::new(backend());
    all_ready(&b).await;
    let doomed = b
        .create_workspace(&on(&victim.hostname))
        .await
        .expect("create on victim");
    let safe = b
        .create_workspace(&on(&other.hostname))
        .await
        .expect("create on other");
    assert_eq!(
        b.node_of(&doomed).as_deref(),
        Some(victim.hostname.as_str())
    );
    let (b2, d2) = (b.clone(), doomed.clone());
    let running = tokio::spawn(async move { b2.run_command(&d2, &sh("sleep 300")).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    Doomed {
        b,
        doomed,
        safe,
        running,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the swarm test cluster: cargo xtask swarm-test"]
async fn a_workspace_on_a_node_whose_daemon_is_killed_fails_fast_and_cleans_up() {
    let nodes = nodes();
    assert!(nodes.len() >= 3, "needs three nodes");
    let (victim, other) = (&nodes[2], &nodes[0]);
    let _restore = Restore(victim.clone());
    let Doomed {
        b,
        doomed,
        safe,
        running,
    } = doomed_and_safe(victim, other).await;
    let pid = std::fs::read_to_string(&victim.pidfile).expect("pidfile");
    run(Command::new("kill").args(["-KILL", pid.trim()]));
    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the running command hung after its node's daemon died")
        .expect("join");
    assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
    let r = b.run_command(&doomed, &sh("true")).await;
    assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
    eprintln!(
        "the killed node's workspace failed after {:?}",
        t0.elapsed()
    );
    // The rest of the swarm goes on.
    assert_eq!(out(&b, &safe, "echo alive").await, "alive");
    let t1 = Instant::now();
    b.cleanup(&doomed)
        .await
        .expect("cleanup of the lost workspace");
    assert!(
        t1.elapsed() < Duration::from_secs(60),
        "cleanup took {:?}",
        t1.elapsed()
    );
    b.cleanup(&safe).await.expect("cleanup");
    restart(&b, victim).await;
    assert_no_residue(&b, &doomed, Duration::from_secs(60)).await;
    assert_no_residue(&b, &safe, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the swarm test cluster: cargo xtask swarm-test"]
async fn a_workspace_on_a_node_cut_off_is_lost_within_bounded_time() {
    let nodes = nodes();
    assert!(nodes.len() >= 3, "needs three nodes");
    let (victim, other) = (&nodes[1], &nodes[0]);
    let _restore = Restore(victim.clone());
    let Doomed {
        b,
        doomed,
        safe,
        running,
    } = doomed_and_safe(victim, other).await;
    let link = |state: &str| {
        run(Command::new("ip").args(["-n", "runbox-swarm-br", "link", "set", &victim.link, state]));
    };
    link("down");
    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), running).await;
    let lost_after = t0.elapsed();
    let cleanup = b.cleanup(&doomed).await;
    let still = out(&b, &safe, "echo alive").await;
    link("up");
    let r = r
        .expect("the running command hung after its node was cut off")
        .expect("join");
    assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
    eprintln!("the cut-off node's workspace failed after {lost_after:?}");
    cleanup.expect("cleanup of the lost workspace");
    assert_eq!(still, "alive");
    b.cleanup(&safe).await.expect("cleanup");
    await_node(&b, &victim.hostname, true, Duration::from_secs(90)).await;
    assert_no_residue(&b, &doomed, Duration::from_secs(60)).await;
    assert_no_residue(&b, &safe, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the swarm test cluster: cargo xtask swarm-test"]
async fn a_node_without_an_endpoint_is_a_clear_unavailable_error() {
    // A label no node carries: every node lacks an endpoint.
    let mut config = SwarmConfig::from_env().endpoint_label("io.runbox.test.no-such-label");
    config.docker.default_image = Some(TEST_IMAGE.to_string());
    let b = SwarmOrchestrator::new(config).expect("backend");
    all_ready(&b).await;
    match b.create_workspace(&WorkspaceSpec::new()).await {
        Err(Error::Unavailable { backend, reason }) => {
            assert_eq!(backend, "swarm");
            assert!(
                reason.contains("runbox-swarm-n") && reason.contains("RUNBOX_SWARM_NODES"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    // And nothing of it is left: its service was removed.
    let services = b.reap_orphans().await.expect("reap");
    assert!(services.is_empty(), "{services:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the swarm test cluster: cargo xtask swarm-test"]
async fn configured_endpoints_by_hostname_are_used() {
    let nodes = nodes();
    let mut config = SwarmConfig::from_env().endpoint_label("io.runbox.test.no-such-label");
    for (i, n) in nodes.iter().enumerate() {
        config = config.node(
            &n.hostname,
            var(&format!("RUNBOX_SWARM_NODE_{}_SOCKET", i + 1)),
        );
    }
    config.docker.default_image = Some(TEST_IMAGE.to_string());
    let b = SwarmOrchestrator::new(config).expect("backend");
    all_ready(&b).await;
    let id = b
        .create_workspace(&on(&nodes[0].hostname))
        .await
        .expect("create");
    assert_eq!(out(&b, &id, "echo ok").await, "ok");
    b.cleanup(&id).await.expect("cleanup");
    assert_no_residue(&b, &id, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the swarm test cluster: cargo xtask swarm-test"]
async fn a_constraint_no_node_meets_is_refused_and_leaves_nothing() {
    let b = backend();
    all_ready(&b).await;
    let t0 = Instant::now();
    let r = b.create_workspace(&on("no-such-node")).await;
    assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    let bad = b
        .create_workspace(&WorkspaceSpec::new().label(LABEL_CONSTRAINTS, "node.hostname"))
        .await;
    assert!(matches!(bad, Err(Error::InvalidInput(_))), "{bad:?}");
}

/// The hostname of the swarm's leader, asked through the docker CLI.
fn leader(nodes: &[TestNode], sockets: &[String]) -> String {
    for sock in sockets {
        let out = Command::new("docker")
            .args([
                "-H",
                sock,
                "node",
                "ls",
                "--format",
                "{{.Hostname}} {{.ManagerStatus}}",
            ])
            .output()
            .expect("docker node ls");
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(l) = text.lines().find(|l| l.ends_with(" Leader")) {
            let host = l.split_whitespace().next().unwrap_or_default().to_string();
            assert!(nodes.iter().any(|n| n.hostname == host), "{text}");
            return host;
        }
    }
    panic!("no manager names a leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the swarm test cluster: cargo xtask swarm-test"]
async fn a_killed_leader_is_failed_over_and_workspaces_go_on() {
    let nodes = nodes();
    assert!(nodes.len() >= 3, "needs three managers");
    let sockets: Vec<String> = (1..=nodes.len())
        .map(|i| var(&format!("RUNBOX_SWARM_NODE_{i}_SOCKET")))
        .collect();
    let b = backend();
    all_ready(&b).await;
    let boss = leader(&nodes, &sockets);
    let victim = nodes
        .iter()
        .find(|n| n.hostname == boss)
        .expect("leader node")
        .clone();
    let other = nodes
        .iter()
        .find(|n| n.hostname != boss)
        .expect("another node")
        .clone();
    let _restore = Restore(victim.clone());
    let pid = std::fs::read_to_string(&victim.pidfile).expect("pidfile");
    run(Command::new("kill").args(["-KILL", pid.trim()]));
    // The first writes meet no leader (or a lost one) until the remaining
    // managers elect one: the backend retries across them.
    let t0 = Instant::now();
    let id = b
        .create_workspace(&on(&other.hostname))
        .await
        .expect("create while the leader is gone");
    eprintln!(
        "created {:?} after the leader's daemon was killed",
        t0.elapsed()
    );
    assert_eq!(out(&b, &id, "echo after failover").await, "after failover");
    b.cleanup(&id).await.expect("cleanup");
    assert_no_residue(&b, &id, Duration::from_secs(10)).await;
    restart(&b, &victim).await;
}

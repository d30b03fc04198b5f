//! A node's daemon: its `daemon.json`, and the `start.sh` that (re)starts it
//! in the node's namespaces; swarm-up starts every node through start.sh so
//! a test restarting a node gets exactly the daemon swarm-up made.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{capture, command, net, secs, write_atomic, Node};

/// How long start.sh waits for the daemon's socket to answer.
const START_LIMIT_SECS: u32 = 30;

/// Makes the node's directory, daemon.json and start.sh.
pub fn write_files(node: &Node) -> Result<()> {
    for d in [&node.dir, &node.data_root(), &node.exec_root()] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    write_atomic(&node.daemon_json(), &daemon_json(node))?;
    let start = node.start_sh();
    write_atomic(&start, &start_sh(node))?;
    std::fs::set_permissions(&start, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", start.display()))
}

/// The daemon's whole configuration: passed with `--config-file`, which
/// also keeps the host's /etc/docker/daemon.json (its data-root and
/// storage driver) out of it. vfs needs nothing from the kernel; the
/// cgroup parent makes the node's containers findable on teardown.
/// `no-new-privileges` is what the swarm backend asks of every node: a
/// service on API 1.41 cannot ask it per container.
fn daemon_json(node: &Node) -> String {
    format!(
        r#"{{
  "data-root": "{data}",
  "exec-root": "{exec}",
  "pidfile": "{pid}",
  "hosts": ["{endpoint}"],
  "storage-driver": "vfs",
  "cgroup-parent": "{cgroup}",
  "no-new-privileges": true,
  "log-driver": "json-file",
  "log-opts": {{"max-size": "10m", "max-file": "2"}}
}}
"#,
        data = node.data_root().display(),
        exec = node.exec_root().display(),
        pid = node.pidfile().display(),
        endpoint = node.endpoint(),
        cgroup = node.cgroup_parent(),
    )
}

/// The start script. Paths are plain (checked by `Layout::from_env`), so
/// they go in unquoted-safe as they are.
fn start_sh(node: &Node) -> String {
    let name = node.name();
    format!(
        r#"#!/bin/sh
# Starts swarm test node {index}'s dockerd as `cargo xtask swarm-up` does
# (written by xtask/src/swarm/node.rs) and returns once its socket answers,
# failing after {limit} s. Safe to run after a SIGKILL left the pidfile and
# the socket behind, and a no-op wait when the daemon already runs.
set -u
NAME={name}
CONFIG={config}
PIDFILE={pidfile}
SOCK={sock}
LOG={log}
NETNS={netns_dir}/{netns}
CONTAINERD_PIDFILE={exec}/containerd/containerd.pid
CONTAINERD_CONFIG={exec}/containerd/containerd.toml

# True for a running process (not a zombie: kill -0 succeeds on zombies,
# and some hosts' init reaps orphans late) whose command line holds $2.
running() {{
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
    [ -n "$state" ] && [ "$state" != Z ] || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}}
# docker info, bounded by what is left of the deadline.
answers() {{
    left=$((deadline - $(date +%s)))
    [ "$left" -gt 0 ] && timeout "$left" docker -H "unix://$SOCK" info >/dev/null 2>&1
}}
unset DOCKER_HOST DOCKER_CONTEXT
deadline=$(($(date +%s) + {limit}))

if ! running "$(cat "$PIDFILE" 2>/dev/null)" "$CONFIG"; then
    # Left by a killed daemon: dockerd refuses a pidfile whose pid exists
    # (a zombie, or by now someone else), and takes a containerd pidfile
    # whose pid exists for a containerd to reuse, then times out on it.
    rm -f "$PIDFILE" "$SOCK"
    if ! running "$(cat "$CONTAINERD_PIDFILE" 2>/dev/null)" "$CONTAINERD_CONFIG"; then
        rm -f "$CONTAINERD_PIDFILE"
    fi
    echo "--- start.sh $(date -u +%FT%TZ)" >>"$LOG"
    # setsid -f: the daemon outlives this script and is out of the caller's
    # session (no terminal signals); its output goes to the log so it holds
    # none of the caller's pipes. nsenter --net, not `ip netns exec`, which
    # remounts /sys and leaves the daemon without a devices cgroup;
    # unshare -u gives the node its own hostname.
    setsid -f nsenter --net="$NETNS" unshare -u \
        sh -c "hostname $NAME && exec dockerd --config-file $CONFIG" \
        </dev/null >>"$LOG" 2>&1
fi

while [ "$(date +%s)" -lt "$deadline" ]; do
    if answers; then
        exit 0
    fi
    # Give up early once no process of the launch (setsid, nsenter,
    # unshare, sh, dockerd: all carry the config path) is left.
    if ! pgrep -f -- "--config-file $CONFIG" >/dev/null; then
        echo "start.sh: $NAME's dockerd exited; end of $LOG:" >&2
        tail -n 15 "$LOG" >&2
        exit 1
    fi
    sleep 0.1
done
echo "start.sh: $NAME's dockerd did not answer on $SOCK within {limit} s; end of $LOG:" >&2
tail -n 15 "$LOG" >&2
exit 1
"#,
        index = node.index,
        limit = START_LIMIT_SECS,
        config = node.daemon_json().display(),
        pidfile = node.pidfile().display(),
        sock = node.sock().display(),
        log = node.log().display(),
        netns_dir = net::NETNS_DIR,
        netns = node.netns(),
        exec = node.exec_root().display(),
    )
}

/// Starts every node's daemon at once through its start.sh and waits for
/// all of them.
pub fn start_all(nodes: &[Node]) -> Result<()> {
    let t0 = Instant::now();
    // A little over start.sh's own limit, so its message is the one seen.
    let limit = Duration::from_secs(u64::from(START_LIMIT_SECS) + 10);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|n| {
                s.spawn(move || {
                    capture(&mut command(&n.start_sh().display().to_string()), limit)
                        .map(drop)
                        .with_context(|| format!("starting {}", n.name()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")))
            })
            .collect()
    });
    results.into_iter().collect::<Result<()>>()?;
    eprintln!("xtask swarm: {} daemons up in {}", nodes.len(), secs(t0));
    Ok(())
}

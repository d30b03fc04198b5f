//! Cases: what a fully isolated workspace's network reaches: a host
//! loopback listener and a host abstract unix socket are out of reach under
//! network `none` and reachable under `host`, as the workspace's isolation
//! report says.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::orchestrator::Orchestrator;
use crate::types::NetworkMode;

use crate::conformance::support::*;

/// A host loopback TCP listener and a host abstract unix socket follow the
/// workspace's reported network: under `none` neither is in the
/// workspace's socket tables nor reachable with `nc`; under `host` both are
/// listed and `nc` gets the listener's greeting. (Abstract unix sockets
/// belong to a network namespace, as /proc/net/unix does, so being listed
/// there is being reachable.)
pub async fn host_loopback_and_abstract_sockets_follow_the_network(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let network = o.isolation(&id).await.expect("isolation report").network;
    let greeting = token("greeting");
    let server = Greeter::start(&greeting);
    let port = server.port;
    let abstract_name = token("abstract");
    let _unix = abstract_listener(&abstract_name);
    let host_tcp = std::fs::read_to_string("/proc/net/tcp").expect("host /proc/net/tcp");
    let host_unix = std::fs::read_to_string("/proc/net/unix").expect("host /proc/net/unix");
    assert!(
        tcp_listed(&host_tcp, port),
        "the probe cannot see the host listener"
    );
    assert!(
        unix_listed(&host_unix, &abstract_name),
        "the probe cannot see the host socket"
    );

    let script = format!(
        "cat /proc/net/tcp || echo no-tcp-table; echo ===; cat /proc/net/unix || echo no-unix-table; \
         echo ===; if command -v nc >/dev/null 2>&1; then nc -w 3 127.0.0.1 {port} </dev/null 2>&1; \
         echo \"nc $?\"; else echo no-nc; fi"
    );
    let out = sh(o, &id, &script).await;
    let text = out.stdout_str().to_string();
    let parts: Vec<&str> = text.split("===\n").collect();
    assert_eq!(parts.len(), 3, "{}", describe(&out));
    let (tcp, unix, nc) = (parts[0], parts[1], parts[2]);
    assert!(
        !tcp.contains("no-tcp-table") && !unix.contains("no-unix-table"),
        "the workspace cannot read its socket tables: {}",
        describe(&out)
    );
    if nc.trim() == "no-nc" {
        eprintln!("host_loopback_and_abstract_sockets_follow_the_network: no nc inside; the connect sub-check is skipped");
    }
    match network {
        NetworkMode::None => {
            assert!(
                !tcp_listed(tcp, port),
                "host listener {port} listed inside: {tcp}"
            );
            assert!(
                !unix_listed(unix, &abstract_name),
                "host abstract socket listed inside"
            );
            assert!(
                !nc.contains(&greeting),
                "the host listener was reached: {nc}"
            );
        }
        NetworkMode::Host => {
            assert!(
                tcp_listed(tcp, port),
                "host listener {port} not listed under host network"
            );
            assert!(
                unix_listed(unix, &abstract_name),
                "host abstract socket not listed under host network"
            );
            if nc.trim() != "no-nc" {
                assert!(
                    nc.contains(&greeting),
                    "the host listener was not reached: {nc}"
                );
            }
        }
    }
    done(o, &id).await;
}

/// A loopback TCP listener that writes `greeting` to each connection, on
/// a thread, until dropped.
struct Greeter {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Greeter {
    fn start(greeting: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("host listener");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let greeting = greeting.to_string();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.write_all(greeting.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Greeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A host unix listener on the abstract name `name`, kept while held.
fn abstract_listener(name: &str) -> std::os::unix::net::UnixListener {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .expect("abstract address");
    std::os::unix::net::UnixListener::bind_addr(&addr).expect("abstract listener")
}

/// Whether a /proc/net/tcp table lists a listener on 127.0.0.1:`port`.
fn tcp_listed(table: &str, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    table.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A")
    })
}

/// Whether a /proc/net/unix table lists the abstract socket `name`.
fn unix_listed(table: &str, name: &str) -> bool {
    let shown = format!("@{name}");
    table
        .lines()
        .any(|l| l.split_whitespace().last() == Some(shown.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_tables_are_parsed() {
        let tcp = "  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A 0\n   1: 0100007F:0050 0100007F:9000 01 0\n";
        assert!(tcp_listed(tcp, 0x1f90));
        assert!(
            !tcp_listed(tcp, 0x50),
            "an established socket is not a listener"
        );
        let unix = "Num RefCount Protocol Flags Type St Inode Path\n0: 2 0 10000 1 1 7 @runbox-x\n0: 2 0 10000 1 1 8 /run/s\n";
        assert!(unix_listed(unix, "runbox-x"));
        assert!(!unix_listed(unix, "runbox"));
    }

    #[test]
    fn the_host_sees_its_own_probes() {
        let server = Greeter::start("hi");
        let name = token("abstract");
        let _l = abstract_listener(&name);
        let tcp = std::fs::read_to_string("/proc/net/tcp").expect("tcp");
        assert!(tcp_listed(&tcp, server.port));
        let unix = std::fs::read_to_string("/proc/net/unix").expect("unix");
        assert!(unix_listed(&unix, &name));
        assert_ne!(token("a"), token("a"));
    }
}

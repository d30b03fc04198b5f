//! With `DOCKER_HOST` pointing at a dead socket, the registered `docker`
//! backend answers `is_available` false within 2 s. (Its own test binary:
//! it changes the process environment.)

use std::time::{Duration, Instant};

use orchestrator_docker as _;

#[tokio::test]
async fn docker_host_dead_socket_unavailable_within_2s() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    std::env::set_var("DOCKER_HOST", format!("unix://{}", sock.display()));
    assert!(orchestrator_core::registry::names().contains(&"docker"));
    let b = orchestrator_core::registry::create("docker").expect("docker backend");
    let t = Instant::now();
    let a = b.is_available().await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(!a.is_available());
    let reason = a.reason().unwrap_or_default();
    assert!(reason.contains("dead.sock"), "{reason}");
}

//! The registered `docker` backend takes the registry's options: `image`,
//! `pool_size` and the settings `host`, `network` and `isolation`; anything
//! else is InvalidInput. (Its
//! own test binary: it changes the process environment.)

use orchestrator_core::{registry, BackendOptions, Error};
use orchestrator_docker::{BACKEND_NAME, TEST_IMAGE};

fn invalid(options: &BackendOptions) -> String {
    match registry::create_with(BACKEND_NAME, options) {
        Err(Error::InvalidInput(msg)) => msg,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[tokio::test]
async fn registry_options_configure_the_backend() {
    std::env::remove_var("RUNBOX_DOCKER_IMAGE");
    let msg = invalid(&BackendOptions::new().setting("nope", "1"));
    assert!(msg.contains("nope"), "{msg}");
    let msg = invalid(&BackendOptions::new().setting("network", "bridge"));
    assert!(msg.contains("bridge"), "{msg}");
    let msg = invalid(&BackendOptions::new().setting("isolation", "partial"));
    assert!(msg.contains("partial"), "{msg}");
    let host_net = registry::create_with(
        BACKEND_NAME,
        &BackendOptions::new()
            .setting("network", "host")
            .setting("isolation", "full"),
    )
    .expect("docker backend with host network");
    let caps = host_net.capabilities();
    assert!(caps.isolation && !caps.network_isolation, "{caps:?}");
    let msg = invalid(&BackendOptions::new().pool_size(2));
    assert!(msg.contains("image"), "{msg}");
    let msg = invalid(&BackendOptions::new().image(TEST_IMAGE).pool_size(65));
    assert!(msg.contains("65"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nobody.sock");
    let b = registry::create_with(
        BACKEND_NAME,
        &BackendOptions::new()
            .image(TEST_IMAGE)
            .pool_size(2)
            .setting("host", format!("unix://{}", sock.display())),
    )
    .expect("docker backend");
    let a = b.is_available().await;
    assert!(!a.is_available());
    let reason = a.reason().unwrap_or_default();
    assert!(reason.contains("nobody.sock"), "{reason}");
}

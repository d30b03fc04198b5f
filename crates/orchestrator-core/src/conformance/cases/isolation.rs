//! Cases: what a command sees of the service (its environment).

use std::time::Duration;

use crate::orchestrator::Orchestrator;
use crate::types::CommandSpec;

use crate::conformance::harness::scaled;
use crate::conformance::support::*;

/// The service's own environment does not leak; PATH and HOME are set; the
/// caller's variables are visible.
pub async fn env_is_clean_and_caller_env_visible(o: &dyn Orchestrator) {
    let id = new_ws(o).await;
    let secret = "RUNBOX_CONFORMANCE_SECRET";
    // SAFETY-free: set_var is safe in edition 2021; the variable is unique.
    std::env::set_var(secret, "leaked");
    let out = run(
        o,
        &id,
        CommandSpec::new(["env"])
            .env("RUNBOX_CALLER_VAR", "visible value")
            .timeout(scaled(Duration::from_secs(30))),
    )
    .await;
    expect_exit(&out, 0);
    let env = out.stdout_str().to_string();
    assert!(!env.contains(secret), "service env leaked: {env}");
    assert!(env.contains("RUNBOX_CALLER_VAR=visible value"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    assert!(env.lines().any(|l| l.starts_with("HOME=")), "{env}");
    for l in env.lines() {
        let name = l.split('=').next().unwrap_or("");
        assert!(
            !["SSH_AUTH_SOCK", "CARGO", "RUST_LOG", "DOCKER_HOST", "CI"].contains(&name),
            "service variable {name} leaked"
        );
    }
    done(o, &id).await;
}

//! The shared conformance suite against the native backend.
//!
//! As root on a host with writable cgroups every case runs; elsewhere cases
//! needing a capability the host lacks are reported as ignored.
//! `RUNBOX_NATIVE_ISOLATION` (auto|full|none), `RUNBOX_NATIVE_NETWORK`
//! (none|host) and `RUNBOX_NATIVE_POOL` (a warm pool's size) configure the
//! backend under test.

use std::sync::Arc;

use orchestrator_core::{Orchestrator, Result};
use orchestrator_native::{CgroupVersion, NativeConfig, NativeOrchestrator};

async fn factory() -> Result<Arc<dyn Orchestrator>> {
    let mut config = NativeConfig::default();
    if std::env::var("RUNBOX_NATIVE_NO_CGROUPS").as_deref() == Ok("1") {
        config.use_cgroups = false;
    }
    // Lanes run the suite isolated (the default, `auto`, asserted with
    // `full` by lanes that must not fall back), as host processes
    // (`none`: the isolation cases are ignored, visibly), and with the host
    // network.
    if let Ok(mode) = std::env::var("RUNBOX_NATIVE_ISOLATION") {
        config.isolation = mode
            .parse()
            .unwrap_or_else(|e| panic!("RUNBOX_NATIVE_ISOLATION: {e}"));
    }
    if let Ok(net) = std::env::var("RUNBOX_NATIVE_NETWORK") {
        config.network = net
            .parse()
            .unwrap_or_else(|e| panic!("RUNBOX_NATIVE_NETWORK: {e}"));
    }
    // `RUNBOX_NATIVE_POOL=N`: every case runs on workspaces from a warm
    // pool (filled before the case starts).
    if let Ok(n) = std::env::var("RUNBOX_NATIVE_POOL") {
        config.warm_pool = n
            .parse()
            .unwrap_or_else(|e| panic!("RUNBOX_NATIVE_POOL={n:?}: {e}"));
    }
    let orch = NativeOrchestrator::new(config)?;
    if let Some(why) = orch.isolation_unavailable_reason() {
        eprintln!("note: native conformance without isolation: {why}");
    }
    orch.warm_up().await?;
    // `cargo xtask vm-test` sets this to prove every case ran on cgroup v2.
    if let Ok(expect) = std::env::var("RUNBOX_EXPECT_CGROUP") {
        let want = match expect.as_str() {
            "v2" => Some(CgroupVersion::V2),
            "v1" => Some(CgroupVersion::V1),
            other => panic!("RUNBOX_EXPECT_CGROUP={other:?}: expected v1 or v2"),
        };
        assert_eq!(
            orch.cgroup_version(),
            want,
            "RUNBOX_EXPECT_CGROUP={expect} but the native backend uses {:?} ({:?})",
            orch.cgroup_version(),
            orch.cgroup_unavailable_reason()
        );
    }
    Ok(Arc::new(orch))
}

orchestrator_core::conformance_tests!(factory);

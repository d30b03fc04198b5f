//! The shared conformance suite against the native backend.
//!
//! As root on a host with writable cgroups every case runs; elsewhere cases
//! needing a capability the host lacks are reported as ignored.

use std::sync::Arc;

use orchestrator_core::{Orchestrator, Result};
use orchestrator_native::{CgroupVersion, NativeConfig, NativeOrchestrator};

async fn factory() -> Result<Arc<dyn Orchestrator>> {
    let mut config = NativeConfig::default();
    if std::env::var("RUNBOX_NATIVE_NO_CGROUPS").as_deref() == Ok("1") {
        config.use_cgroups = false;
    }
    let orch = NativeOrchestrator::new(config)?;
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

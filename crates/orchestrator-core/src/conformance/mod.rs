//! The shared conformance suite every backend runs against itself.
//!
//! Each case is a plain `pub async fn(&dyn Orchestrator)` that panics on
//! failure, so a backend can also call single cases from its own tests. The
//! [`conformance_tests!`](crate::conformance_tests) macro turns the whole
//! suite into one test per case in a `harness = false` test target:
//!
//! ```toml
//! [[test]]
//! name = "conformance"
//! harness = false
//! ```
//!
//! ```ignore
//! // tests/conformance.rs
//! async fn factory() -> orchestrator_core::Result<std::sync::Arc<dyn orchestrator_core::Orchestrator>> {
//!     Ok(std::sync::Arc::new(MyBackend::new()?))
//! }
//! orchestrator_core::conformance_tests!(factory);
//! // or, for a backend that needs a service which CI must provide:
//! // orchestrator_core::conformance_tests!(factory, require_env = "RUNBOX_REQUIRE_DOCKER");
//! ```
//!
//! Cases are gated on [`Capabilities`](crate::Capabilities): a case the
//! backend does not claim is reported as *ignored* with the reason, never as
//! passed. When the backend is
//! unavailable every case is ignored, unless the `require_env` variable is
//! `1`, in which case every case fails.
//!
//! The harness wraps the backend so it knows every workspace a case created;
//! after the case it checks each one's [`Orchestrator::residue`] is empty
//! (and cleans up after a failed case so one failure does not leak).
//!
//! Time bounds inside cases are generous and multiplied by the
//! `RUNBOX_TEST_TIME_SCALE` environment variable (default 1; the cgroup v2 VM
//! lane sets it, since code there runs several times slower).
//!
//! One case needs a second process: `cleanup_leaves_a_live_owners_workspace`
//! (for backends claiming [`Capabilities::cross_process`](crate::Capabilities::cross_process))
//! re-executes the test binary with [`OWNER_ENV`] set, and the macro's
//! `main` then only creates and holds one workspace for it. Run outside
//! that `main`, the case fails with a message saying so.
//!
//! The isolation cases (`cases/sandbox.rs`, for backends claiming
//! [`Capabilities::isolation`](crate::Capabilities::isolation)) run
//! commands that would harm the host if they ran on it (`kill -9 -1`,
//! writes under /usr, `mount`) only after proving, in the same workspace,
//! that a host process is invisible there and pid 1 is not the host's.
//!
//! The cases live in `cases/`, one module per area of the contract
//! (`contract` holds the points the trait documents); the `harness` module
//! runs them, `owner` is the second owner process and `support` holds the
//! helpers they share.

mod cases;
mod harness;
mod owner;
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;
use crate::limits::LimitKind;
use crate::orchestrator::Orchestrator;

pub use cases::background::*;
pub use cases::concurrency::*;
pub use cases::contract::*;
pub use cases::copy::*;
pub use cases::io::*;
pub use cases::isolation::*;
pub use cases::lifecycle::*;
pub use cases::limits::*;
pub use cases::mounts::*;
pub use cases::network::*;
pub use cases::paths::*;
pub use cases::process::*;
pub use cases::sandbox::*;
pub use harness::{
    case_deadline, run_case, run_main, scaled, time_scale, Case, Requirement, Tracked,
};
pub use owner::OWNER_ENV;

#[doc(hidden)]
pub use libtest_mimic;

/// A boxed future, as returned by the factory and by case wrappers.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Creates the backend under test; called once per case.
pub type Factory = Arc<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn Orchestrator>>> + Send + Sync>;

macro_rules! cases {
    ($($f:ident => $req:expr),* $(,)?) => {
        /// Every case of the suite, in order.
        pub fn all_cases() -> Vec<Case> {
            vec![$(Case {
                name: stringify!($f),
                requires: $req,
                run: {
                    fn wrap<'a>(o: &'a dyn Orchestrator) -> BoxFuture<'a, ()> {
                        Box::pin($f(o))
                    }
                    wrap
                },
            }),*]
        }
    };
}

cases! {
    create_cleanup_roundtrip => Requirement::None,
    cleanup_is_idempotent => Requirement::None,
    unknown_workspace_is_not_found => Requirement::None,
    cleaned_workspace_is_not_found => Requirement::None,
    invalid_commands_rejected => Requirement::None,
    copy_file_roundtrip_binary_and_empty => Requirement::Copy,
    copy_large_file => Requirement::Copy,
    copy_nested_directory => Requirement::Copy,
    copy_missing_source_is_not_found => Requirement::Copy,
    copy_out_never_replaces_host_directories => Requirement::Copy,
    path_escape_dotdot_rejected => Requirement::Copy,
    path_escape_absolute_rejected => Requirement::Copy,
    path_escape_symlink_rejected => Requirement::Copy,
    stdout_and_stderr_apart => Requirement::None,
    binary_output_exact => Requirement::None,
    stdin_delivered => Requirement::None,
    large_stdin_and_output_do_not_deadlock => Requirement::None,
    exit_codes_propagate => Requirement::None,
    signal_reported => Requirement::None,
    env_is_clean_and_caller_env_visible => Requirement::None,
    workdir_is_used => Requirement::None,
    command_not_found_fails_to_start => Requirement::None,
    wall_timeout_kills_whole_tree => Requirement::None,
    wall_timeout_from_limits => Requirement::Limit(LimitKind::WallTimeout),
    grandchild_holding_stdout_does_not_hang => Requirement::None,
    live_output_arrives_before_end => Requirement::None,
    background_output_and_wait => Requirement::Background,
    background_wait_timeout_and_stop => Requirement::Background,
    output_cap_stops_command => Requirement::None,
    output_limit_from_limits => Requirement::Limit(LimitKind::OutputBytes),
    invalid_limits_rejected => Requirement::None,
    limit_report_covers_every_request => Requirement::None,
    memory_limit_reports_oom => Requirement::OomDetection,
    pids_limit_contains_fork_bomb => Requirement::Limit(LimitKind::Pids),
    cpu_time_limit_ends_busy_loop => Requirement::Limit(LimitKind::CpuTime),
    cpus_limit_throttles => Requirement::Limit(LimitKind::Cpus),
    file_size_limit => Requirement::Limit(LimitKind::FileSize),
    open_files_limit => Requirement::Limit(LimitKind::OpenFiles),
    concurrent_workspaces_are_isolated => Requirement::None,
    direct_access_path => Requirement::DirectAccess,
    invalid_input_never_reaches_the_backend => Requirement::None,
    availability_is_a_state_with_a_reason => Requirement::None,
    stop_returns_within_the_deadline => Requirement::Background,
    cleanup_leaves_a_live_owners_workspace => Requirement::CrossProcess,
    mounts_are_honoured_or_refused => Requirement::None,
    isolation_is_reported_full => Requirement::Isolation,
    host_canary_files_are_invisible => Requirement::Isolation,
    host_processes_are_invisible_and_unsignalable => Requirement::Isolation,
    kill_all_inside_harms_nothing_outside => Requirement::Isolation,
    host_loopback_and_abstract_sockets_follow_the_network => Requirement::Isolation,
    system_paths_are_read_only => Requirement::Isolation,
    tmp_is_private_to_each_workspace => Requirement::Isolation,
    commands_run_without_privileges => Requirement::Isolation,
    mount_and_unshare_fail_inside => Requirement::Isolation,
    copy_from_never_yields_host_content_or_hangs => Requirement::IsolationAndCopy,
}

/// Expands to a `main` that runs the whole conformance suite against the
/// backend made by `$factory` (an `async fn() -> Result<Arc<dyn Orchestrator>>`),
/// one test per case. Use it in a test target with `harness = false`.
///
/// The `main` first checks [`OWNER_ENV`](crate::conformance::OWNER_ENV)
/// (through [`run_main`](crate::conformance::run_main)): set, the binary is
/// the owner process a cross-process case started and runs no tests.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path $(, require_env = $env:expr)? $(,)?) => {
        fn main() -> ::std::process::ExitCode {
            let factory: $crate::conformance::Factory = ::std::sync::Arc::new(|| {
                ::std::boxed::Box::pin($factory()) as $crate::conformance::BoxFuture<'static, _>
            });
            #[allow(unused_mut, unused_assignments)]
            let mut require_env: ::std::option::Option<&'static str> = ::std::option::Option::None;
            $(require_env = ::std::option::Option::Some($env);)?
            $crate::conformance::run_main(factory, require_env)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Capabilities;

    #[test]
    fn suite_is_big_enough_and_names_unique() {
        let cases = all_cases();
        assert!(cases.len() >= 25, "{}", cases.len());
        let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), cases.len());
    }

    #[test]
    fn requirements_gate_on_capabilities() {
        let none = Capabilities::default();
        assert!(Requirement::None.unmet(&none).is_none());
        assert!(Requirement::Copy.unmet(&none).is_some());
        assert!(Requirement::Limit(LimitKind::Memory).unmet(&none).is_some());
        let caps = Capabilities {
            limits: vec![LimitKind::Memory],
            ..Default::default()
        };
        assert!(Requirement::Limit(LimitKind::Memory).unmet(&caps).is_none());
        assert!(Requirement::OomDetection.unmet(&caps).is_some());
        assert!(Requirement::CrossProcess.unmet(&caps).is_some());
        let shared = Capabilities {
            cross_process: true,
            ..Default::default()
        };
        assert!(Requirement::CrossProcess.unmet(&shared).is_none());
        assert!(Requirement::Isolation.unmet(&shared).is_some());
        let isolated = Capabilities {
            isolation: true,
            ..Default::default()
        };
        assert!(Requirement::Isolation.unmet(&isolated).is_none());
        assert!(Requirement::IsolationAndCopy.unmet(&isolated).is_some());
        let with_copy = Capabilities {
            copy: true,
            ..isolated
        };
        assert!(Requirement::IsolationAndCopy.unmet(&with_copy).is_none());
    }
}

//! Unit tests of the fake: call recording, injected failures, scripted
//! results, and the shell mode's files, processes and limits.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::orchestrator::{Orchestrator, STOP_DEADLINE};
use crate::types::{CommandSpec, CommandSpecBuilder, ExecOutput, ExitStatus, WorkspaceSpec};

fn cmd(b: CommandSpecBuilder) -> CommandSpec {
    b.build().unwrap()
}

fn path(p: &str) -> SandboxPath {
    SandboxPath::new(p).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn lifecycle_is_tracked() {
    rt().block_on(async {
        let f = FakeOrchestrator::named("native");
        assert_eq!(f.name(), "native");
        let ws = f
            .create_workspace(&WorkspaceSpec::new().execution_id("ex1"))
            .await
            .unwrap();
        assert_eq!(f.execution_of(&ws).as_deref(), Some("ex1"));
        assert_eq!(f.residue(&ws).await.unwrap().len(), 1);
        f.cleanup(&ws).await.unwrap();
        f.cleanup(&ws).await.unwrap();
        assert!(f.residue(&ws).await.unwrap().is_empty());
        assert!(f.live_workspaces().is_empty());
        assert!(matches!(
            f.run_command(&ws, &cmd(CommandSpec::new(["true"]))).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(
            f.ops(),
            vec![
                Op::CreateWorkspace,
                Op::Residue,
                Op::Cleanup,
                Op::Cleanup,
                Op::Residue,
                Op::RunCommand
            ]
        );
    });
}

#[test]
fn failures_can_be_injected_on_every_op() {
    rt().block_on(async {
        let f = FakeOrchestrator::new();
        let ws = f.create_workspace(&WorkspaceSpec::new()).await.unwrap();
        for op in Op::ALL {
            f.fail_with_backend_error(op);
        }
        let pid = ProcessId::new("p1").unwrap();
        let true_cmd = cmd(CommandSpec::new(["true"]));
        let errs = vec![
            f.create_workspace(&WorkspaceSpec::new()).await.err(),
            f.apply_resource_limits(&ws, &ResourceLimits::default())
                .await
                .err(),
            f.copy_to(&ws, Path::new("/nonexistent"), &path("x"))
                .await
                .err(),
            f.copy_from(&ws, &path("x"), Path::new("/nonexistent"))
                .await
                .err(),
            f.run_command(&ws, &true_cmd).await.err(),
            f.start_background(&ws, &true_cmd).await.err(),
            f.process_status(&ws, &pid).await.err(),
            f.wait_process(&ws, &pid, None).await.err(),
            f.stop(&ws, None).await.err(),
            f.cleanup(&ws).await.err(),
            f.residue(&ws).await.err(),
            f.reap_orphans().await.err(),
        ];
        for e in errs {
            let e = e.expect("every op fails");
            let fe = e.backend_source().unwrap().downcast_ref::<FakeError>();
            assert!(fe.is_some(), "{e}");
        }
        assert!(!f.is_available().await.is_available());
        f.clear_failures();
        f.cleanup(&ws).await.unwrap();
        assert!(!f.is_live(&ws));
    });
}

#[test]
fn fail_once_queues() {
    rt().block_on(async {
        let f = FakeOrchestrator::new();
        f.fail_once(Op::CreateWorkspace, Error::invalid("a"));
        f.fail_once(Op::CreateWorkspace, Error::invalid("b"));
        let spec = WorkspaceSpec::new();
        assert!(f.create_workspace(&spec).await.is_err());
        assert!(f.create_workspace(&spec).await.is_err());
        let ws = f.create_workspace(&spec).await.unwrap();
        f.cleanup(&ws).await.unwrap();
    });
}

#[test]
fn strict_limits_follow_capabilities() {
    rt().block_on(async {
        let f = FakeOrchestrator::new().with_capabilities(Capabilities {
            limits: vec![LimitKind::WallTimeout],
            ..full_capabilities()
        });
        let ws = f.create_workspace(&WorkspaceSpec::new()).await.unwrap();
        let lax = ResourceLimits::builder()
            .memory_bytes(64 << 20)
            .wall_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let r = f.apply_resource_limits(&ws, &lax).await.unwrap();
        assert!(!r.all_enforced());
        let strict = lax.with_strict(true);
        assert!(matches!(
            f.apply_resource_limits(&ws, &strict).await,
            Err(Error::LimitNotEnforceable { .. })
        ));
        f.cleanup(&ws).await.unwrap();
    });
}

#[test]
fn files_round_trip_and_scripted_output() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.txt");
        std::fs::write(&src, b"hello").unwrap();
        let f = FakeOrchestrator::new();
        f.script_file("out/result.txt", b"done".to_vec());
        f.set_output(ExecOutput {
            stdout: b"hi".to_vec(),
            ..ok_output()
        });
        let ws = f.create_workspace(&WorkspaceSpec::new()).await.unwrap();
        f.copy_to(&ws, &src, &path("in.txt")).await.unwrap();
        assert_eq!(f.file(&ws, "in.txt").unwrap(), b"hello");
        assert!(matches!(
            SandboxPath::new("../x"),
            Err(Error::PathEscapesSandbox { .. })
        ));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let live = cmd(
            CommandSpec::new(["x"]).output(crate::OutputSink::new(move |_, d| {
                s2.lock().unwrap().extend_from_slice(d)
            })),
        );
        let out = f.run_command(&ws, &live).await.unwrap();
        assert_eq!(out.stdout, b"hi");
        assert_eq!(&*seen.lock().unwrap(), b"hi");
        let dest = dir.path().join("got");
        f.copy_from(&ws, &path("out"), &dest).await.unwrap();
        assert_eq!(std::fs::read(dest.join("result.txt")).unwrap(), b"done");
        f.cleanup(&ws).await.unwrap();
    });
}

#[test]
fn orphans_are_reaped() {
    rt().block_on(async {
        let f = FakeOrchestrator::new();
        let o = f.add_orphan(Some("ex9"));
        let keep = f.create_workspace(&WorkspaceSpec::new()).await.unwrap();
        let reaped = f.reap_orphans().await.unwrap();
        assert_eq!(reaped.len(), 1);
        assert!(!f.is_live(&o));
        assert!(f.is_live(&keep));
        f.cleanup(&keep).await.unwrap();
    });
}

/// Runs each script in one fresh shell-mode workspace (with `limits`) and
/// returns the outputs.
fn run_scripts(limits: Option<ResourceLimits>, scripts: &[&str]) -> Vec<ExecOutput> {
    rt().block_on(async {
        let f = FakeOrchestrator::new().with_shell();
        let mut spec = WorkspaceSpec::new();
        if let Some(l) = limits {
            spec = spec.limits(l);
        }
        let ws = f.create_workspace(&spec).await.unwrap();
        let mut outs = Vec::new();
        for s in scripts {
            outs.push(
                f.run_command(&ws, &cmd(CommandSpec::shell(*s)))
                    .await
                    .unwrap(),
            );
        }
        f.cleanup(&ws).await.unwrap();
        outs
    })
}

#[test]
fn shell_expands_words() {
    let out = &run_scripts(
        None,
        &["x=a; echo \"$x  b\" $x'q' $((2*3+1)) $(echo sub) ''x"],
    )[0];
    assert_eq!(out.stdout_str(), "a  b aq 7 sub x\n", "{out:?}");
}

#[test]
fn shell_control_flow_and_files() {
    let outs = run_scripts(
        None,
        &[
            "i=0; while [ $i -lt 3 ]; do echo $i; i=$((i+1)); done; if [ -d sub ]; then echo yes; else echo no; fi",
            "mkdir -p a/b && echo hi > a/b/f && cat a/b/f | wc -c; ls a; false || echo or; true && ! false && echo and",
            "cat missing; echo $?; nosuch; echo $?; exit 4",
        ],
    );
    assert_eq!(outs[0].stdout_str(), "0\n1\n2\nno\n");
    assert_eq!(outs[1].stdout_str(), "3\nb\nor\nand\n");
    assert_eq!(outs[2].stdout_str(), "1\n127\n");
    assert_eq!(outs[2].status, ExitStatus::Exited(4));
    assert!(outs[2].stderr_str().contains("nosuch: not found"));
}

#[test]
fn shell_pids_limit_refuses_forks() {
    let limits = ResourceLimits::builder().pids(3).build().unwrap();
    let out = &run_scripts(
        Some(limits),
        &["(sleep 5) & (sleep 5) & (sleep 5) & echo $?"],
    )[0];
    // The shell and two children fill the limit; the third fork fails.
    assert_eq!(out.stdout_str(), "2\n", "{out:?}");
    assert!(out.stderr_str().contains("can't fork"), "{out:?}");
}

#[test]
fn shell_dropped_command_leaves_no_process() {
    rt().block_on(async {
        let f = FakeOrchestrator::new().with_shell();
        let ws = f.create_workspace(&WorkspaceSpec::new()).await.unwrap();
        let slow = cmd(CommandSpec::shell("sleep 100 & sleep 100"));
        let dropped = tokio::time::timeout(Duration::from_millis(50), f.run_command(&ws, &slow));
        assert!(dropped.await.is_err());
        let out = f
            .run_command(&ws, &cmd(CommandSpec::shell("ls /proc | wc -l")))
            .await
            .unwrap();
        // Only the listing shell itself is left.
        assert_eq!(out.stdout_str(), "1\n", "{out:?}");
        f.run_command(&ws, &cmd(CommandSpec::shell("echo kept > f")))
            .await
            .unwrap();
        assert_eq!(f.file(&ws, "f").unwrap(), b"kept\n");
        f.cleanup(&ws).await.unwrap();
    });
}

#[test]
fn the_fake_claims_no_cross_process_workspaces() {
    // Its workspaces are this process's memory: another process never
    // meets them, so the cross-process conformance cases must be skipped.
    assert!(!full_capabilities().cross_process);
}

/// A process that survives SIGKILL (uninterruptible sleep) makes stop wait
/// its deadline and then fail naming it, for one process and for all.
#[test]
fn stop_names_a_process_that_survives_kill() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let f = FakeOrchestrator::new().with_shell();
        let ws = f.create_workspace(&WorkspaceSpec::new()).await.unwrap();
        let tree = cmd(CommandSpec::shell("sleep 1000 & sleep 1000"));
        let p = f.start_background(&ws, &tree).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(f.processes_survive_kill(&ws, true));
        for pid in [Some(&p), None] {
            let started = tokio::time::Instant::now();
            let err = f.stop(&ws, pid).await.unwrap_err();
            let waited = started.elapsed();
            assert!(
                waited >= STOP_DEADLINE && waited < STOP_DEADLINE + Duration::from_secs(1),
                "{waited:?}"
            );
            assert!(matches!(&err, Error::Backend { backend, .. } if backend == "fake"));
            let survived = err
                .backend_source()
                .and_then(|s| s.downcast_ref::<SurvivedKill>())
                .unwrap_or_else(|| panic!("{err}"));
            assert_eq!(survived.workspace, ws.as_str());
            assert_eq!(survived.pids.len(), 2, "{survived:?}");
            assert!(err.to_string().contains("survived SIGKILL"), "{err}");
        }
        assert_eq!(f.process_status(&ws, &p).await.unwrap().status, None);
        f.processes_survive_kill(&ws, false);
        f.stop(&ws, None).await.unwrap();
        assert!(f.process_status(&ws, &p).await.unwrap().status.is_some());
        f.cleanup(&ws).await.unwrap();
    });
}

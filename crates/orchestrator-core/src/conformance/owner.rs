//! A second owner process for the cross-process cases: the test binary
//! re-executed with [`OWNER_ENV`] set creates one workspace with the
//! backend's factory, holds it while its stdin is open, then cleans up.
//!
//! Only the `main` of [`conformance_tests!`](crate::conformance_tests)
//! ([`run_main`](super::run_main)) knows how to be that child, so it
//! installs a hook; a case that needs the child fails with a clear message
//! when the hook is missing instead of re-executing a binary that would
//! run a whole test suite.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::types::{WorkspaceId, WorkspaceSpec};

use super::harness::scaled;
use super::Factory;

/// Set (to `1`) in the environment of the re-executed test binary.
pub const OWNER_ENV: &str = "RUNBOX_CONFORMANCE_OWNER";

/// What the child prints before the workspace id, so a stray line on its
/// stdout is not taken for one.
const ID_PREFIX: &str = "runbox-conformance-owner-workspace ";

static HOOK: AtomicBool = AtomicBool::new(false);

/// Records that this process's `main` turns into the owner child when
/// [`OWNER_ENV`] is set.
pub(crate) fn install_hook() {
    HOOK.store(true, Ordering::SeqCst);
}

/// Is this process the owner child?
pub(crate) fn is_owner_child() -> bool {
    std::env::var_os(OWNER_ENV).is_some()
}

/// The owner child's whole life: create a workspace, print its id, hold it
/// until stdin closes (the parent ended or let go), clean it up.
pub(crate) fn owner_main(factory: Factory) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return child_failed(format!("cannot build a tokio runtime: {e}")),
    };
    rt.block_on(async move {
        let backend = match factory().await {
            Ok(b) => b,
            Err(e) => return child_failed(format!("backend cannot be created: {e}")),
        };
        let id = match backend.create_workspace(&WorkspaceSpec::new()).await {
            Ok(id) => id,
            Err(e) => return child_failed(format!("create_workspace failed: {e}")),
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{ID_PREFIX}{id}")
            .and_then(|()| out.flush())
            .is_err()
        {
            let _ = backend.cleanup(&id).await;
            return child_failed("cannot report the workspace id".to_string());
        }
        drop(out);
        let _ = tokio::task::spawn_blocking(|| {
            std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink())
        })
        .await;
        match backend.cleanup(&id).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => child_failed(format!("cleanup of {id} failed: {e}")),
        }
    })
}

fn child_failed(msg: String) -> ExitCode {
    eprintln!("conformance owner process: {msg}");
    ExitCode::FAILURE
}

/// The owner child as the case sees it; killed when dropped, so a failing
/// case does not leave it running.
pub(crate) struct OwnerProcess {
    child: Child,
    // Held open: the child keeps its workspace until this closes.
    _stdin: Option<ChildStdin>,
}

impl OwnerProcess {
    /// Starts the owner child and waits (bounded) for its workspace id.
    pub(crate) async fn spawn() -> Result<(OwnerProcess, WorkspaceId), String> {
        if !HOOK.load(Ordering::SeqCst) {
            return Err(format!(
                "this case needs a second owner process: the main of \
                 orchestrator_core::conformance_tests! re-executes the test binary with \
                 {OWNER_ENV}=1 for it; run the case through that macro's main, not on its own"
            ));
        }
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(&exe)
            .env(OWNER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut owner = OwnerProcess {
            child,
            _stdin: stdin,
        };
        let stdout = stdout.ok_or("the owner child has no stdout")?;
        let read = tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(|l| l.ok())
                .find_map(|l| l.strip_prefix(ID_PREFIX).map(str::to_string))
        });
        let limit = scaled(Duration::from_secs(120));
        let line = match tokio::time::timeout(limit, read).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                let status = owner.child.wait().map(|s| s.to_string());
                return Err(format!(
                    "the owner child ended without a workspace ({status:?}; its stderr is above)"
                ));
            }
            Ok(Err(e)) => return Err(format!("reading the owner child's stdout: {e}")),
            Err(_) => {
                return Err(format!(
                    "the owner child named no workspace within {limit:?}"
                ))
            }
        };
        let id = WorkspaceId::new(line.trim()).map_err(|e| format!("owner child's id: {e}"))?;
        Ok((owner, id))
    }

    /// The child's pid, for messages.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs the child (it cannot clean up) and reaps it, so its pid is
    /// gone and its workspace is an orphan.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use std::sync::Arc;

    use super::super::{all_cases, run_case, Factory};
    use crate::orchestrator::Orchestrator;
    use crate::testing::{full_capabilities, FakeOrchestrator};
    use crate::types::Capabilities;

    /// Outside the macro's main (here: the unit-test binary) the
    /// cross-process case fails with a message saying why; it never passes
    /// and never re-executes a binary that is not ready to be the owner.
    #[test]
    fn the_cross_process_case_fails_clearly_without_the_hook() {
        let factory: Factory = Arc::new(|| {
            Box::pin(async {
                let caps = Capabilities {
                    cross_process: true,
                    ..full_capabilities()
                };
                let fake = FakeOrchestrator::new().with_shell().with_capabilities(caps);
                Ok(Arc::new(fake) as Arc<dyn Orchestrator>)
            })
        });
        let case = all_cases()
            .into_iter()
            .find(|c| c.name == "cleanup_leaves_a_live_owners_workspace")
            .expect("registered");
        let Err(failed) = run_case(case, factory, None) else {
            panic!("the cross-process case passed or was skipped without its hook");
        };
        let msg = format!("{failed:?}");
        assert!(msg.contains("conformance_tests!"), "{msg}");
    }
}

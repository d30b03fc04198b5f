//! Cases: many workspaces at once.

use std::future::Future;
use std::pin::Pin;

use crate::orchestrator::Orchestrator;
use crate::types::WorkspaceId;

use crate::conformance::support::*;

/// Many workspaces at once do not see each other's files.
pub async fn concurrent_workspaces_are_isolated(o: &dyn Orchestrator) {
    let n = 8;
    let ids: Vec<WorkspaceId> = join_all((0..n).map(|_| new_ws(o)).collect()).await;
    let outs = join_all(
        ids.iter()
            .enumerate()
            .map(|(i, id)| async move {
                let script = format!("echo {i} > mine-{i}; sleep 0.2; ls");
                sh(o, id, &script).await
            })
            .collect(),
    )
    .await;
    for (i, out) in outs.iter().enumerate() {
        expect_exit(out, 0);
        assert_eq!(
            out.stdout_str().trim(),
            format!("mine-{i}"),
            "workspace {i} sees others"
        );
    }
    let host = host_dir();
    for (i, id) in ids.iter().enumerate() {
        let dst = host.path().join(format!("f{i}"));
        if o.capabilities().copy {
            o.copy_from(id, &sandbox(&format!("mine-{i}")), &dst)
                .await
                .expect("copy_from");
            assert_eq!(
                std::fs::read(&dst).expect("read"),
                format!("{i}\n").into_bytes()
            );
        }
    }
    for id in &ids {
        done(o, id).await;
    }
}

async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    // Poll all futures concurrently without an extra dependency.
    let mut pinned: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.expect("ready")).collect()
}

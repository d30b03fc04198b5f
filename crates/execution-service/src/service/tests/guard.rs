//! Dropped futures: a dropped execution never leaks its sandbox.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_execute_future_does_not_leak() {
    let (svc, native) = native_only();
    native.set_run_delay(Some(Duration::from_secs(30)));
    let s2 = svc.clone();
    let task =
        tokio::spawn(async move { s2.execute(ExecutionRequest::new(["sleep", "30"])).await });
    // Wait until the command is running.
    for _ in 0..500 {
        if native.count(Op::RunCommand) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(native.live_workspaces().len(), 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    tokio::time::timeout(Duration::from_secs(5), svc.wait_for_cleanups())
        .await
        .unwrap();
    assert!(native.live_workspaces().is_empty());
    let rec = svc.list().await.unwrap().pop().unwrap();
    assert_eq!(rec.state, ExecutionState::Cancelled);
    assert!(rec.sandbox_released);
    rec.check_invariants().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_during_create_is_cleaned() {
    // Drop the future at every await point of execute, by polling it a
    // bounded number of times, and check nothing is left behind.
    use std::task::Poll;
    for polls in 1..12 {
        let (svc, native) = native_only();
        native.set_run_delay(Some(Duration::from_secs(30)));
        {
            let fut = svc.execute(ExecutionRequest::new(["true"]));
            tokio::pin!(fut);
            for _ in 0..polls {
                let r = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                if r.is_ready() {
                    break;
                }
            }
        }
        tokio::time::timeout(Duration::from_secs(5), svc.wait_for_cleanups())
            .await
            .unwrap();
        assert!(
            native.live_workspaces().is_empty(),
            "dropped after {polls} polls: leaked {:?}",
            native.live_workspaces()
        );
        for rec in svc.list().await.unwrap() {
            rec.check_invariants().unwrap();
            assert!(rec.state.is_terminal(), "{polls}: {:?}", rec.state);
        }
    }
}

#[test]
fn dropped_outside_a_runtime_still_cleans() {
    let (svc, native) = native_only();
    native.set_run_delay(Some(Duration::from_secs(30)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut fut = Box::pin(svc.execute(ExecutionRequest::new(["true"])));
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_millis(100), &mut fut).await;
    });
    drop(rt);
    drop(fut); // no runtime here: the cleanup runs on a helper thread
    let rt2 = tokio::runtime::Runtime::new().unwrap();
    rt2.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), svc.wait_for_cleanups())
            .await
            .unwrap();
    });
    assert!(native.live_workspaces().is_empty());
}

//! Random sequences of submit / start / complete / cancel and concurrent
//! pairs of them, against two fakes with random injected failures.
use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Action {
    Submit {
        docker: bool,
    },
    Start {
        idx: usize,
        use_docker: bool,
    },
    Complete {
        idx: usize,
        use_docker: Option<bool>,
    },
    Cancel {
        idx: usize,
    },
    Execute {
        docker: bool,
    },
    Fail {
        docker: bool,
        op: usize,
    },
    Concurrent(Box<Action>, Box<Action>),
}

const FAILABLE: [Op; 6] = [
    Op::CreateWorkspace,
    Op::CopyTo,
    Op::ApplyResourceLimits,
    Op::StartBackground,
    Op::RunCommand,
    Op::Cleanup,
];

fn simple() -> impl Strategy<Value = Action> {
    prop_oneof![
        any::<bool>().prop_map(|docker| Action::Submit { docker }),
        (0usize..8, any::<bool>()).prop_map(|(idx, use_docker)| Action::Start { idx, use_docker }),
        (0usize..8, proptest::option::of(any::<bool>()))
            .prop_map(|(idx, use_docker)| Action::Complete { idx, use_docker }),
        (0usize..8).prop_map(|idx| Action::Cancel { idx }),
        any::<bool>().prop_map(|docker| Action::Execute { docker }),
        (any::<bool>(), 0usize..FAILABLE.len())
            .prop_map(|(docker, op)| Action::Fail { docker, op }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => simple(),
        1 => (simple(), simple()).prop_map(|(a, b)| Action::Concurrent(Box::new(a), Box::new(b))),
    ]
}

struct World {
    f: Fixture,
    ids: Mutex<Vec<ExecutionId>>,
}

impl World {
    fn id(&self, idx: usize) -> Option<ExecutionId> {
        let ids = self.ids.lock().unwrap();
        if ids.is_empty() {
            None
        } else {
            Some(ids[idx % ids.len()].clone())
        }
    }

    fn run<'a>(&'a self, a: &'a Action) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            match a {
                Action::Submit { docker } => {
                    let id = self
                        .f
                        .svc
                        .submit(
                            ExecutionRequest::new(["true"])
                                .use_docker(*docker)
                                .limits(limits()),
                        )
                        .await
                        .unwrap();
                    self.ids.lock().unwrap().push(id);
                }
                Action::Start { idx, use_docker } => {
                    if let Some(id) = self.id(*idx) {
                        let _ = self
                            .f
                            .svc
                            .start(
                                &id,
                                StartOptions {
                                    use_docker: *use_docker,
                                },
                            )
                            .await;
                    }
                }
                Action::Complete { idx, use_docker } => {
                    if let Some(id) = self.id(*idx) {
                        let _ = self
                            .f
                            .svc
                            .complete(
                                &id,
                                CompleteOptions {
                                    use_docker: *use_docker,
                                },
                            )
                            .await;
                    }
                }
                Action::Cancel { idx } => {
                    if let Some(id) = self.id(*idx) {
                        let _ = self.f.svc.cancel(&id).await;
                    }
                }
                Action::Execute { docker } => {
                    if let Ok(r) = self
                        .f
                        .svc
                        .execute(ExecutionRequest::new(["true"]).use_docker(*docker))
                        .await
                    {
                        self.ids.lock().unwrap().push(r.execution_id);
                    }
                }
                Action::Fail { docker, op } => {
                    let fake = if *docker {
                        &self.f.docker
                    } else {
                        &self.f.native
                    };
                    fake.fail_once(FAILABLE[*op], CoreError::invalid("injected"));
                }
                Action::Concurrent(a, b) => {
                    tokio::join!(self.run(a), self.run(b));
                }
            }
        })
    }

    async fn check(&self) -> Result<(), TestCaseError> {
        let recs = self.f.svc.list().await.unwrap();
        let mut live = self.f.native.live_workspaces();
        live.extend(self.f.docker.live_workspaces());
        for r in &recs {
            prop_assert!(r.check_invariants().is_ok(), "{:?}", r.check_invariants());
            if let Some(ws) = r.sandbox() {
                let is_live = live.contains(&ws);
                if r.state == ExecutionState::Completed {
                    prop_assert!(!is_live, "completed {} still has sandbox {}", r.id, ws);
                }
                if r.state.is_terminal() && r.sandbox_released {
                    prop_assert!(!is_live, "{} released but {} is live", r.id, ws);
                }
            }
        }
        // Every live sandbox belongs to an execution that is still
        // active, or whose teardown failed (and is recorded as such).
        for ws in &live {
            let owner = recs.iter().find(|r| r.sandbox().as_ref() == Some(ws));
            let ok = match owner {
                Some(r) => r.state.is_active() || !r.sandbox_released,
                // Created by a start that has not recorded it yet: only
                // possible mid-call, never between actions.
                None => false,
            };
            prop_assert!(ok, "orphan sandbox {ws}: {owner:?}");
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn random_sequences_keep_invariants(actions in proptest::collection::vec(action(), 1..24)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let world = World { f: fixture(), ids: Mutex::new(Vec::new()) };
            for a in &actions {
                world.run(a).await;
                world.check().await?;
            }
            // Cancelling everything still active leaves no sandbox at all.
            world.f.native.clear_failures();
            world.f.docker.clear_failures();
            for r in world.f.svc.list().await.unwrap() {
                if r.state.is_active() {
                    world.f.svc.cancel(&r.id).await.unwrap();
                }
            }
            world.f.svc.recover().await.unwrap();
            world.check().await?;
            prop_assert!(world.f.native.live_workspaces().is_empty(), "{:?}", world.f.native.live_workspaces());
            prop_assert!(world.f.docker.live_workspaces().is_empty());
            Ok(())
        })?;
    }
}

//! Unit tests of the record types: ids, transitions, request round trips.

use std::time::Duration;

use orchestrator_core::{OutputSink, ResourceLimits};
use proptest::prelude::*;

use super::*;

#[test]
fn ids() {
    let a = ExecutionId::generate();
    let b = ExecutionId::generate();
    assert_ne!(a, b);
    assert!(ExecutionId::new(a.as_str()).is_ok());
    assert!(ExecutionId::new("../x").is_err());
    assert!(ExecutionId::new("").is_err());
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(serde_json::from_str::<ExecutionId>(&json).unwrap(), a);
    assert!(serde_json::from_str::<ExecutionId>("\"a/b\"").is_err());
}

#[test]
fn transitions() {
    use ExecutionState::*;
    let mut r = ExecutionRecord::new(ExecutionId::generate(), ExecutionRequest::default());
    assert!(r.transition(Running).is_err());
    assert_eq!(r.state, Pending);
    r.transition(Starting).unwrap();
    assert!(r.started_at_ms.is_some());
    r.transition(Running).unwrap();
    r.transition(Completed).unwrap();
    assert!(r.finished_at_ms.is_some());
    for s in ExecutionState::ALL {
        assert!(r.transition(s).is_err(), "completed -> {s}");
    }
    for s in ExecutionState::ALL {
        assert_eq!(ExecutionState::parse(s.name()), Some(s));
        if s.is_terminal() {
            assert!(ExecutionState::ALL.iter().all(|n| !s.can_transition_to(*n)));
        }
    }
}

#[test]
fn request_roundtrips_without_sink() {
    let req = ExecutionRequest::shell("echo hi")
        .env("A", "b")
        .file_in("/tmp/x", "x")
        .file_out("y", "/tmp/y")
        .limits(
            ResourceLimits::builder()
                .memory_bytes(64 << 20)
                .wall_timeout(Duration::from_millis(1500))
                .strict(true)
                .build()
                .unwrap(),
        )
        .mount("/srv/data", "data", true)
        .mount("/srv/out", "out", false)
        .use_docker(true)
        .image("busybox")
        .stdin(b"in".to_vec())
        .output(OutputSink::new(|_, _| {}));
    let rec = ExecutionRecord::new(ExecutionId::generate(), req.clone());
    let json = serde_json::to_string(&rec).unwrap();
    let back: ExecutionRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rec);
    assert_eq!(back.request.mounts.len(), 2);
    assert!(back.request.mounts[0].is_read_only());
    assert!(!back.request.mounts[1].is_read_only());
    assert!(back.request.output.is_none());
    assert!(req.validate().is_ok());
    assert!(ExecutionRequest::new(["x"])
        .file_in("/a", "../b")
        .validate()
        .is_err());
    assert!(ExecutionRequest::new(["x"])
        .workdir("/abs")
        .validate()
        .is_err());
}

/// A stored record as JSON, with one field of its request replaced.
fn stored_with(field: &str, value: serde_json::Value) -> serde_json::Value {
    let rec = ExecutionRecord::new(ExecutionId::generate(), ExecutionRequest::new(["true"]));
    let mut json = serde_json::to_value(&rec).unwrap();
    json["request"][field] = value;
    json
}

#[test]
fn stored_records_with_invalid_inputs_are_errors() {
    let load = |json: serde_json::Value| serde_json::from_value::<ExecutionRecord>(json);
    let err = load(stored_with(
        "limits",
        serde_json::json!({"memory_bytes": 0}),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("memory"), "{err}");
    let err = load(stored_with("limits", serde_json::json!({"cpus": -1.0}))).unwrap_err();
    assert!(err.to_string().contains("cpus"), "{err}");
    let escape = serde_json::json!([{"host": "/tmp/x", "sandbox": "../x"}]);
    let err = load(stored_with("files_in", escape)).unwrap_err();
    assert!(err.to_string().contains("sandbox path"), "{err}");
    let err = load(stored_with("workdir", "/abs".into())).unwrap_err();
    assert!(err.to_string().contains("sandbox path"), "{err}");
    let ok = load(stored_with("workdir", "./a/./b".into())).unwrap();
    assert_eq!(ok.request.workdir.unwrap().as_str(), "a/b");
    let mount = |host: &str, sandbox: &str| serde_json::json!([{"host": host, "sandbox": sandbox, "read_only": true}]);
    let err = load(stored_with("mounts", mount("/srv", "../x"))).unwrap_err();
    assert!(
        err.to_string().contains("stored mount sandbox path"),
        "{err}"
    );
    let err = load(stored_with("mounts", mount("relative", "x"))).unwrap_err();
    assert!(err.to_string().contains("absolute"), "{err}");
    let err = load(stored_with("mounts", mount("/srv", "."))).unwrap_err();
    assert!(err.to_string().contains("root"), "{err}");
    let ok = load(stored_with("mounts", mount("/srv", "./d/"))).unwrap();
    assert_eq!(ok.request.mounts[0].sandbox().as_str(), "d");
}

#[test]
fn records_from_before_mounts_and_isolation_load() {
    let mut json = serde_json::to_value(ExecutionRecord::new(
        ExecutionId::generate(),
        ExecutionRequest::new(["true"]),
    ))
    .unwrap();
    let removed = (
        json["request"].as_object_mut().unwrap().remove("mounts"),
        json.as_object_mut().unwrap().remove("isolation"),
    );
    assert!(removed.0.is_some() && removed.1.is_some(), "{json}");
    let rec: ExecutionRecord = serde_json::from_value(json).unwrap();
    assert!(rec.request.mounts.is_empty());
    assert_eq!(rec.isolation, None);
}

#[test]
fn isolation_summaries_round_trip_and_name_unknown_values() {
    use orchestrator_core::{IsolationMode, IsolationReport, Mechanism, NetworkMode};
    let report = IsolationReport::full(
        IsolationMode::Full,
        NetworkMode::Host,
        vec![Mechanism::named("user-namespace")],
    );
    let s = IsolationSummary::from_report(&report);
    assert_eq!(
        (s.requested.as_str(), s.level.as_str(), s.network.as_str()),
        ("full", "full", "host")
    );
    assert_eq!(s.report().unwrap(), report);
    let mut rec = ExecutionRecord::new(ExecutionId::generate(), ExecutionRequest::default());
    rec.isolation = Some(s.clone());
    let back: ExecutionRecord =
        serde_json::from_str(&serde_json::to_string(&rec).unwrap()).unwrap();
    assert_eq!(back.isolation, Some(s.clone()));
    // A level a newer runbox wrote still loads; only `report` refuses it.
    let newer = IsolationSummary {
        level: "partial".into(),
        ..s
    };
    let err = newer.report().unwrap_err();
    assert_eq!(err.given, "partial");
    assert!(
        IsolationSummary::from_report(&IsolationReport::none(IsolationMode::Auto, "x")).fell_back()
    );
}

#[test]
fn owners_keep_their_stored_field_names() {
    // A record written before the boot id was kept still loads.
    let mut json = serde_json::to_value(ExecutionRecord::new(
        ExecutionId::generate(),
        ExecutionRequest::default(),
    ))
    .unwrap();
    json["owner"] = serde_json::json!({"pid": 42, "start_time": 7, "host": "h"});
    let rec: ExecutionRecord = serde_json::from_value(json).unwrap();
    let owner = rec.owner.clone().unwrap();
    assert_eq!(
        (owner.pid, owner.start_time, owner.boot_id),
        (42, Some(7), None)
    );
    assert_eq!(owner.host.as_deref(), Some("h"));
    let mut rec = rec;
    rec.owner = Some(orchestrator_core::owner::Owner::current());
    let json = serde_json::to_value(&rec).unwrap();
    for field in ["pid", "start_time", "host"] {
        assert!(json["owner"].get(field).is_some(), "{json}");
    }
    let back: ExecutionRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back.owner, rec.owner);
}

#[test]
fn limit_summaries_name_their_mechanism() {
    let s = LimitSummary {
        kind: "memory".into(),
        requested: "64 bytes".into(),
        enforced_by: Some("cgroup-v2".into()),
        note: None,
    };
    assert_eq!(s.mechanism().unwrap().name(), "cgroup-v2");
}

proptest! {
    #[test]
    fn random_transitions_keep_legal_states(steps in proptest::collection::vec(0usize..6, 0..20)) {
        let mut r = ExecutionRecord::new(ExecutionId::generate(), ExecutionRequest::default());
        for s in steps {
            let next = ExecutionState::ALL[s];
            let before = r.state;
            match r.transition(next) {
                Ok(()) => prop_assert!(before.can_transition_to(next)),
                Err(_) => prop_assert_eq!(r.state, before),
            }
        }
    }
}

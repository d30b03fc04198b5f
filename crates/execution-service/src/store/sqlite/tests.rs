//! Tests of the SQLite store: round trips, migrations from every older
//! schema, a newer schema refused, corrupt rows reported.

use super::*;
use crate::record::ExecutionRequest;
use crate::store::ExecutionStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_passes_the_suite() {
    crate::store::suite::run_all(|| SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    crate::store::suite::run_all(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        SqliteStore::open(dir.path().join(format!("db{i}.sqlite"))).unwrap()
    })
    .await;
}

#[tokio::test]
async fn durable_across_reopen_and_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/runbox.db");
    let r = ExecutionRecord::new(ExecutionId::generate(), ExecutionRequest::new(["true"]));
    {
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        s.insert(&r).await.unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.get(&r.id).await.unwrap(), Some(r));
    let mode: String = s
        .conn
        .lock()
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    // Two handles on one file (two processes, in effect) see each other.
    let s2 = SqliteStore::open(&path).unwrap();
    let r2 = ExecutionRecord::new(ExecutionId::generate(), ExecutionRequest::new(["x"]));
    s2.insert(&r2).await.unwrap();
    assert!(s.get(&r2.id).await.unwrap().is_some());
}

#[test]
fn migrates_from_version_one_and_refuses_newer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // A database written by a build that only knew migration 1.
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);").unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let n: i64 = s
        .conn
        .lock()
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type='index' AND name='executions_state'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(s);
    {
        let c = Connection::open(&path).unwrap();
        c.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
    }
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test]
async fn migration_three_names_docker_records_by_the_service_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let legacy = |id: &str, backend: &str, used_docker: bool| {
        let mut r = ExecutionRecord::new(
            ExecutionId::new(id).unwrap(),
            ExecutionRequest::new(["true"]),
        );
        r.backend = Some(backend.into());
        let mut json = serde_json::to_value(&r).unwrap();
        json["used_docker"] = used_docker.into();
        (r, json.to_string())
    };
    {
        // A database written before records dropped `used_docker`.
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (2);").unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.execute_batch(MIGRATIONS[1]).unwrap();
        for (id, backend, docker) in [("ex-d", "fake-docker", true), ("ex-n", "native", false)] {
            let (r, json) = legacy(id, backend, docker);
            c.execute(
                "INSERT INTO executions VALUES (?1, 'pending', ?2, NULL, 0, 0, 0, ?3)",
                params![r.id.as_str(), backend, json],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO executions VALUES ('ex-bad', 'pending', NULL, NULL, 0, 0, 0, '{not json')",
            [],
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let docker = s
        .get(&ExecutionId::new("ex-d").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(docker.backend.as_deref(), Some(crate::DOCKER_BACKEND));
    assert!(docker.used_docker());
    let native = s
        .get(&ExecutionId::new("ex-n").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(native.backend.as_deref(), Some("native"));
    assert!(!native.used_docker());
    let (column, json): (String, String) = s
        .conn
        .lock()
        .unwrap()
        .query_row(
            "SELECT backend, record FROM executions WHERE id = 'ex-d'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(column, crate::DOCKER_BACKEND);
    assert!(!json.contains("used_docker"), "{json}");
    // A row that does not parse does not stop the migration.
    let bad = ExecutionId::new("ex-bad").unwrap();
    assert!(matches!(s.get(&bad).await, Err(StoreError::Corrupt { .. })));
}

#[tokio::test]
async fn migration_four_gives_old_rows_no_mounts_and_no_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    let r = ExecutionRecord::new(
        ExecutionId::new("ex-old").unwrap(),
        ExecutionRequest::new(["true"]),
    );
    {
        // A database written before requests had mounts and records an
        // isolation summary.
        let mut json = serde_json::to_value(&r).unwrap();
        json["request"].as_object_mut().unwrap().remove("mounts");
        json.as_object_mut().unwrap().remove("isolation");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (3);").unwrap();
        for m in &MIGRATIONS[..3] {
            c.execute_batch(m).unwrap();
        }
        c.execute(
            "INSERT INTO executions VALUES ('ex-old', 'pending', NULL, NULL, 0, 0, 0, ?1)",
            params![json.to_string()],
        )
        .unwrap();
        c.execute(
            "INSERT INTO executions VALUES ('ex-bad', 'pending', NULL, NULL, 0, 0, 0, '{not json')",
            [],
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), 4);
    let back = s.get(&r.id).await.unwrap().unwrap();
    assert!(back.request.mounts.is_empty());
    assert_eq!(back.isolation, None);
    assert_eq!(back, r);
    let json: String = s
        .conn
        .lock()
        .unwrap()
        .query_row(
            "SELECT record FROM executions WHERE id = 'ex-old'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["request"]["mounts"], serde_json::json!([]), "{json}");
    assert!(
        json.as_object().unwrap().contains_key("isolation"),
        "{json}"
    );
    assert!(json["isolation"].is_null());
    let bad = ExecutionId::new("ex-bad").unwrap();
    assert!(matches!(s.get(&bad).await, Err(StoreError::Corrupt { .. })));
}

#[tokio::test]
async fn corrupt_rows_are_reported() {
    let s = SqliteStore::open_in_memory().unwrap();
    s.conn
        .lock()
        .unwrap()
        .execute(
            "INSERT INTO executions VALUES ('ex-bad', 'pending', NULL, NULL, 0, 0, 0, '{not json')",
            [],
        )
        .unwrap();
    let id = ExecutionId::new("ex-bad").unwrap();
    assert!(matches!(s.get(&id).await, Err(StoreError::Corrupt { .. })));
}

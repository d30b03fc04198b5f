//! [`SqliteStore`]: records in a SQLite database (bundled SQLite), for the
//! CLI and anything that must survive a crash.
//!
//! - WAL journal, `synchronous=NORMAL`, a 10 s busy timeout: several
//!   processes (a running CLI and `runbox recover`) can share one file.
//! - A `schema_version` table and an ordered list of migrations, applied in
//!   one immediate transaction when the store is opened; a database newer
//!   than this code is refused rather than misread.
//! - One connection behind a mutex, used only inside
//!   [`tokio::task::spawn_blocking`]: async callers never block a runtime
//!   worker on SQLite, and the lock is never held across an await.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{ExecutionStore, ListFilter, StoreError};
use crate::record::{ExecutionId, ExecutionRecord};

/// The schema version this code writes (the number of migrations).
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the records. Queried columns are copied out of the JSON record.
    "CREATE TABLE executions (
        id            TEXT PRIMARY KEY NOT NULL,
        state         TEXT NOT NULL,
        backend       TEXT,
        sandbox_id    TEXT,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        version       INTEGER NOT NULL,
        record        TEXT NOT NULL
    );",
    // 2: indexes for recovery (by state) and listing (by age).
    "CREATE INDEX executions_state ON executions(state);
     CREATE INDEX executions_created ON executions(created_at_ms, id);",
    // 3: a record names its backend as the service does, and whether it ran
    // on docker follows from that name: records of the docker orchestrator
    // get its name in the service (crate::DOCKER_BACKEND) whatever the
    // instance called itself, and lose the `used_docker` flag. Rows that do
    // not parse are left for `decode` to report.
    "UPDATE executions
        SET backend = 'docker', record = json_set(record, '$.backend', 'docker')
      WHERE CASE WHEN json_valid(record) THEN json_extract(record, '$.used_docker') = 1 ELSE 0 END;
     UPDATE executions
        SET record = json_remove(record, '$.used_docker')
      WHERE CASE WHEN json_valid(record) THEN json_type(record, '$.used_docker') IS NOT NULL ELSE 0 END;",
    // 4: requests hold mounts and records how the sandbox was isolated.
    // Older rows get what they meant (no mounts, no isolation reported), so
    // every row has the current shape; a build that predates the fields
    // refuses the database rather than drop a request's mounts. Fields
    // already there are kept (json_insert); rows that do not parse are left
    // for `decode` to report.
    "UPDATE executions
        SET record = json_insert(record, '$.request.mounts', json('[]'), '$.isolation', NULL)
      WHERE json_valid(record);",
];

fn db_err(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(Box::new(e))
}

/// A [`super::ExecutionStore`] in a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
}

impl SqliteStore {
    /// The schema version this code writes; [`Self::open`] migrates older
    /// databases to it and refuses newer ones.
    pub const SCHEMA_VERSION: i64 = SCHEMA_VERSION;

    /// Opens (creating if needed) the database at `path` and migrates it.
    /// Blocking: call it before serving, or inside `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(db_err)?;
        }
        let conn = Connection::open(path).map_err(db_err)?;
        Self::init(conn, Some(path.to_path_buf()))
    }

    /// A private in-memory database (for tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(db_err)?;
        Self::init(conn, None)
    }

    /// The database file, unless in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        current_version(&conn)
    }

    fn init(mut conn: Connection, path: Option<PathBuf>) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
        if path.is_some() {
            // journal_mode returns a row; read it rather than execute.
            let mode: String = conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .map_err(db_err)?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode, "SQLite did not switch to WAL");
            }
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
            .map_err(db_err)?;
        if path.is_some() {
            // Closing the last connection would checkpoint the WAL into the
            // database and sync it: most of a one-shot CLI's store time.
            // The WAL is checkpointed as it grows instead; it survives a
            // crash of the process like the database (with
            // `synchronous=NORMAL`, the last commits before a power loss
            // may not: the trade SQLite documents for WAL mode). The next process to open the
            // database reads the whole WAL to rebuild its index, so it is
            // kept short: a checkpoint every 64 pages (a few CLI runs'
            // records) instead of SQLite's 1000.
            conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .map_err(db_err)?;
            conn.execute_batch("PRAGMA wal_autocheckpoint=64;")
                .map_err(db_err)?;
        }
        // Already current (every open after the first): a read, not the
        // write transaction a migration takes.
        if current_version(&conn)? != SCHEMA_VERSION {
            migrate(&mut conn)?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// Runs `f` on the connection in a blocking thread.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside `f` cannot leave SQLite half-written (statements
            // are atomic, transactions roll back on drop): ignore poisoning.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(db_err)?
    }
}

fn current_version(conn: &Connection) -> Result<i64, StoreError> {
    let exists: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_version'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(db_err)?
        > 0;
    if !exists {
        return Ok(0);
    }
    let v: Option<i64> = conn
        .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
        .map_err(db_err)?;
    Ok(v.unwrap_or(0))
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(db_err)?;
    let from = current_version(&tx)?;
    if from > SCHEMA_VERSION {
        return Err(StoreError::Database(
            format!(
                "database schema version {from} is newer than this runbox supports ({SCHEMA_VERSION})"
            )
            .into(),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.execute_batch(sql).map_err(db_err)?;
        tracing::debug!(version = i + 1, "applied store migration");
    }
    if from < SCHEMA_VERSION {
        tx.execute("DELETE FROM schema_version", [])
            .map_err(db_err)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![SCHEMA_VERSION],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

fn encode(r: &ExecutionRecord) -> Result<String, StoreError> {
    serde_json::to_string(r).map_err(db_err)
}

fn decode(id: String, json: String, version: i64) -> Result<ExecutionRecord, StoreError> {
    let mut r: ExecutionRecord = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
        id: id.clone(),
        reason: e.to_string(),
    })?;
    if r.id.as_str() != id {
        return Err(StoreError::Corrupt {
            id,
            reason: format!("row holds record {}", r.id),
        });
    }
    r.version = version as u64;
    Ok(r)
}

#[async_trait]
impl ExecutionStore for SqliteStore {
    async fn insert(&self, record: &ExecutionRecord) -> Result<(), StoreError> {
        let r = record.clone();
        let json = encode(&r)?;
        self.with_conn(move |c| {
            // Cached: an execution's statements are parsed once per
            // connection, not on each of its updates.
            let mut stmt = c
                .prepare_cached(
                    "INSERT INTO executions (id, state, backend, sandbox_id, created_at_ms, updated_at_ms, version, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(db_err)?;
            let res = stmt.execute(params![
                    r.id.as_str(),
                    r.state.name(),
                    r.backend,
                    r.sandbox_id,
                    r.created_at_ms as i64,
                    r.updated_at_ms as i64,
                    r.version as i64,
                    json
                ]);
            match res {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(StoreError::Duplicate(r.id.clone()))
                }
                Err(e) => Err(db_err(e)),
            }
        })
        .await
    }

    async fn get(&self, id: &ExecutionId) -> Result<Option<ExecutionRecord>, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            let row: Option<(String, i64)> = c
                .query_row(
                    "SELECT record, version FROM executions WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_err)?;
            row.map(|(json, v)| decode(id, json, v)).transpose()
        })
        .await
    }

    async fn update(&self, record: &ExecutionRecord) -> Result<ExecutionRecord, StoreError> {
        let mut next = record.clone();
        next.version = record.version + 1;
        let json = encode(&next)?;
        let expected = record.version;
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let n = tx
                .prepare_cached(
                    "UPDATE executions SET state = ?1, backend = ?2, sandbox_id = ?3,
                        updated_at_ms = ?4, version = ?5, record = ?6
                     WHERE id = ?7 AND version = ?8",
                )
                .map_err(db_err)?
                .execute(params![
                    next.state.name(),
                    next.backend,
                    next.sandbox_id,
                    next.updated_at_ms as i64,
                    next.version as i64,
                    json,
                    next.id.as_str(),
                    expected as i64
                ])
                .map_err(db_err)?;
            if n == 1 {
                tx.commit().map_err(db_err)?;
                return Ok(next);
            }
            let found: Option<i64> = tx
                .query_row(
                    "SELECT version FROM executions WHERE id = ?1",
                    params![next.id.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            match found {
                None => Err(StoreError::NotFound(next.id.clone())),
                Some(found) => Err(StoreError::Conflict {
                    id: next.id.clone(),
                    expected,
                    found: found as u64,
                }),
            }
        })
        .await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        let filter = filter.clone();
        self.with_conn(move |c| {
            let mut sql = String::from("SELECT id, record, version FROM executions");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(states) = &filter.states {
                if states.is_empty() {
                    return Ok(Vec::new());
                }
                let marks: Vec<String> = (1..=states.len()).map(|i| format!("?{i}")).collect();
                sql.push_str(&format!(" WHERE state IN ({})", marks.join(", ")));
                args.extend(states.iter().map(|s| s.name().to_string().into()));
            }
            match filter.limit {
                Some(n) => {
                    sql.push_str(&format!(
                        " ORDER BY created_at_ms DESC, id DESC LIMIT {}",
                        n.min(i64::MAX as usize)
                    ));
                }
                None => sql.push_str(" ORDER BY created_at_ms ASC, id ASC"),
            }
            let mut stmt = c.prepare(&sql).map_err(db_err)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, json, v) = row.map_err(db_err)?;
                out.push(decode(id, json, v)?);
            }
            if filter.limit.is_some() {
                out.reverse();
            }
            Ok(out)
        })
        .await
    }

    async fn delete(&self, id: &ExecutionId) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            let n = c
                .execute("DELETE FROM executions WHERE id = ?1", params![id])
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests;

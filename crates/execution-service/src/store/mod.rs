//! Where execution records live: the [`ExecutionStore`] trait, the in-memory
//! [`MemoryStore`] (the default for embedding) and the durable
//! [`SqliteStore`] (for the CLI).
//!
//! Updates are optimistic: [`ExecutionStore::update`] writes a record only if
//! the stored version still equals the record's `version`, and bumps it. Two
//! tasks racing to change one execution cannot both win; the loser gets
//! [`StoreError::Conflict`], re-reads and decides again. No store lock is
//! ever held across a backend call.

use std::sync::Arc;

use async_trait::async_trait;

use crate::record::{ExecutionId, ExecutionRecord, ExecutionState};

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// Errors of a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `insert` of an id that exists.
    #[error("execution {0} already exists")]
    Duplicate(ExecutionId),
    /// `update` of an id that does not exist.
    #[error("execution {0} not found in the store")]
    NotFound(ExecutionId),
    /// `update` lost a race: the stored version moved on.
    #[error(
        "execution {id} was changed concurrently (expected version {expected}, found {found})"
    )]
    Conflict {
        /// The execution.
        id: ExecutionId,
        /// The version the caller read.
        expected: u64,
        /// The version in the store.
        found: u64,
    },
    /// A stored record cannot be read back.
    #[error("corrupt record {id}: {reason}")]
    Corrupt {
        /// The row's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Which records [`ExecutionStore::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only these states (`None`: all).
    pub states: Option<Vec<ExecutionState>>,
    /// At most this many, newest first when set (`None`: all, oldest first).
    pub limit: Option<usize>,
}

impl ListFilter {
    /// Every record.
    pub fn all() -> Self {
        Self::default()
    }
    /// Records in these states.
    pub fn states(states: &[ExecutionState]) -> Self {
        Self {
            states: Some(states.to_vec()),
            limit: None,
        }
    }
    /// The `n` newest records.
    pub fn newest(n: usize) -> Self {
        Self {
            states: None,
            limit: Some(n),
        }
    }
    fn matches(&self, r: &ExecutionRecord) -> bool {
        self.states.as_ref().is_none_or(|s| s.contains(&r.state))
    }
}

/// Sorts and truncates per a filter: oldest first; with a limit, the newest
/// `limit` (still oldest first among them).
fn apply_order(filter: &ListFilter, mut v: Vec<ExecutionRecord>) -> Vec<ExecutionRecord> {
    v.retain(|r| filter.matches(r));
    v.sort_by(|a, b| {
        a.created_at_ms
            .cmp(&b.created_at_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    if let Some(n) = filter.limit {
        let skip = v.len().saturating_sub(n);
        v.drain(..skip);
    }
    v
}

/// Durable (or not) storage of execution records. Safe to share between
/// tasks (`Send + Sync`); every method is short and never waits on a backend.
#[async_trait]
pub trait ExecutionStore: Send + Sync + std::fmt::Debug {
    /// Stores a new record (its `version` is kept as given, normally 0).
    async fn insert(&self, record: &ExecutionRecord) -> Result<(), StoreError>;

    /// A record by id.
    async fn get(&self, id: &ExecutionId) -> Result<Option<ExecutionRecord>, StoreError>;

    /// Replaces a record if the stored version equals `record.version`;
    /// returns the stored record, whose version is one higher.
    async fn update(&self, record: &ExecutionRecord) -> Result<ExecutionRecord, StoreError>;

    /// Records matching the filter, oldest first.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<ExecutionRecord>, StoreError>;

    /// Removes a record (for pruning); `false` when it did not exist.
    async fn delete(&self, id: &ExecutionId) -> Result<bool, StoreError>;
}

#[async_trait]
impl<T: ExecutionStore + ?Sized> ExecutionStore for Arc<T> {
    async fn insert(&self, record: &ExecutionRecord) -> Result<(), StoreError> {
        (**self).insert(record).await
    }
    async fn get(&self, id: &ExecutionId) -> Result<Option<ExecutionRecord>, StoreError> {
        (**self).get(id).await
    }
    async fn update(&self, record: &ExecutionRecord) -> Result<ExecutionRecord, StoreError> {
        (**self).update(record).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        (**self).list(filter).await
    }
    async fn delete(&self, id: &ExecutionId) -> Result<bool, StoreError> {
        (**self).delete(id).await
    }
}

/// The store test suite: every [`ExecutionStore`] implementation must pass
/// it. `make` returns a fresh, empty store each call.
#[cfg(test)]
pub(crate) mod suite {
    use super::*;
    use crate::record::{ExecutionRequest, IsolationSummary, ResultSummary};

    fn rec(n: u64) -> ExecutionRecord {
        let mut r = ExecutionRecord::new(
            ExecutionId::new(format!("ex-suite-{n:04}")).unwrap(),
            ExecutionRequest::shell(format!("echo {n}")).env("N", n.to_string()),
        );
        r.created_at_ms = 1_000 + n;
        r
    }

    pub async fn run_all<S: ExecutionStore + 'static>(make: impl Fn() -> S) {
        insert_get_roundtrip(&make()).await;
        duplicate_insert_rejected(&make()).await;
        update_is_compare_and_swap(&make()).await;
        update_unknown_is_not_found(&make()).await;
        list_filters_and_orders(&make()).await;
        delete_removes(&make()).await;
        concurrent_updates_one_winner(Arc::new(make())).await;
        many_concurrent_inserts(Arc::new(make())).await;
    }

    async fn insert_get_roundtrip(s: &impl ExecutionStore) {
        let mut r = rec(1);
        r.result = Some(ResultSummary {
            status: "exited".into(),
            exit_code: Some(3),
            signal: None,
            wall_ms: 12,
            cpu_ms: Some(4),
            peak_memory: None,
            stdout_bytes: 1,
            stderr_bytes: 0,
            stdout_truncated: false,
            stderr_truncated: true,
        });
        r.owner = Some(orchestrator_core::owner::Owner::current());
        r.request = r.request.mount("/srv/data", "data", false);
        r.isolation = Some(IsolationSummary {
            requested: "auto".into(),
            level: "full".into(),
            network: "none".into(),
            enforced_by: vec!["user-namespace".into(), "seccomp".into()],
            note: Some("remark".into()),
        });
        s.insert(&r).await.unwrap();
        assert_eq!(s.get(&r.id).await.unwrap(), Some(r.clone()));
        let missing = ExecutionId::new("ex-missing").unwrap();
        assert_eq!(s.get(&missing).await.unwrap(), None);
    }

    async fn duplicate_insert_rejected(s: &impl ExecutionStore) {
        let r = rec(2);
        s.insert(&r).await.unwrap();
        assert!(matches!(
            s.insert(&r).await,
            Err(StoreError::Duplicate(id)) if id == r.id
        ));
    }

    async fn update_is_compare_and_swap(s: &impl ExecutionStore) {
        let mut r = rec(3);
        s.insert(&r).await.unwrap();
        r.transition(ExecutionState::Starting).unwrap();
        r.backend = Some("native".into());
        let stored = s.update(&r).await.unwrap();
        assert_eq!(stored.version, 1);
        assert_eq!(stored.state, ExecutionState::Starting);
        assert_eq!(s.get(&r.id).await.unwrap().unwrap(), stored);
        // A stale writer (version 0) loses.
        let mut stale = r.clone();
        stale.transition(ExecutionState::Cancelled).unwrap();
        match s.update(&stale).await {
            Err(StoreError::Conflict {
                expected, found, ..
            }) => {
                assert_eq!((expected, found), (0, 1));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.get(&r.id).await.unwrap().unwrap().state,
            ExecutionState::Starting
        );
        let mut next = stored.clone();
        next.transition(ExecutionState::Cancelled).unwrap();
        assert_eq!(s.update(&next).await.unwrap().version, 2);
    }

    async fn update_unknown_is_not_found(s: &impl ExecutionStore) {
        assert!(matches!(
            s.update(&rec(4)).await,
            Err(StoreError::NotFound(_))
        ));
    }

    async fn list_filters_and_orders(s: &impl ExecutionStore) {
        for n in [7u64, 5, 6, 8] {
            let mut r = rec(n);
            s.insert(&r).await.unwrap();
            if n % 2 == 0 {
                r.transition(ExecutionState::Cancelled).unwrap();
                s.update(&r).await.unwrap();
            }
        }
        let all: Vec<String> = s
            .list(&ListFilter::all())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id.to_string())
            .collect();
        assert_eq!(
            all,
            [
                "ex-suite-0005",
                "ex-suite-0006",
                "ex-suite-0007",
                "ex-suite-0008"
            ]
        );
        let pending = s
            .list(&ListFilter::states(&[ExecutionState::Pending]))
            .await
            .unwrap();
        assert_eq!(pending.len(), 2);
        assert!(pending.iter().all(|r| r.state == ExecutionState::Pending));
        let newest = s.list(&ListFilter::newest(2)).await.unwrap();
        let ids: Vec<_> = newest.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["ex-suite-0007", "ex-suite-0008"]);
        assert!(s
            .list(&ListFilter::states(&[ExecutionState::Running]))
            .await
            .unwrap()
            .is_empty());
    }

    async fn delete_removes(s: &impl ExecutionStore) {
        let r = rec(9);
        s.insert(&r).await.unwrap();
        assert!(s.delete(&r.id).await.unwrap());
        assert!(!s.delete(&r.id).await.unwrap());
        assert_eq!(s.get(&r.id).await.unwrap(), None);
    }

    async fn concurrent_updates_one_winner<S: ExecutionStore + 'static>(s: Arc<S>) {
        let r = rec(10);
        s.insert(&r).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = s.clone();
            let mut mine = r.clone();
            tasks.push(tokio::spawn(async move {
                mine.transition(ExecutionState::Starting).unwrap();
                s.update(&mine).await.is_ok()
            }));
        }
        let mut winners = 0;
        for t in tasks {
            if t.await.unwrap() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
        assert_eq!(s.get(&r.id).await.unwrap().unwrap().version, 1);
    }

    async fn many_concurrent_inserts<S: ExecutionStore + 'static>(s: Arc<S>) {
        let mut tasks = Vec::new();
        for n in 100..140u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move { s.insert(&rec(n)).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(s.list(&ListFilter::all()).await.unwrap().len(), 40);
    }
}

//! [`MemoryStore`]: records in a map, gone with the process.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{apply_order, ExecutionStore, ListFilter, StoreError};
use crate::record::{ExecutionId, ExecutionRecord};

/// Keeps records in memory (the default store for embedding). The lock is
/// held only to copy a record in or out.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<ExecutionId, ExecutionRecord>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, ExecutionRecord>> {
        // The map is only ever replaced whole-record at a time: a panic
        // elsewhere cannot leave it half-written, so poisoning is harmless.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ExecutionStore for MemoryStore {
    async fn insert(&self, record: &ExecutionRecord) -> Result<(), StoreError> {
        let mut m = self.map();
        if m.contains_key(&record.id) {
            return Err(StoreError::Duplicate(record.id.clone()));
        }
        m.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn get(&self, id: &ExecutionId) -> Result<Option<ExecutionRecord>, StoreError> {
        Ok(self.map().get(id).cloned())
    }

    async fn update(&self, record: &ExecutionRecord) -> Result<ExecutionRecord, StoreError> {
        let mut m = self.map();
        let cur = m
            .get_mut(&record.id)
            .ok_or_else(|| StoreError::NotFound(record.id.clone()))?;
        if cur.version != record.version {
            return Err(StoreError::Conflict {
                id: record.id.clone(),
                expected: record.version,
                found: cur.version,
            });
        }
        let mut next = record.clone();
        next.version += 1;
        *cur = next.clone();
        Ok(next)
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        let all: Vec<ExecutionRecord> = self.map().values().cloned().collect();
        Ok(apply_order(filter, all))
    }

    async fn delete(&self, id: &ExecutionId) -> Result<bool, StoreError> {
        Ok(self.map().remove(id).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_store_passes_the_suite() {
        crate::store::suite::run_all(MemoryStore::new).await;
    }
}

//! [`ExecutionId`]: validated, generated execution ids.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orchestrator_core::{Error as CoreError, WorkspaceId};
use serde::{Deserialize, Serialize};

/// Identifies an execution: 1–128 characters of `[A-Za-z0-9._-]`, not
/// starting with `.` (so it is safe as a label value and a file name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExecutionId(String);

impl ExecutionId {
    /// Validates and wraps an id.
    pub fn new(s: impl Into<String>) -> Result<Self, CoreError> {
        let s = s.into();
        // Same rules as workspace ids.
        WorkspaceId::new(s.clone())
            .map_err(|_| CoreError::invalid(format!("execution id {s:?} is not 1-128 characters of [A-Za-z0-9._-] not starting with '.'")))?;
        Ok(Self(s))
    }

    /// A fresh, unique id: `ex-<time>-<pid>-<counter><random>`.
    pub fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        let random = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(nanos);
            h.write_u64(n);
            h.finish() & 0xffff
        };
        Self(format!(
            "ex-{:x}-{:x}-{n:x}{random:04x}",
            nanos / 1_000_000,
            std::process::id()
        ))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ExecutionId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        Self::new(s)
    }
}

impl TryFrom<String> for ExecutionId {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, CoreError> {
        Self::new(s)
    }
}

impl From<ExecutionId> for String {
    fn from(id: ExecutionId) -> String {
        id.0
    }
}

//! The state and counters of a backend's warm pool of sandboxes (prepared
//! ahead, handed to `create_workspace`, refilled in the background): one
//! shape for every backend that pools, whatever it pools.

use std::collections::VecDeque;

/// Counters of a backend's warm pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The configured size.
    pub size: usize,
    /// Prepared sandboxes waiting in the pool now.
    pub ready: usize,
    /// Refills running now.
    pub in_flight: usize,
    /// Workspaces handed out from the pool.
    pub hits: u64,
    /// Poolable `create_workspace` calls that found the pool empty (and
    /// made their sandbox fresh).
    pub misses: u64,
    /// Pooled sandboxes found unusable when taken: discarded, and the
    /// workspace was made fresh instead.
    pub discarded: u64,
    /// Refills that failed (the pool stays short until the next top-up).
    pub refill_failures: u64,
}

/// A pool of prepared `T`s and its counters, behind the backend's lock.
#[derive(Debug)]
pub struct PoolState<T> {
    /// Set when the backend is dropped: refills then discard what they make.
    pub closed: bool,
    /// Prepared items, oldest first.
    pub ready: VecDeque<T>,
    /// Refills running.
    pub in_flight: usize,
    /// See [`PoolStats::hits`].
    pub hits: u64,
    /// See [`PoolStats::misses`].
    pub misses: u64,
    /// See [`PoolStats::discarded`].
    pub discarded: u64,
    /// See [`PoolStats::refill_failures`].
    pub refill_failures: u64,
    /// Why the last refill failed.
    pub last_error: Option<String>,
}

impl<T> Default for PoolState<T> {
    fn default() -> Self {
        Self {
            closed: false,
            ready: VecDeque::new(),
            in_flight: 0,
            hits: 0,
            misses: 0,
            discarded: 0,
            refill_failures: 0,
            last_error: None,
        }
    }
}

impl<T> PoolState<T> {
    /// The counters, for a pool of configured `size`.
    pub fn stats(&self, size: usize) -> PoolStats {
        PoolStats {
            size,
            ready: self.ready.len(),
            in_flight: self.in_flight,
            hits: self.hits,
            misses: self.misses,
            discarded: self.discarded,
            refill_failures: self.refill_failures,
        }
    }

    /// How many refills to start now to bring the pool up to `size`.
    pub fn shortfall(&self, size: usize) -> usize {
        if self.closed {
            return 0;
        }
        size.saturating_sub(self.ready.len() + self.in_flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_shortfall() {
        let mut p: PoolState<u8> = PoolState::default();
        assert_eq!(p.shortfall(3), 3);
        p.ready.push_back(1);
        p.in_flight = 1;
        assert_eq!(p.shortfall(3), 1);
        assert_eq!(p.stats(3).ready, 1);
        p.closed = true;
        assert_eq!(p.shortfall(3), 0);
    }
}

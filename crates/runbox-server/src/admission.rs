//! [`Admission`]: backpressure. At most `max_concurrency` commands execute
//! and `max_queue` wait; one more is refused at once (`queue_full`), never
//! left hanging.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::problem::ApiError;

/// The slots and the queue in front of them.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    size: usize,
    queued: Arc<AtomicUsize>,
    max_queue: usize,
}

/// A place: a slot already, or a place in the queue.
#[derive(Debug)]
pub enum Ticket {
    /// Executing may start now.
    Ready(OwnedSemaphorePermit),
    /// Waiting; [`Ticket::slot`] waits for the slot.
    Queued(Arc<Semaphore>, QueuePlace),
}

/// A place in the queue, given back when dropped.
#[derive(Debug)]
pub struct QueuePlace(Arc<AtomicUsize>);

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ticket {
    /// Waits for the slot (at once for a ready ticket).
    pub async fn slot(self) -> Option<OwnedSemaphorePermit> {
        match self {
            Ticket::Ready(p) => Some(p),
            Ticket::Queued(slots, place) => {
                let p = slots.acquire_owned().await.ok();
                drop(place);
                p
            }
        }
    }
}

impl Admission {
    /// `max_concurrency` slots (at least one) and `max_queue` places.
    pub fn new(max_concurrency: usize, max_queue: usize) -> Self {
        let size = max_concurrency.max(1);
        Self {
            slots: Arc::new(Semaphore::new(size)),
            size,
            queued: Arc::new(AtomicUsize::new(0)),
            max_queue,
        }
    }

    /// A ticket, or `queue_full` when every slot and place is taken.
    pub fn enter(&self) -> Result<Ticket, ApiError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(Ticket::Ready(p));
        }
        let before = self.queued.fetch_add(1, Ordering::SeqCst);
        let place = QueuePlace(self.queued.clone());
        if before >= self.max_queue {
            drop(place);
            return Err(ApiError::queue_full(format!(
                "{} commands are executing and {} waiting, the most this server takes; retry later",
                self.size, self.max_queue
            )));
        }
        Ok(Ticket::Queued(self.slots.clone(), place))
    }

    /// Commands executing now.
    pub fn in_flight(&self) -> usize {
        self.size - self.slots.available_permits()
    }

    /// Commands waiting now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// No more slots will be given (shutdown); waiters get none.
    pub fn close(&self) {
        self.slots.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_slots_and_queue_is_refused_at_once() {
        let a = Admission::new(1, 1);
        let first = a.enter().unwrap();
        assert!(matches!(first, Ticket::Ready(_)));
        let second = a.enter().unwrap();
        assert!(matches!(second, Ticket::Queued(..)));
        assert_eq!((a.in_flight(), a.queued()), (1, 1));
        let third = a.enter().unwrap_err();
        assert_eq!(third.code, "queue_full");
        assert_eq!(a.queued(), 1);
        let waiter = tokio::spawn(second.slot());
        drop(first);
        let p = waiter.await.unwrap();
        assert!(p.is_some());
        assert_eq!((a.in_flight(), a.queued()), (1, 0));
    }
}

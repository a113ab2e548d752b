//! A byte budget for what a source's readers have fetched and the
//! pipeline has not finished with yet, so read-ahead is bounded whatever
//! the number of shards or partitions.
//!
//! Input: readers asking for bytes before a fetch. Output: a [`Held`]
//! ticket per fetch, resized to what its batch holds once decoded and given
//! back when dropped (the source drops it when the pipeline asks for its
//! next event, or when the batch is stale). A reader waits while the
//! budget is spent; one ask is always granted when nothing is held, so an
//! ask larger than the budget still goes through alone. Failure: none.

use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub struct ReadAhead {
    limit: usize,
    used: Mutex<usize>,
    freed: Notify,
}

/// Bytes taken from a [`ReadAhead`]; given back when dropped.
pub struct Held {
    budget: Arc<ReadAhead>,
    bytes: usize,
}

impl ReadAhead {
    pub fn new(limit: usize) -> Arc<ReadAhead> {
        Arc::new(ReadAhead { limit, used: Mutex::new(0), freed: Notify::new() })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        *self.used.lock().unwrap()
    }

    /// Waits until `bytes` fit in the budget (or nothing is held), then takes them.
    pub async fn take(self: &Arc<Self>, bytes: usize) -> Held {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut used = self.used.lock().unwrap();
                if *used == 0 || *used + bytes <= self.limit {
                    *used += bytes;
                    return Held { budget: self.clone(), bytes };
                }
            }
            freed.await;
        }
    }
}

impl Held {
    /// Holds `bytes` instead (what the decoded batch keeps; may exceed the ask).
    pub fn resize(&mut self, bytes: usize) {
        let mut used = self.budget.used.lock().unwrap();
        *used = *used - self.bytes + bytes;
        let shrunk = bytes < self.bytes;
        self.bytes = bytes;
        drop(used);
        if shrunk {
            self.budget.freed.notify_waiters();
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        *self.budget.used.lock().unwrap() -= self.bytes;
        self.budget.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn asks_wait_while_the_budget_is_spent_and_go_on_when_it_is_given_back() {
        let b = ReadAhead::new(100);
        let mut first = b.take(60).await;
        let second = b.take(40).await;
        assert_eq!(b.used(), 100);
        // a third ask waits until bytes come back
        let b2 = b.clone();
        let third = tokio::spawn(async move { b2.take(30).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "granted over the budget");
        first.resize(10); // the batch kept less than was fetched
        let third = tokio::time::timeout(Duration::from_secs(1), third).await.expect("granted once bytes came back").unwrap();
        assert_eq!(b.used(), 80);
        drop((first, second, third));
        assert_eq!(b.used(), 0);
        // an ask larger than the whole budget goes through when nothing is held
        let big = tokio::time::timeout(Duration::from_secs(1), b.take(500)).await.expect("granted alone");
        assert_eq!(b.used(), 500);
        drop(big);
        assert_eq!(b.used(), 0);
    }
}

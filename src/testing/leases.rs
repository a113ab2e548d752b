//! In-memory twin of the lease table, for tests of the coordinator and
//! the lease-store conformance suite. Same conditions as DynamoDB's: every
//! write but `create` is conditional on the counter (and the owner).

use crate::ids::ShardId;
use crate::source::lease::{Lease, LeaseError, LeaseStore, Update};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryLeases {
    pub rows: Mutex<BTreeMap<ShardId, Lease>>,
    /// While set, every call fails as an unreachable table would.
    pub fail: std::sync::atomic::AtomicBool,
}

impl MemoryLeases {
    fn check(&self) -> Result<(), LeaseError> {
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(LeaseError::Table { table: "memory".into(), message: "unreachable (injected)".into() });
        }
        Ok(())
    }
}

impl LeaseStore for MemoryLeases {
    async fn ensure_table(&self) -> Result<(), LeaseError> {
        Ok(())
    }
    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        self.check()?;
        Ok(self.rows.lock().unwrap().values().cloned().collect())
    }
    async fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let mut rows = self.rows.lock().unwrap();
        if rows.contains_key(&lease.shard) {
            return Ok(false);
        }
        rows.insert(lease.shard.clone(), lease.clone());
        Ok(true)
    }
    async fn take(&self, shard: &ShardId, owner: &str, counter: u64) -> Result<Option<u64>, LeaseError> {
        let mut rows = self.rows.lock().unwrap();
        match rows.get_mut(shard) {
            Some(l) if l.counter == counter => {
                l.counter += 1;
                l.owner = Some(owner.to_string());
                Ok(Some(l.counter))
            }
            _ => Ok(None),
        }
    }
    async fn update(&self, shard: &ShardId, owner: &str, counter: u64, u: Update<'_>) -> Result<Option<u64>, LeaseError> {
        self.check()?;
        let mut rows = self.rows.lock().unwrap();
        match rows.get_mut(shard) {
            Some(l) if l.counter == counter && l.owner.as_deref() == Some(owner) => {
                l.counter += 1;
                if let Some(cp) = u.checkpoint {
                    l.checkpoint = cp.clone();
                    l.ended = u.ended;
                }
                if let Some(i) = u.intent {
                    l.intent = i.map(|i| i.to_vec());
                }
                Ok(Some(l.counter))
            }
            _ => Ok(None),
        }
    }
    async fn release(&self, shard: &ShardId, owner: &str, counter: u64) -> Result<bool, LeaseError> {
        let mut rows = self.rows.lock().unwrap();
        match rows.get_mut(shard) {
            Some(l) if l.counter == counter && l.owner.as_deref() == Some(owner) => {
                l.counter += 1;
                l.owner = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

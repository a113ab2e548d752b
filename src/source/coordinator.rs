//! Lease coordinator: which shards this worker reads.
//!
//! Input: the shard list (with parents) and the lease table. Output:
//! [`Control`] events — a lease taken (with the checkpoint and any flush
//! intent found in its row) or lost — and the fence every upload checks.
//!
//! Rules, as the KCL's: a lease is free when it has no owner or when its
//! counter has not moved for `failover` as seen by this worker. Each round
//! renews every held lease (a conditional write on the counter), takes free
//! leases up to this worker's fair share (leases ÷ live workers, rounded
//! up), and, if still below its share, steals one lease from the most loaded
//! worker. A child shard's lease is free only once all its parents are
//! checkpointed at SHARD_END. Self-fencing: a lease is writable only until
//! `failover` × 3/4 after the last renewal that succeeded, counted from when
//! that renewal was *sent*; another worker treats it as free only `failover`
//! after it last saw the counter move. A stolen lease is handed to the reader
//! only `failover` after the steal, when the old owner has surely stopped
//! writing. Failure: lease-table errors are logged and retried next round;
//! a lease whose renewals keep failing past its fence is given up.

use super::lease::{Lease, LeaseError, LeaseStore, Update};
use crate::ids::ShardId;
use crate::checkpoint::{FlushIntent, ShardCheckpoint};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug)]
pub enum Control {
    Assigned { shard: ShardId, checkpoint: ShardCheckpoint, intent: Vec<FlushIntent> },
    Revoked(ShardId),
}

struct Held {
    counter: u64,
    /// Uploads allowed until then.
    fence: Instant,
    /// Handed to a reader (false while waiting out a steal).
    assigned: bool,
    ready_at: Instant,
    snapshot: Lease,
}

/// Lease counts, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaseCounts {
    pub held: usize,
    pub total: usize,
    pub workers: usize,
}

pub struct Coordinator<L: LeaseStore> {
    store: Arc<L>,
    owner: String,
    failover: Duration,
    held: tokio::sync::Mutex<BTreeMap<ShardId, Held>>,
    fences: Mutex<HashMap<ShardId, Instant>>,
    /// Counter last seen per lease and when it was first seen at that value.
    seen: Mutex<HashMap<ShardId, (u64, Instant)>>,
    tx: UnboundedSender<Control>,
    pub counts: Mutex<LeaseCounts>,
}

impl<L: LeaseStore> Coordinator<L> {
    pub fn new(store: Arc<L>, owner: String, failover: Duration, tx: UnboundedSender<Control>) -> Self {
        Coordinator {
            store,
            owner,
            failover,
            held: Default::default(),
            fences: Default::default(),
            seen: Default::default(),
            tx,
            counts: Default::default(),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// How often [`Coordinator::round`] should run.
    pub fn interval(&self) -> Duration {
        (self.failover / 4).max(Duration::from_millis(100))
    }

    fn fence_for(&self, sent: Instant) -> Instant {
        sent + self.failover * 3 / 4
    }

    /// Whether uploads for `shard` may start now.
    pub fn may_write(&self, shard: &ShardId) -> bool {
        self.fences.lock().unwrap().get(shard).is_some_and(|f| Instant::now() < *f)
    }

    /// Creates lease rows for shards that have none.
    pub async fn sync_shards(&self, shards: &[(ShardId, Vec<ShardId>)], known: &[Lease]) -> Result<(), LeaseError> {
        for (shard, parents) in shards {
            if !known.iter().any(|l| &l.shard == shard) {
                self.store.create(&Lease::new(shard.clone(), parents.clone())).await?;
            }
        }
        Ok(())
    }

    fn lose(&self, held: &mut BTreeMap<ShardId, Held>, shard: &ShardId, why: &str) {
        if let Some(h) = held.remove(shard) {
            self.fences.lock().unwrap().remove(shard);
            tracing::warn!(shard = %shard, reason = why, "lease lost; dropping its buffers");
            if h.assigned {
                let _ = self.tx.send(Control::Revoked(shard.clone()));
            }
        }
    }

    /// Renews every held lease.
    pub async fn renew(&self) {
        let mut held = self.held.lock().await;
        let shards: Vec<ShardId> = held.keys().cloned().collect();
        for shard in shards {
            let counter = held[&shard].counter;
            let sent = Instant::now();
            match self.store.update(&shard, &self.owner, counter, Update::default()).await {
                Ok(Some(n)) => {
                    let h = held.get_mut(&shard).expect("held");
                    h.counter = n;
                    h.fence = self.fence_for(sent);
                    self.fences.lock().unwrap().insert(shard.clone(), h.fence);
                }
                Ok(None) => self.lose(&mut held, &shard, "taken by another worker"),
                Err(e) => {
                    tracing::warn!(shard = %shard, error = %e, "lease renewal failed; retrying");
                    if Instant::now() >= held[&shard].fence {
                        self.lose(&mut held, &shard, "renewals failed past the fence");
                    }
                }
            }
        }
    }

    /// Writes a fenced update (intent or checkpoint). False: the lease is
    /// lost. Lease-table errors are retried with backoff while the fence
    /// holds; past it the lease is given up (another worker replays).
    pub async fn write(&self, shard: &ShardId, u: Update<'_>) -> Result<bool, LeaseError> {
        let mut attempt = 0;
        loop {
            let mut held = self.held.lock().await;
            let Some(h) = held.get(shard) else { return Ok(false) };
            let (counter, fence) = (h.counter, h.fence);
            let sent = Instant::now();
            match self.store.update(shard, &self.owner, counter, u.clone()).await {
                Ok(Some(n)) => {
                    let h = held.get_mut(shard).expect("held");
                    h.counter = n;
                    h.fence = self.fence_for(sent);
                    self.fences.lock().unwrap().insert(shard.clone(), h.fence);
                    return Ok(true);
                }
                Ok(None) => {
                    self.lose(&mut held, shard, "fenced write refused");
                    return Ok(false);
                }
                Err(e) => {
                    attempt += 1;
                    let wait = crate::retry::backoff(attempt);
                    if Instant::now() + wait >= fence {
                        tracing::warn!(shard = %shard, error = %e, "lease table unreachable until the fence: giving the lease up");
                        self.lose(&mut held, shard, "lease table unreachable");
                        return Ok(false);
                    }
                    tracing::warn!(shard = %shard, error = %e, attempt, "lease write failed; retrying");
                    drop(held);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Gives a lease up (the shard ended, shutdown, or its buffers were
    /// dropped mid-flush). Conditional: a lease taken meanwhile is left alone.
    pub async fn release(&self, shard: &ShardId) -> Result<(), LeaseError> {
        let mut held = self.held.lock().await;
        if let Some(h) = held.remove(shard) {
            self.fences.lock().unwrap().remove(shard);
            self.store.release(shard, &self.owner, h.counter).await?;
        }
        Ok(())
    }

    /// Releases every held lease; one that cannot be released (lease table
    /// unreachable) is left to expire after the failover time.
    pub async fn release_all(&self) {
        let shards: Vec<ShardId> = self.held.lock().await.keys().cloned().collect();
        for s in shards {
            if let Err(e) = self.release(&s).await {
                tracing::warn!(shard = %s, error = %e, "could not release the lease; it expires after the failover time");
            }
        }
    }

    /// One balancing round over `leases` (a fresh read of the table).
    pub async fn balance(&self, leases: &[Lease]) -> Result<(), LeaseError> {
        let now = Instant::now();
        let by_shard: HashMap<&ShardId, &Lease> = leases.iter().map(|l| (&l.shard, l)).collect();
        let free = {
            let mut seen = self.seen.lock().unwrap();
            let mut free = HashMap::new();
            for l in leases {
                let e = seen.entry(l.shard.clone()).or_insert((l.counter, now));
                if e.0 != l.counter {
                    *e = (l.counter, now);
                }
                free.insert(l.shard.clone(), l.owner.is_none() || now.duration_since(e.1) >= self.failover);
            }
            free
        };
        let parents_done = |l: &Lease| l.parents.iter().all(|p| by_shard.get(p).is_none_or(|pl| pl.ended));
        let eligible: Vec<&Lease> = leases.iter().filter(|l| !l.ended && parents_done(l)).collect();
        let mut held = self.held.lock().await;
        let mut load: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
        for l in &eligible {
            if let Some(o) = l.owner.as_deref() {
                if !free[&l.shard] && o != self.owner {
                    load.entry(o).or_default().push(l);
                }
            }
        }
        let workers = load.len() + 1;
        let target = eligible.len().div_ceil(workers);
        *self.counts.lock().unwrap() = LeaseCounts { held: held.len(), total: eligible.len(), workers };
        let mut want = target.saturating_sub(held.len());
        let candidates: Vec<&Lease> = eligible.iter().copied().filter(|l| free[&l.shard] && !held.contains_key(&l.shard)).collect();
        for l in candidates {
            if want == 0 {
                break;
            }
            if let Some(n) = self.store.take(&l.shard, &self.owner, l.counter).await? {
                tracing::info!(shard = %l.shard, previous = l.owner.as_deref().unwrap_or("-"), "lease taken");
                self.hold(&mut held, l, n, Instant::now(), now);
                want -= 1;
            }
        }
        if want > 0 {
            // steal one from the most loaded worker above the fair share
            if let Some((victim, ls)) = load.iter().max_by_key(|(_, v)| v.len()).filter(|(_, v)| v.len() > target) {
                let l = ls[0];
                if let Some(n) = self.store.take(&l.shard, &self.owner, l.counter).await? {
                    tracing::info!(shard = %l.shard, from = victim, "lease stolen for balance; reading starts after the failover time");
                    self.hold(&mut held, l, n, Instant::now(), now + self.failover);
                }
            }
        }
        // hand over leases that are ready
        for (shard, h) in held.iter_mut() {
            if !h.assigned && now >= h.ready_at {
                h.assigned = true;
                let _ = self.tx.send(Control::Assigned {
                    shard: shard.clone(),
                    checkpoint: h.snapshot.checkpoint.clone(),
                    intent: h.snapshot.intent.clone().unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    fn hold(&self, held: &mut BTreeMap<ShardId, Held>, l: &Lease, counter: u64, sent: Instant, ready_at: Instant) {
        let fence = self.fence_for(sent);
        self.fences.lock().unwrap().insert(l.shard.clone(), fence);
        held.insert(l.shard.clone(), Held { counter, fence, assigned: false, ready_at, snapshot: l.clone() });
    }

    /// One full round: renew, read the table, create missing rows, balance.
    pub async fn round(&self, shards: Option<&[(ShardId, Vec<ShardId>)]>) -> Result<(), LeaseError> {
        self.renew().await;
        let mut leases = self.store.list().await?;
        if let Some(shards) = shards {
            if shards.iter().any(|(s, _)| !leases.iter().any(|l| &l.shard == s)) {
                self.sync_shards(shards, &leases).await?;
                leases = self.store.list().await?;
            }
        }
        self.balance(&leases).await
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::leases::MemoryLeases;
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    fn shards(n: usize) -> Vec<(ShardId, Vec<ShardId>)> {
        (0..n).map(|i| (ShardId::new(&format!("shardId-{i:012}")), vec![])).collect()
    }

    fn held(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Control>, set: &mut std::collections::BTreeSet<ShardId>) {
        while let Ok(c) = rx.try_recv() {
            match c {
                Control::Assigned { shard, .. } => assert!(set.insert(shard)),
                Control::Revoked(s) => assert!(set.remove(&s)),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn two_workers_balance_steal_once_and_fail_over() {
        let store = Arc::new(MemoryLeases::default());
        let f = Duration::from_secs(4);
        let (ta, mut ra) = unbounded_channel();
        let (tb, mut rb) = unbounded_channel();
        let a = Coordinator::new(store.clone(), "a".into(), f, ta);
        let b = Coordinator::new(store.clone(), "b".into(), f, tb);
        let (mut sa, mut sb) = (Default::default(), Default::default());
        let list = shards(4);
        a.round(Some(&list)).await.unwrap();
        held(&mut ra, &mut sa);
        assert_eq!(sa.len(), 4, "a lone worker takes every lease");
        // b joins: it steals (one per round) up to its share, and waits out the failover before reading
        for _ in 0..12 {
            tokio::time::advance(a.interval()).await;
            a.round(Some(&list)).await.unwrap();
            b.round(Some(&list)).await.unwrap();
            held(&mut ra, &mut sa);
            held(&mut rb, &mut sb);
            assert!(sa.is_disjoint(&sb), "a shard is read by one worker at a time: {sa:?} {sb:?}");
            for s in &sb {
                assert!(!a.may_write(s), "the old owner is fenced before the new one reads {s}");
            }
        }
        assert_eq!((sa.len(), sb.len()), (2, 2));
        // a dies (no more rounds): b takes a's leases once they have not moved for the failover time
        let mut waited = Duration::ZERO;
        while sb.len() < 4 {
            tokio::time::advance(b.interval()).await;
            waited += b.interval();
            b.round(Some(&list)).await.unwrap();
            held(&mut rb, &mut sb);
            assert!(waited <= f * 2, "failover within 2× the failover time");
        }
        assert!(waited >= f, "not before the failover time ({waited:?})");
        assert!(sa.iter().all(|s| !a.may_write(s)), "the dead worker's fence has passed");
    }

    #[tokio::test(start_paused = true)]
    async fn lease_table_errors_are_retried_until_the_fence_then_the_lease_is_given_up() {
        use std::sync::atomic::Ordering;
        let store = Arc::new(MemoryLeases::default());
        let (t, mut r) = unbounded_channel();
        let a = Coordinator::new(store.clone(), "a".into(), Duration::from_secs(8), t);
        let list = shards(2);
        a.round(Some(&list)).await.unwrap();
        let mut s = Default::default();
        held(&mut r, &mut s);
        assert_eq!(s.len(), 2);
        let (s0, s1) = (list[0].0.clone(), list[1].0.clone());
        // a short outage: the write waits and succeeds
        store.fail.store(true, Ordering::Relaxed);
        let healer = {
            let store = store.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                store.fail.store(false, Ordering::Relaxed);
            })
        };
        assert!(a.write(&s0, Update::default()).await.unwrap(), "retried through a short outage");
        healer.await.unwrap();
        // a long one: given up before the fence passes, reported as lost
        store.fail.store(true, Ordering::Relaxed);
        let started = Instant::now();
        assert!(!a.write(&s1, Update::default()).await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(6), "gave up within the fence ({:?})", started.elapsed());
        assert!(!a.may_write(&s1));
        held(&mut r, &mut s);
        assert!(!s.contains(&s1), "revoked");
    }

    #[tokio::test(start_paused = true)]
    async fn children_wait_for_their_parents_and_release_hands_over_at_once() {
        let store = Arc::new(MemoryLeases::default());
        let (t, mut r) = unbounded_channel();
        let a = Coordinator::new(store.clone(), "a".into(), Duration::from_secs(10), t);
        let parent = ShardId::new("shardId-000000000000");
        let kids: Vec<(ShardId, Vec<ShardId>)> =
            (1..=2).map(|i| (ShardId::new(&format!("shardId-00000000000{i}")), vec![parent.clone()])).collect();
        let mut list = vec![(parent.clone(), vec![])];
        list.extend(kids.clone());
        let mut s = Default::default();
        a.round(Some(&list)).await.unwrap();
        held(&mut r, &mut s);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![&parent], "children wait for the parent's SHARD_END");
        let cp = ShardCheckpoint::default();
        assert!(a.write(&parent, Update { checkpoint: Some(&cp), intent: Some(None), ended: true }).await.unwrap());
        a.release(&parent).await.unwrap();
        s.clear();
        a.round(Some(&list)).await.unwrap();
        held(&mut r, &mut s);
        assert_eq!(s.len(), 2, "both children start once the parent ended");
        // a released lease is taken by another worker at once, without waiting for the failover
        a.release(&kids[0].0).await.unwrap();
        let (t2, mut r2) = unbounded_channel();
        let b = Coordinator::new(store.clone(), "b".into(), Duration::from_secs(10), t2);
        b.round(Some(&list)).await.unwrap();
        let mut s2 = Default::default();
        held(&mut r2, &mut s2);
        assert!(s2.contains(&kids[0].0));
        // a's fenced write on a lease it no longer holds is refused
        assert!(!a.write(&kids[0].0, Update::default()).await.unwrap());
    }
}

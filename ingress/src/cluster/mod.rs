//! Cluster mode (`oms serve --cluster`, docs/scale-out.md): several nodes on one Kafka log.
//!
//! Every node is a full replica: it reads every partition of `orders` and applies it to its
//! own deterministic engine (books, orders, positions, idempotency answers), so any node can
//! answer any read and a new leader has nothing to load. *Leadership* is partitioned: the
//! consumer group gives each partition `p` of `orders` to one node, which then
//!
//! - admits the requests of the accounts that hash to `p` (validate ▶ idempotency ▶ R1 risk ▶
//!   append): an account's margin is checked by exactly one node, whatever symbols it trades;
//! - emits the events of the symbols that hash to `p` (Kafka event topics, MongoDB).
//!
//! A request for an account led elsewhere is forwarded to the leader (`http::forward`); the
//! leader table comes from the `{prefix}members` topic. This module holds the shared state:
//! who leads what, which led partitions are caught up, and the requests in flight per
//! partition (a revoked leader waits for them before it lets go).

pub mod member;
pub mod replica;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oms_kafka::Owner;
use parking_lot::RwLock;

/// At most this many partitions (the ownership sets are bit masks).
pub const MAX_PARTITIONS: u32 = 64;

/// Where a request of an account goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// This node leads the account's partition and is caught up.
    Local,
    /// Another node leads it: forward there.
    Forward(String),
    /// Nobody leads it right now, or this node has just taken it and is catching up.
    Unavailable,
}

/// This node's view of the cluster (shared by the HTTP layer, the membership thread and the
/// processor).
pub struct Cluster {
    pub node: String,
    pub url: String,
    partitions: u32,
    /// Partitions this node leads.
    owned: AtomicU64,
    /// Led partitions whose replica has caught up and whose R1 state is seeded.
    ready: AtomicU64,
    owners: RwLock<Vec<Option<Owner>>>,
    in_flight: Vec<AtomicU32>,
    /// Per partition, the next offset this node's replica will apply.
    applied: Vec<AtomicU64>,
    /// Per led partition, the next offset whose events this node has handed to its leader
    /// sinks.
    emitted: Vec<AtomicU64>,
    /// Per led partition, the next offset whose events every leader sink has settled
    /// (delivered): what the group may record as emitted (`EventSink::progress`).
    settled: Vec<AtomicU64>,
    /// The group has given this node its first assignment (possibly empty).
    joined: std::sync::atomic::AtomicBool,
    /// Last time `ready` changed to cover every owned partition (for the rebalance metric).
    pub rebalances: AtomicU64,
}

impl Cluster {
    pub fn new(node: String, url: String, partitions: u32) -> Self {
        Cluster {
            node,
            url,
            partitions,
            owned: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            owners: RwLock::new(vec![None; partitions as usize]),
            in_flight: (0..partitions).map(|_| AtomicU32::new(0)).collect(),
            joined: std::sync::atomic::AtomicBool::new(false),
            applied: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            emitted: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            settled: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            rebalances: AtomicU64::new(0),
        }
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partition an account's requests belong to.
    pub fn account_partition(&self, account: &str) -> u32 {
        oms_kafka::partition_for(account.as_bytes(), self.partitions)
    }

    /// The partition a symbol's commands are written to (the producer keys by symbol).
    pub fn symbol_partition(&self, symbol: &str) -> u32 {
        oms_kafka::partition_for(symbol.as_bytes(), self.partitions)
    }

    pub fn leads(&self, p: u32) -> bool {
        self.owned.load(Ordering::Acquire) & (1 << p) != 0
    }

    pub fn owned(&self) -> Vec<u32> {
        bits(self.owned.load(Ordering::Acquire))
    }

    /// The group has been joined and every led partition is caught up.
    pub fn is_ready(&self) -> bool {
        let owned = self.owned.load(Ordering::Acquire);
        self.joined.load(Ordering::Acquire) && self.ready.load(Ordering::Acquire) & owned == owned
    }

    pub fn route(&self, account: &str) -> Route {
        let p = self.account_partition(account);
        if self.ready.load(Ordering::Acquire) & (1 << p) != 0 {
            return Route::Local;
        }
        if self.leads(p) {
            return Route::Unavailable;
        }
        match &self.owners.read()[p as usize] {
            Some(o) if o.node != self.node => Route::Forward(o.url.clone()),
            _ => Route::Unavailable,
        }
    }

    /// Counts a locally admitted request of partition `p` until the guard drops.
    pub fn admit(self: &Arc<Self>, p: u32) -> InFlightGuard {
        self.in_flight[p as usize].fetch_add(1, Ordering::AcqRel);
        InFlightGuard {
            cluster: Arc::clone(self),
            p,
        }
    }

    /// Leadership of `parts` gained: not ready until the processor says so.
    pub fn assign(&self, parts: &[u32]) {
        self.owned.fetch_or(mask(parts), Ordering::AcqRel);
        self.joined.store(true, Ordering::Release);
    }

    /// The processor caught up on `parts` and seeded R1: admit their requests.
    pub fn mark_ready(&self, parts: &[u32]) {
        let m = mask(parts) & self.owned.load(Ordering::Acquire);
        self.ready.fetch_or(m, Ordering::AcqRel);
        self.rebalances.fetch_add(1, Ordering::Relaxed);
    }

    /// Leadership of `parts` lost: stop admitting at once, then wait (bounded) for the
    /// requests already admitted, so they are in the log before the next leader reads its
    /// high watermarks.
    pub fn revoke(&self, parts: &[u32], wait: Duration) {
        let m = mask(parts);
        self.ready.fetch_and(!m, Ordering::AcqRel);
        self.owned.fetch_and(!m, Ordering::AcqRel);
        let deadline = Instant::now() + wait;
        while parts
            .iter()
            .any(|&p| self.in_flight[p as usize].load(Ordering::Acquire) > 0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The replica has applied partition `p` up to (not including) `next`.
    pub fn set_applied(&self, p: u32, next: u64) {
        if let Some(a) = self.applied.get(p as usize) {
            a.store(next, Ordering::Release);
        }
    }

    pub fn applied(&self) -> Vec<u64> {
        self.applied
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .collect()
    }

    /// Leader events of partition `p` up to (not including) offset `next` are emitted.
    pub fn set_emitted(&self, p: u32, next: u64) {
        if let Some(a) = self.emitted.get(p as usize) {
            a.store(next, Ordering::Release);
        }
    }

    /// `(partition, next offset emitted)` for `parts`.
    pub fn emitted(&self, parts: &[u32]) -> Vec<(u32, u64)> {
        load(&self.emitted, parts)
    }

    /// Leader events of partition `p` up to (not including) offset `next` are delivered by
    /// every leader sink.
    pub fn set_settled(&self, p: u32, next: u64) {
        if let Some(a) = self.settled.get(p as usize) {
            a.store(next, Ordering::Release);
        }
    }

    /// `(partition, next offset settled)` for `parts`: what the group may record.
    pub fn settled(&self, parts: &[u32]) -> Vec<(u32, u64)> {
        load(&self.settled, parts)
    }

    /// Waits, up to `wait`, until every event emitted for `parts` has settled; returns the
    /// settled offsets (a revoked leader commits them so its successor starts there).
    pub fn settle(&self, parts: &[u32], wait: Duration) -> Vec<(u32, u64)> {
        let until = Instant::now() + wait;
        loop {
            let settled = self.settled(parts);
            if settled == self.emitted(parts) || Instant::now() >= until {
                return settled;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// This node leads `p` and has caught up on it (its events are emitted directly).
    pub fn is_ready_partition(&self, p: u32) -> bool {
        p < MAX_PARTITIONS && self.ready.load(Ordering::Acquire) & (1 << p) != 0
    }

    pub fn set_owners(&self, owners: Vec<Option<Owner>>) {
        *self.owners.write() = owners;
    }

    /// `(partition, leader node)` for `/api/cluster`.
    pub fn owners(&self) -> Vec<Option<Owner>> {
        self.owners.read().clone()
    }
}

/// See [`Cluster::admit`].
pub struct InFlightGuard {
    cluster: Arc<Cluster>,
    p: u32,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.cluster.in_flight[self.p as usize].fetch_sub(1, Ordering::AcqRel);
    }
}

fn load(v: &[AtomicU64], parts: &[u32]) -> Vec<(u32, u64)> {
    parts
        .iter()
        .filter_map(|&p| Some((p, v.get(p as usize)?.load(Ordering::Acquire))))
        .collect()
}

fn mask(parts: &[u32]) -> u64 {
    parts
        .iter()
        .filter(|&&p| p < MAX_PARTITIONS)
        .fold(0, |m, &p| m | (1 << p))
}

fn bits(m: u64) -> Vec<u32> {
    (0..MAX_PARTITIONS).filter(|p| m & (1 << p) != 0).collect()
}

/// What the membership thread asks of the processor when this node gains partitions.
#[derive(Clone, Debug)]
pub struct Takeover {
    pub partitions: Vec<u32>,
    /// High watermark of every partition of `orders` when the partitions were gained.
    pub high_watermarks: Vec<u64>,
    /// Per gained partition, the offset the previous leader emitted events up to (committed
    /// to the group at its revoke or periodically; `None`: never committed).
    pub emit_from: Vec<(u32, Option<u64>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(node: &str) -> Option<Owner> {
        Some(Owner {
            node: node.into(),
            url: format!("http://{node}"),
        })
    }

    #[test]
    fn routes_follow_leadership_and_readiness() {
        let c = Cluster::new("a".into(), "http://a".into(), 4);
        let acct = "acct-1";
        let p = c.account_partition(acct);
        let mut table = vec![owner("b"); 4];
        c.set_owners(table.clone());
        assert_eq!(c.route(acct), Route::Forward("http://b".into()));
        c.assign(&[p]);
        assert_eq!(c.route(acct), Route::Unavailable, "catching up");
        assert!(!c.is_ready());
        c.mark_ready(&[p]);
        assert_eq!(c.route(acct), Route::Local);
        assert!(c.is_ready());
        c.revoke(&[p], Duration::from_millis(10));
        table[p as usize] = None;
        c.set_owners(table);
        assert_eq!(c.route(acct), Route::Unavailable, "nobody leads it");
    }

    #[test]
    fn revoke_waits_for_admitted_requests() {
        let c = Arc::new(Cluster::new("a".into(), "http://a".into(), 2));
        c.assign(&[1]);
        c.mark_ready(&[1]);
        let guard_held = Arc::clone(&c);
        let t = std::thread::spawn(move || {
            let _g = guard_held.admit(1);
            std::thread::sleep(Duration::from_millis(80));
        });
        std::thread::sleep(Duration::from_millis(10));
        let started = Instant::now();
        c.revoke(&[1], Duration::from_secs(2));
        assert!(started.elapsed() >= Duration::from_millis(50));
        t.join().unwrap();
        assert!(!c.leads(1));
    }
}

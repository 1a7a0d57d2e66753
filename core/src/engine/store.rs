//! The engine's order records: a chunked slab addressed through a small id index.
//!
//! Why not `HashMap<OrderId, Order>`: a hash table stores its values in its buckets, and
//! its bucket count is the next power of two above 8/7 of its length, so between two growths
//! up to half of the buckets are empty — yet every page of them is resident, because the
//! entries are scattered over the whole table by their hash. With ~300-byte orders that
//! waste is most of the engine's memory (measured: 621 k held orders in a 1 M-bucket table
//! of 512-byte buckets, ≈ 0.5 GiB), and each growth copies every order while the processor
//! waits. Here the orders sit densely in fixed-size chunks that are never moved (a new
//! chunk is added when all are full, freed slots are reused first), and the hash table
//! holds only `OrderId → slot` (20-byte entries): a growth copies 20 bytes per order, and
//! the empty buckets cost 20 bytes instead of 512.
//!
//! Iteration order is the slot order, which depends on the history of inserts and removals
//! only (no hashing), so it is deterministic; callers that need an order sort anyway.
//!
//! Chunks are shared copy-on-write ([`OrderStore::share`]): a snapshot takes the chunk list
//! in microseconds on the processor thread and can encode it on another one, while the
//! processor's next write to a chunk the snapshot still holds copies that one chunk (1.2 MB,
//! a fraction of a millisecond) first. So taking a snapshot does not copy every order.

use std::sync::Arc;

use ahash::AHashMap;

use crate::ids::OrderId;
use crate::order::Order;

/// Orders per chunk: 4,096 × ~300 B ≈ 1.2 MB, so a new chunk is a small, rare allocation.
const CHUNK: usize = 4096;

type Chunk = Vec<Option<Order>>;

/// Every order the engine holds, by id. See the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct OrderStore {
    index: AHashMap<OrderId, u32>,
    /// Fixed-capacity chunks (`CHUNK` slots each; never reallocated). `None` is a free slot.
    /// Shared with snapshots in progress; see [`OrderStore::chunk_mut`].
    chunks: Vec<Arc<Chunk>>,
    /// Free slots, reused last-freed first.
    free: Vec<u32>,
    /// Slots ever filled: the chunks before `pushed / CHUNK` are full.
    pushed: usize,
}

impl OrderStore {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Makes room for `more` further orders without a rehash of the index or a chunk
    /// allocation on the way.
    pub fn reserve(&mut self, more: usize) {
        self.index.reserve(more);
        let slots = self.index.len() + more;
        while self.chunks.len() * CHUNK < slots {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
    }

    pub fn contains_key(&self, id: &OrderId) -> bool {
        self.index.contains_key(id)
    }

    pub fn get(&self, id: &OrderId) -> Option<&Order> {
        let slot = *self.index.get(id)?;
        self.slot(slot).as_ref()
    }

    pub fn get_mut(&mut self, id: &OrderId) -> Option<&mut Order> {
        let slot = *self.index.get(id)?;
        self.slot_mut(slot).as_mut()
    }

    /// Stores `order` under `id`; an order already held under `id` is replaced and returned.
    pub fn insert(&mut self, id: OrderId, order: Order) -> Option<Order> {
        if let Some(&slot) = self.index.get(&id) {
            return self.slot_mut(slot).replace(order);
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                *self.slot_mut(slot) = Some(order);
                slot
            }
            None => self.push(order),
        };
        self.index.insert(id, slot);
        None
    }

    pub fn remove(&mut self, id: &OrderId) -> Option<Order> {
        let slot = self.index.remove(id)?;
        let order = self.slot_mut(slot).take();
        self.free.push(slot);
        order
    }

    /// Every held order, in slot order.
    pub fn values(&self) -> impl Iterator<Item = &Order> {
        held(&self.chunks)
    }

    /// The orders as they are now, in O(chunks): later writes to the store do not show in
    /// the returned view (they copy the chunk they touch while the view holds it).
    pub fn share(&self) -> SharedOrders {
        SharedOrders {
            chunks: self.chunks.clone(),
            len: self.len(),
        }
    }

    /// Fills the next never-used slot, adding a chunk when the last one is full.
    fn push(&mut self, order: Order) -> u32 {
        let slot = u32::try_from(self.pushed).expect("order store exceeds u32 slots");
        let c = self.pushed / CHUNK;
        if c == self.chunks.len() {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        self.chunk_mut(c).push(Some(order));
        self.pushed += 1;
        slot
    }

    fn slot(&self, slot: u32) -> &Option<Order> {
        let s = slot as usize;
        &self.chunks[s / CHUNK][s % CHUNK]
    }

    fn slot_mut(&mut self, slot: u32) -> &mut Option<Order> {
        let s = slot as usize;
        &mut self.chunk_mut(s / CHUNK)[s % CHUNK]
    }

    /// Chunk `c` for writing: if a snapshot still shares it, the store takes a copy first
    /// (with the full capacity, so the copy is never reallocated by a later push either).
    fn chunk_mut(&mut self, c: usize) -> &mut Chunk {
        let chunk = &mut self.chunks[c];
        if Arc::get_mut(chunk).is_none() {
            let mut copy = Vec::with_capacity(CHUNK);
            copy.extend(chunk.iter().cloned());
            *chunk = Arc::new(copy);
        }
        Arc::get_mut(chunk).expect("a chunk just copied is not shared")
    }
}

/// The orders in `chunks`, in slot order.
fn held(chunks: &[Arc<Chunk>]) -> impl Iterator<Item = &Order> {
    chunks
        .iter()
        .flat_map(|c| c.iter())
        .filter_map(Option::as_ref)
}

/// A point-in-time view of an [`OrderStore`] (see [`OrderStore::share`]); `Send`, so a
/// snapshot can be encoded on another thread.
#[derive(Clone, Debug)]
pub(crate) struct SharedOrders {
    chunks: Vec<Arc<Chunk>>,
    len: usize,
}

impl SharedOrders {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every order of the view, in slot order.
    pub fn values(&self) -> impl Iterator<Item = &Order> {
        held(&self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::ids::{AccountId, SymbolId};
    use crate::num::Qty;
    use crate::order::{OrderStatus, OrderType, Side, TimeInForce};

    fn order(id: u128, version: u32) -> Order {
        Order {
            order_id: OrderId(id),
            client_order_id: None,
            account: AccountId::new("a").unwrap(),
            symbol: SymbolId(0),
            side: Side::Buy,
            order_type: OrderType::Market,
            time_in_force: TimeInForce::Ioc,
            post_only: false,
            quantity: Qty(1),
            price: None,
            status: OrderStatus::Accepted,
            filled_quantity: Qty(0),
            filled_notional: 0,
            created_at: 0,
            updated_at: 0,
            version,
            idempotency_key: None,
            reject_reason: None,
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, u32),
        Remove(u8),
        Update(u8),
        Share,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), any::<u32>()).prop_map(|(i, v)| Op::Insert(i, v)),
            any::<u8>().prop_map(Op::Remove),
            any::<u8>().prop_map(Op::Update),
            Just(Op::Share),
        ]
    }

    proptest! {
        /// The store answers every query exactly as a map would, whatever the sequence of
        /// inserts, replacements, updates and removals (which exercise slot reuse); and a
        /// view shared at any point keeps showing the map as it was then, whatever is
        /// written afterwards.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec(op(), 0..600)) {
            let mut store = OrderStore::default();
            let mut model: BTreeMap<u128, Order> = BTreeMap::new();
            let mut views: Vec<(SharedOrders, BTreeMap<u128, Order>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(i, v) => {
                        let id = u128::from(i);
                        prop_assert_eq!(
                            store.insert(OrderId(id), order(id, v)),
                            model.insert(id, order(id, v))
                        );
                    }
                    Op::Remove(i) => {
                        let id = u128::from(i);
                        prop_assert_eq!(store.remove(&OrderId(id)), model.remove(&id));
                    }
                    Op::Update(i) => {
                        let id = u128::from(i);
                        if let Some(o) = store.get_mut(&OrderId(id)) {
                            o.version += 1;
                        }
                        if let Some(o) = model.get_mut(&id) {
                            o.version += 1;
                        }
                    }
                    Op::Share => views.push((store.share(), model.clone())),
                }
                prop_assert_eq!(store.len(), model.len());
            }
            for i in 0..=255u128 {
                prop_assert_eq!(store.get(&OrderId(i)), model.get(&i));
                prop_assert_eq!(store.contains_key(&OrderId(i)), model.contains_key(&i));
            }
            let mut held: Vec<&Order> = store.values().collect();
            held.sort_by_key(|o| o.order_id);
            prop_assert_eq!(held, model.values().collect::<Vec<_>>());
            for (view, then) in &views {
                let mut held: Vec<&Order> = view.values().collect();
                held.sort_by_key(|o| o.order_id);
                prop_assert_eq!(view.len(), then.len());
                prop_assert_eq!(held, then.values().collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn fills_chunks_densely_and_reuses_freed_slots_before_growing() {
        let mut store = OrderStore::default();
        let n = CHUNK as u128 + 10;
        for id in 0..n {
            store.insert(OrderId(id), order(id, 0));
        }
        assert_eq!(store.chunks.len(), 2);
        // A view held while the store is written: the chunks it shares are copied, at full
        // capacity, and the view still sees the first 100 orders.
        let view = store.share();
        for id in 0..100 {
            store.remove(&OrderId(id));
        }
        for id in n..n + 100 {
            store.insert(OrderId(id), order(id, 0));
        }
        assert_eq!(store.chunks.len(), 2, "freed slots were not reused");
        assert_eq!(store.chunks[1].len(), 10);
        assert_eq!(store.len(), CHUNK + 10);
        assert_eq!(store.values().count(), CHUNK + 10);
        assert!(
            store.chunks.iter().all(|c| c.capacity() == CHUNK),
            "a chunk moved"
        );
        assert_eq!(view.values().filter(|o| o.order_id.0 < 100).count(), 100);
        assert_eq!(view.values().count(), CHUNK + 10);
    }
}

//! The order slab: every resting order lives in one preallocated `Vec`, addressed by a `u32`
//! slot, with freed slots chained into an intrusive free list.
//!
//! Slots instead of boxes keep orders contiguous and make the per-level FIFO (see
//! [`super::level`]) a pair of `u32` links, so placing and removing an order never allocates
//! once the slab has grown to the book's working size.

use crate::ids::OrderId;
use crate::num::{Price, Qty};
use crate::order::Side;

/// "No slot": the end of a list.
pub(super) const NIL: u32 = u32::MAX;

/// One resting order and its links in its level's FIFO.
#[derive(Clone, Copy, Debug)]
pub(super) struct Node {
    pub order_id: OrderId,
    pub price: Price,
    pub leaves: Qty,
    pub prev: u32,
    pub next: u32,
    pub side: Side,
    pub post_only: bool,
    /// Index into the book's [`super::accounts::Accounts`].
    pub acct: u32,
}

/// Slot storage with an intrusive free list (a freed node's `next` chains to the next free slot).
#[derive(Debug)]
pub(super) struct Slab {
    nodes: Vec<Node>,
    free_head: u32,
    live: usize,
}

impl Slab {
    pub fn with_capacity(capacity: usize) -> Self {
        Slab {
            nodes: Vec::with_capacity(capacity),
            free_head: NIL,
            live: 0,
        }
    }

    /// Stores `node`, reusing a freed slot when there is one.
    pub fn insert(&mut self, node: Node) -> u32 {
        self.live += 1;
        if self.free_head != NIL {
            let idx = self.free_head;
            let slot = &mut self.nodes[idx as usize];
            self.free_head = slot.next;
            *slot = node;
            idx
        } else {
            let idx = u32::try_from(self.nodes.len()).expect("order slab exceeds u32 slots");
            assert!(idx != NIL, "order slab exceeds u32 slots");
            self.nodes.push(node);
            idx
        }
    }

    /// Frees slot `idx` (which must be live) and returns the node it held.
    pub fn remove(&mut self, idx: u32) -> Node {
        let slot = &mut self.nodes[idx as usize];
        let node = *slot;
        slot.next = self.free_head;
        slot.leaves = Qty::ZERO;
        self.free_head = idx;
        self.live -= 1;
        node
    }

    #[inline]
    pub fn get(&self, idx: u32) -> &Node {
        &self.nodes[idx as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, idx: u32) -> &mut Node {
        &mut self.nodes[idx as usize]
    }

    pub fn len(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
pub(super) fn test_node(id: u128, price: i64, leaves: i64) -> Node {
    Node {
        order_id: OrderId(id),
        price: Price(price),
        leaves: Qty(leaves),
        prev: NIL,
        next: NIL,
        side: Side::Buy,
        post_only: false,
        acct: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_slots_are_reused_last_in_first_out() {
        let mut s = Slab::with_capacity(4);
        let a = s.insert(test_node(1, 10, 1));
        let b = s.insert(test_node(2, 10, 2));
        let c = s.insert(test_node(3, 10, 3));
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(s.remove(b).order_id, OrderId(2));
        assert_eq!(s.remove(a).order_id, OrderId(1));
        assert_eq!(s.len(), 1);
        assert_eq!(s.insert(test_node(4, 10, 4)), a);
        assert_eq!(s.insert(test_node(5, 10, 5)), b);
        assert_eq!(s.insert(test_node(6, 10, 6)), 3);
        assert_eq!(s.get(b).order_id, OrderId(5));
        assert_eq!(s.get(c).leaves, Qty(3));
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn steady_state_does_not_grow() {
        let mut s = Slab::with_capacity(8);
        let cap = s.nodes.capacity();
        for round in 0..1000u128 {
            let idx: Vec<u32> = (0..8)
                .map(|i| s.insert(test_node(round * 8 + i, 1, 1)))
                .collect();
            for i in idx {
                s.remove(i);
            }
        }
        assert_eq!(s.nodes.capacity(), cap);
        assert_eq!(s.len(), 0);
    }
}

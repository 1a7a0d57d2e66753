//! One price level: an intrusive FIFO of slab slots plus its aggregate quantity.
//!
//! The queue is threaded through the nodes' `prev`/`next` slots, so time priority costs no
//! allocation, appending is O(1), and removing any order (cancel, amend) is O(1) once its slot
//! is known.

use super::slab::{NIL, Slab};
use crate::num::{Price, Qty};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Level {
    pub price: Price,
    /// Sum of the leaves of the orders in the queue.
    pub qty: Qty,
    pub orders: u32,
    pub head: u32,
    pub tail: u32,
}

impl Level {
    pub fn new(price: Price) -> Self {
        Level {
            price,
            qty: Qty::ZERO,
            orders: 0,
            head: NIL,
            tail: NIL,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.head == NIL
    }

    /// Appends slot `idx` at the back (lowest priority).
    pub fn push_back(&mut self, slab: &mut Slab, idx: u32) {
        let tail = self.tail;
        let node = slab.get_mut(idx);
        node.prev = tail;
        node.next = NIL;
        self.qty += node.leaves;
        if tail == NIL {
            self.head = idx;
        } else {
            slab.get_mut(tail).next = idx;
        }
        self.tail = idx;
        self.orders += 1;
    }

    /// Takes slot `idx` out of the queue (the slot itself stays allocated).
    pub fn unlink(&mut self, slab: &mut Slab, idx: u32) {
        let node = slab.get(idx);
        let (prev, next, leaves) = (node.prev, node.next, node.leaves);
        if prev == NIL {
            self.head = next;
        } else {
            slab.get_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            slab.get_mut(next).prev = prev;
        }
        self.qty -= leaves;
        self.orders -= 1;
    }

    /// Slots from head to tail.
    pub fn iter<'a>(&self, slab: &'a Slab) -> LevelIter<'a> {
        LevelIter {
            slab,
            cur: self.head,
        }
    }
}

/// Walks a level's queue in time priority.
pub(super) struct LevelIter<'a> {
    slab: &'a Slab,
    cur: u32,
}

impl<'a> Iterator for LevelIter<'a> {
    type Item = &'a super::slab::Node;
    fn next(&mut self) -> Option<Self::Item> {
        if self.cur == NIL {
            return None;
        }
        let node = self.slab.get(self.cur);
        self.cur = node.next;
        Some(node)
    }
}

#[cfg(test)]
mod tests {
    use super::super::slab::test_node;
    use super::*;
    use crate::ids::OrderId;

    fn ids(level: &Level, slab: &Slab) -> Vec<u128> {
        level.iter(slab).map(|n| n.order_id.0).collect()
    }

    #[test]
    fn fifo_order_and_aggregates() {
        let mut slab = Slab::with_capacity(4);
        let mut lvl = Level::new(Price(100));
        assert!(lvl.is_empty());
        let s: Vec<u32> = (1..=4)
            .map(|i| {
                let idx = slab.insert(test_node(i, 100, i as i64));
                lvl.push_back(&mut slab, idx);
                idx
            })
            .collect();
        assert_eq!(ids(&lvl, &slab), vec![1, 2, 3, 4]);
        assert_eq!((lvl.qty, lvl.orders), (Qty(10), 4));

        lvl.unlink(&mut slab, s[1]); // middle
        assert_eq!(ids(&lvl, &slab), vec![1, 3, 4]);
        lvl.unlink(&mut slab, s[0]); // head
        assert_eq!(ids(&lvl, &slab), vec![3, 4]);
        lvl.unlink(&mut slab, s[3]); // tail
        assert_eq!(ids(&lvl, &slab), vec![3]);
        assert_eq!((lvl.qty, lvl.orders), (Qty(3), 1));
        assert_eq!((lvl.head, lvl.tail), (s[2], s[2]));

        lvl.push_back(&mut slab, s[0]);
        assert_eq!(ids(&lvl, &slab), vec![3, 1]);
        lvl.unlink(&mut slab, s[2]);
        lvl.unlink(&mut slab, s[0]);
        assert!(lvl.is_empty());
        assert_eq!((lvl.qty, lvl.orders, lvl.tail), (Qty(0), 0, NIL));
        assert_eq!(slab.get(s[0]).order_id, OrderId(1));
    }
}

//! A book's resting orders copied out in priority order, for a snapshot encoded elsewhere.
//!
//! A snapshot must see the book as it is between two commands, but encoding it on the
//! processor thread would stop matching for as long as the encode takes. The copy made here
//! is the part that has to happen in that gap: one pass over the levels, 48 bytes per resting
//! order (the slab nodes as they are) plus the book's account table, with no per-order
//! allocation. Turning it into [`RestingOrder`]s and bytes is left to the snapshot writer.

use crate::ids::AccountId;

use super::slab::Node;
use super::{OrderBook, RestingOrder};

/// The resting orders of one book at one moment, best price first, FIFO within a level.
#[derive(Clone, Debug)]
pub struct RestingImage {
    nodes: Vec<Node>,
    accounts: Vec<AccountId>,
}

impl RestingImage {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The same sequence [`OrderBook::resting_orders`] gave when the image was taken.
    pub fn iter(&self) -> impl Iterator<Item = RestingOrder> + '_ {
        self.nodes.iter().map(|n| RestingOrder {
            order_id: n.order_id,
            account: self.accounts[n.acct as usize],
            side: n.side,
            price: n.price,
            leaves: n.leaves,
            post_only: n.post_only,
        })
    }
}

impl OrderBook {
    /// Copies the resting orders out (see the module docs).
    pub fn resting_image(&self) -> RestingImage {
        let mut nodes = Vec::with_capacity(self.len());
        let slab = &self.slab;
        nodes.extend(
            self.bids
                .iter_best_first()
                .chain(self.asks.iter_best_first())
                .flat_map(|lvl| lvl.iter(slab))
                .copied(),
        );
        RestingImage {
            nodes,
            accounts: self.accounts.ids().to_vec(),
        }
    }
}

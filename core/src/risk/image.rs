//! Moving the pre-trade risk of some accounts between [`RiskEngine`] instances.
//!
//! In cluster mode (docs/scale-out.md) one node at a time checks an account's orders (R1).
//! When it gains an account's partition, its ring's R1 instance has not followed those
//! accounts; the node's replica engine has (it applied every command of the log), so the
//! processor exports their state from the replica's instance and the risk stage imports it —
//! balances, positions, every open order's reservation and `clientOrderId` — before the
//! first of their requests is admitted.

use crate::ids::{AccountId, ClientOrderId, OrderId};
use crate::num::Price;

use super::{AccountState, OrderRisk, RiskEngine};

/// Everything R1 knows about a set of accounts. Built by [`RiskEngine::export_accounts`].
#[derive(Clone, Debug)]
pub struct RiskImage {
    accounts: Vec<AccountState>,
    /// Open orders of those accounts (`OrderRisk::account` is re-indexed on import).
    orders: Vec<(OrderId, AccountId, OrderRisk, Option<ClientOrderId>)>,
    last_price: Vec<Price>,
    global_halt: bool,
}

impl RiskImage {
    /// Accounts in the image.
    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }

    /// Open orders in the image.
    pub fn open_orders(&self) -> usize {
        self.orders.len()
    }
}

impl RiskEngine {
    /// The state of every account `keep` selects, with their open orders.
    pub fn export_accounts(&self, keep: &dyn Fn(&AccountId) -> bool) -> RiskImage {
        let accounts: Vec<AccountState> = self
            .accounts
            .iter()
            .filter(|a| keep(&a.id))
            .cloned()
            .collect();
        let orders = self
            .orders
            .iter()
            .filter_map(|(id, o)| {
                let account = self.accounts[o.account as usize].id;
                keep(&account).then(|| (*id, account, *o, self.client_of.get(id).copied()))
            })
            .collect();
        RiskImage {
            accounts,
            orders,
            last_price: self.last_price.clone(),
            global_halt: self.global_halt,
        }
    }

    /// Replaces what this instance knows of the image's accounts (and their open orders) by
    /// the image; other accounts are left alone. Marks and the global halt are taken from the
    /// image, which is at least as recent.
    pub fn import_accounts(&mut self, image: RiskImage) {
        let mut replaced = ahash::AHashSet::new();
        for a in image.accounts {
            let i = self.account_index(&a.id, a.equity);
            replaced.insert(i as u32);
            self.accounts[i] = a;
        }
        let stale: Vec<OrderId> = self
            .orders
            .iter()
            .filter(|(_, o)| replaced.contains(&o.account))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            let Some(o) = self.orders.remove(&id) else {
                continue;
            };
            if let Some(c) = self.client_of.remove(&id) {
                self.client_ids
                    .remove(&(self.accounts[o.account as usize].id, c));
            }
        }
        for (id, account, mut o, client) in image.orders {
            let Some(&i) = self.index.get(&account) else {
                continue;
            };
            o.account = i;
            self.orders.insert(id, o);
            if let Some(c) = client {
                self.client_ids.insert((account, c), id);
                self.client_of.insert(id, c);
            }
        }
        if image.last_price.len() == self.last_price.len() {
            self.last_price = image.last_price;
        }
        self.global_halt = image.global_halt;
    }
}

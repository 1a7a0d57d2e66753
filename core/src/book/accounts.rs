//! The accounts that have rested orders in one book, each named by a `u32`.
//!
//! A resting order needs its account only to be compared (self-trade prevention) and to be
//! reported (fills, cancels); an [`AccountId`] is 66 bytes, so every slab node carried more
//! account than order. Nodes hold this table's 4-byte index instead (issue 11: memory per
//! open order). The table only grows, and by accounts, not by orders: there are few.

use ahash::AHashMap;

use crate::ids::AccountId;

/// The index of an account not in the table: no resting order has it.
pub(super) const NO_ACCOUNT: u32 = u32::MAX;

#[derive(Debug, Default)]
pub(super) struct Accounts {
    ids: Vec<AccountId>,
    index: AHashMap<AccountId, u32>,
}

impl Accounts {
    /// The account's index, adding it if new.
    pub fn intern(&mut self, account: &AccountId) -> u32 {
        if let Some(&i) = self.index.get(account) {
            return i;
        }
        let i = u32::try_from(self.ids.len())
            .ok()
            .filter(|&i| i != NO_ACCOUNT)
            .expect("more than 2^32 - 1 accounts in one book");
        self.ids.push(*account);
        self.index.insert(*account, i);
        i
    }

    /// The account's index, or [`NO_ACCOUNT`] when none of its orders ever rested here.
    pub fn find(&self, account: &AccountId) -> u32 {
        self.index.get(account).copied().unwrap_or(NO_ACCOUNT)
    }

    /// Every interned account, by index.
    pub fn ids(&self) -> &[AccountId] {
        &self.ids
    }

    /// The account at `i`, an index [`Accounts::intern`] returned.
    pub fn get(&self, i: u32) -> AccountId {
        self.ids[i as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_unknown_accounts_match_no_node() {
        let a = AccountId::new("a").unwrap();
        let b = AccountId::new("b").unwrap();
        let mut t = Accounts::default();
        assert_eq!(t.find(&a), NO_ACCOUNT);
        let ia = t.intern(&a);
        let ib = t.intern(&b);
        assert_ne!(ia, ib);
        assert_eq!(t.intern(&a), ia);
        assert_eq!(t.find(&b), ib);
        assert_eq!(t.get(ia), a);
        assert_eq!(t.get(ib), b);
    }
}

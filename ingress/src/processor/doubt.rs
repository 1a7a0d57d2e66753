//! In-doubt places in cluster mode: an append that timed out with an unknown outcome.
//!
//! A single node never applies such a batch (its processor only gets acknowledged batches)
//! and voids it in the log, so recovery skips it. A replica cannot do that: it applies what it
//! reads, and the batch may be in the log. So in cluster mode the log decides (docs/
//! scale-out.md, "In-doubt appends"): the leader answers the client `503` but keeps the
//! idempotency key pending and the margin reserved, and registers the places here; then its
//! own replica, reading the partition in order,
//!
//! - reads the place → it was written and executes everywhere: the key keeps the place's
//!   answer (the replica stores every logged keyed place's answer), the reservation stays;
//! - reads the void first → it was not written (the void follows the purged batch in the same
//!   partition): the key is released and the reservation returned, as on a single node.
//!
//! A place the replica read before its registration arrived (the outcome report can come
//! seconds after the record) was written; the caller checks that from what it applied
//! recently.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use oms_core::OrderId;
use oms_core::command::Command;

/// At most this many places wait for their record or void (older ones are dropped with a
/// warning: their keys then expire in the shared store like a dead node's claims).
const MAX_IN_DOUBT: usize = 100_000;

/// Places whose append outcome is unknown, waiting for the log to tell.
#[derive(Default)]
pub struct Doubts {
    places: AHashMap<OrderId, Command>,
    order: VecDeque<(OrderId, Instant)>,
}

impl Doubts {
    /// Registers a place the leader answered 503 with an unknown outcome.
    pub fn register(&mut self, cmd: Command) {
        let Command::Place(p) = &cmd else { return };
        let id = p.order_id;
        if self.places.insert(id, cmd).is_none() {
            self.order.push_back((id, Instant::now()));
        }
        while self.places.len() > MAX_IN_DOUBT {
            let Some((old, _)) = self.order.pop_front() else {
                break;
            };
            if self.places.remove(&old).is_some() {
                tracing::warn!(order_id = %old, "in-doubt place dropped unresolved (too many)");
            }
        }
    }

    /// The replica applied a place: if it was in doubt, it was written (nothing to undo).
    pub fn written(&mut self, id: OrderId) -> bool {
        self.places.remove(&id).is_some()
    }

    /// The replica read a void: the place it voids, if in doubt and not read before, was not
    /// written — the caller undoes it (releases the key, returns the reservation).
    pub fn voided(&mut self, id: OrderId) -> Option<Command> {
        self.places.remove(&id)
    }

    /// Forgets entries resolved long ago from the age queue (the map holds only open ones).
    pub fn trim(&mut self, older_than: Duration) {
        while let Some(&(id, at)) = self.order.front() {
            if self.places.contains_key(&id) && at.elapsed() < older_than {
                break;
            }
            self.order.pop_front();
            if self.places.remove(&id).is_some() {
                tracing::warn!(order_id = %id, "in-doubt place unresolved after {older_than:?}; dropped");
            }
        }
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Doubts;
    use oms_core::command::{Command, PlaceOrder, RiskDecision};
    use oms_core::{AccountId, OrderId, OrderRequest, validate};

    fn place(id: u128) -> Command {
        let table = oms_core::InstrumentTable::demo();
        let order = validate(
            &table,
            &OrderRequest {
                symbol: "BTC/USD",
                side: "BUY",
                quantity: "0.1",
                price: Some("45000"),
                ..Default::default()
            },
        )
        .expect("valid");
        Command::Place(PlaceOrder {
            order_id: OrderId(id),
            account: AccountId::new("a").unwrap(),
            order,
            ts: 1,
            idempotency_key: None,
            fingerprint: 1,
            correlation_id: None,
            risk: RiskDecision::Accepted {
                reserved: oms_core::Money(1),
            },
        })
    }

    #[test]
    fn a_place_read_back_is_written_and_its_void_undoes_nothing() {
        let mut d = Doubts::default();
        d.register(place(1));
        assert!(d.written(OrderId(1)));
        assert!(
            d.voided(OrderId(1)).is_none(),
            "a written place is never undone"
        );
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_void_read_first_hands_the_place_back_for_undo() {
        let mut d = Doubts::default();
        d.register(place(2));
        d.register(place(3));
        let undone = d.voided(OrderId(2));
        assert!(matches!(undone, Some(Command::Place(p)) if p.order_id == OrderId(2)));
        assert!(!d.written(OrderId(2)), "resolved once");
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn only_places_are_tracked_and_old_entries_are_trimmed() {
        let mut d = Doubts::default();
        d.register(place(4));
        d.trim(std::time::Duration::from_secs(3600));
        assert_eq!(d.len(), 1, "young entries stay");
        d.trim(std::time::Duration::ZERO);
        assert_eq!(d.len(), 0, "entries older than the bound go");
    }
}

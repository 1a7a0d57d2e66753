//! Stage 1, validate: pure checks of a place request against the instrument table (symbol,
//! side, type, time in force, tick/lot multiples, quantity bounds, notional, price band).
//!
//! It is first because it is pure and cheap: a malformed order is answered 400 here and never
//! reaches the idempotency index, the risk book or the log.

use std::sync::Arc;

use oms_core::command::{PlaceOrder, RiskDecision};
use oms_core::{InstrumentTable, OrderId, validate};

use super::{BatchTimer, fail};
use crate::metrics::{Metrics, Stage};
use crate::pipeline::slot::{Slot, Work};

/// Stage 1: pure validation against the instrument table.
pub fn validate_stage(
    table: Arc<InstrumentTable>,
    metrics: Arc<Metrics>,
) -> impl FnMut(&Slot, i64, bool) + Send + 'static {
    let mut timer = BatchTimer { start: None };
    move |slot, _seq, eob| {
        // SAFETY: this stage is the slot's only owner now (see slot.rs).
        let d = unsafe { slot.data() };
        if d.ticket.is_some()
            && let Work::Place {
                raw,
                key,
                fingerprint,
                cmd,
            } = &mut d.work
        {
            match validate(&table, &raw.request()) {
                Ok(order) => {
                    *cmd = Some(PlaceOrder {
                        order_id: OrderId(0),
                        account: d.account,
                        order,
                        ts: 0,
                        idempotency_key: Some(*key),
                        fingerprint: *fingerprint,
                        correlation_id: d.correlation_id,
                        risk: RiskDecision::Unchecked,
                    })
                }
                Err(e) => fail(d, e.into()),
            }
        }
        timer.tick(eob, &metrics, Stage::Validate);
    }
}

//! The four ring stages, one file each: [`validate`] ▶ idempotency (`../idempotency.rs`) ▶
//! [`risk`] ▶ [`publish`].
//!
//! Each stage owns its state (no locks): the instrument table, the idempotency index, the R1
//! risk book, the order log. A stage that can answer a request on its own (validation error,
//! idempotent replay, key in use) replies and takes the slot's ticket, so later stages skip
//! it. Only the publish stage answers accepted orders, and only after the log made the
//! command durable. This module holds what the stages share.

pub mod acknowledge;
pub mod publish;
pub mod risk;
pub mod validate;

use std::time::Instant;

use oms_core::ports::{Completion, IdemKey};

pub use self::publish::{PublishConfig, PublishStage};
pub use self::risk::risk_stage;
pub use self::validate::validate_stage;
use super::slot::{Reply, SlotData};
use crate::metrics::{Metrics, Stage};
use oms_wire::ApiError;

/// Messages about idempotency keys from later stages: the publish stage sends `Done` and
/// `Release` to the completer (`pipeline::idempotency::Completer`), which stores the answer
/// and forwards `Stored` (or the `Release`) to the idempotency stage.
pub enum IdemMsg {
    Done(Completion),
    Release(IdemKey),
    /// The answer to `key` is in the answer store at `loc`.
    Stored {
        key: IdemKey,
        loc: oms_core::idempotency::AnswerLoc,
    },
}

/// Answers a request with an error and takes its ticket, so later stages skip the slot
/// (counted in `oms_rejections_total` once, at the edge that sends it).
fn fail(d: &mut SlotData, e: ApiError) {
    if let Some(t) = d.ticket.take() {
        t.reply(Reply::Error(e));
    }
}

/// Times whole batches of one stage.
struct BatchTimer {
    start: Option<Instant>,
}

impl BatchTimer {
    fn tick(&mut self, end_of_batch: bool, metrics: &Metrics, stage: Stage) {
        let start = *self.start.get_or_insert_with(Instant::now);
        if end_of_batch {
            metrics.stage(stage).observe(start.elapsed());
            self.start = None;
        }
    }
}

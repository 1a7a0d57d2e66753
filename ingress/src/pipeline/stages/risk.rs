//! Stage 3, risk (R1): per-account pre-trade checks that reserve margin. The decision is
//! recorded in the command, so the processor and a replay apply the same verdict.
//!
//! The risk book here learns what the processor settled (fills, cancels) through the
//! feedback channel, drained before each slot, and what the publish stage gave back for
//! commands that were never logged.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use oms_core::command::RiskDecision;
use oms_core::risk::RiskEngine;

use super::BatchTimer;
use crate::metrics::{Metrics, Stage};
use crate::pipeline::handoff::Feedback;
use crate::pipeline::slot::{Slot, Work};

/// Stage 3: pre-trade risk (R1). Reserves margin; the decision is recorded in the log.
pub fn risk_stage(
    mut risk: RiskEngine,
    feedback: Receiver<Vec<Feedback>>,
    metrics: Arc<Metrics>,
) -> impl FnMut(&Slot, i64, bool) + Send + 'static {
    let mut timer = BatchTimer { start: None };
    move |slot, _seq, eob| {
        while let Ok(batch) = feedback.try_recv() {
            for f in batch {
                f.apply(&mut risk);
            }
        }
        // SAFETY: this stage is the slot's only owner now (see slot.rs).
        let d = unsafe { slot.data() };
        if d.ticket.is_some() {
            match &mut d.work {
                Work::Place { cmd: Some(cmd), .. } => {
                    cmd.risk = match risk.check_place(&cmd.account, cmd.order_id, &cmd.order) {
                        Ok(reserved) => RiskDecision::Accepted { reserved },
                        Err(code) => {
                            // The 422 goes back as the stored order answer (not an error
                            // the edge counts), so a place's risk rejection counts here.
                            metrics.reject(code.as_str());
                            RiskDecision::Rejected(code)
                        }
                    };
                }
                Work::Amend { cmd, leaves } => {
                    cmd.risk =
                        match risk.check_amend(&cmd.account, cmd.order_id, *leaves, cmd.price) {
                            Ok(reserved) => RiskDecision::Accepted { reserved },
                            Err(code) => RiskDecision::Rejected(code),
                        };
                }
                Work::Halt(h) => risk.set_halt(&h.scope, h.halted),
                Work::Place { cmd: None, .. } | Work::Cancel(_) | Work::CancelAll(_) => {}
            }
        }
        timer.tick(eob, &metrics, Stage::Risk);
    }
}

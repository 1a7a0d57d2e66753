//! The acknowledger: the second half of the publish stage, on its own thread (`oms-ack`).
//!
//! It takes the submitted batches in log order, waits for each one's outcome (for a pipelined
//! log; a synchronous log's outcome arrives with the batch), and only then releases it: the
//! processor gets the commands first, then every client waiting on a place hears back. So
//! completions leave strictly in log order, while later batches are already on their way to
//! the log.
//!
//! A failed batch is answered 503 `LOG_UNAVAILABLE` and undone (idempotency key released,
//! risk reservation given back). If the log says it *may* hold the batch (`Timeout`), its
//! commands go back to the publish stage, which voids them before its next batch
//! (docs/kafka.md). Later batches in flight are decided on their own outcome: a Kafka failure
//! purges the producer, so they fail too unless they were already acknowledged by the broker,
//! in which case they are durable and are answered 201 — nothing acknowledged is lost, and
//! nothing answered 503 executes (the processor never sees it; a replay skips it once voided).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use oms_core::InstrumentTable;
use oms_core::command::Command;
use oms_core::ports::{AppendOutcomes, BatchId, Completion, IdemKey, LogError, StoredResponse};

use super::IdemMsg;
use super::publish::undo;
use crate::metrics::Metrics;
use crate::pipeline::handoff::{Durable, Feedback};
use crate::pipeline::slot::{Reply, Ticket};
use crate::telemetry::TraceParent;
use oms_wire::ApiError;

/// A command taken out of its slot, with the ticket of the request waiting for it.
pub struct Entry {
    pub cmd: Command,
    pub ticket: Option<Ticket>,
    /// Traced: the context of `span`, carried to the log record and the processor.
    pub trace: Option<TraceParent>,
    /// Traced: the log-append span (`oms.publish`), ended when the entry is dropped after
    /// its outcome is known.
    pub span: Option<tracing::Span>,
}

/// One batch handed to the log.
pub struct InFlight {
    pub id: BatchId,
    /// Known already (synchronous log, or a submit that failed outright).
    pub outcome: Option<Result<(), LogError>>,
    pub entries: Vec<Entry>,
    /// For a batch of voids: the commands they void (handed back if the voids fail).
    pub voids: Vec<Command>,
    pub submitted: Instant,
}

pub struct Acknowledger {
    pub outcomes: Option<Box<dyn AppendOutcomes>>,
    pub table: Arc<InstrumentTable>,
    pub metrics: Arc<Metrics>,
    pub idem_tx: Sender<IdemMsg>,
    /// See `PublishConfig::answered_to`.
    pub answered_tx: Option<Sender<IdemMsg>>,
    pub feedback_tx: Sender<Vec<Feedback>>,
    pub processor_tx: Sender<Vec<Durable>>,
    pub in_doubt_tx: Sender<Vec<Command>>,
    /// See `PublishConfig::doubts_to`.
    pub doubts_tx: Option<Sender<Vec<Command>>>,
    pub spare_tx: Sender<Vec<Entry>>,
}

impl Acknowledger {
    /// Runs until the publish stage is dropped.
    pub fn run(mut self, batches: Receiver<InFlight>) {
        for mut b in batches {
            let result = match b.outcome.take() {
                Some(r) => r,
                None => match self.outcomes.as_mut() {
                    Some(o) => o.wait(b.id),
                    None => Err(LogError::Unavailable(
                        "no outcome for a submitted batch".into(),
                    )),
                },
            };
            let n = if b.voids.is_empty() {
                b.entries.len()
            } else {
                b.voids.len()
            };
            self.metrics
                .log_append_latency
                .observe(b.submitted.elapsed());
            self.metrics.log_batch_size.observe_raw(n as u64);
            let health = self.metrics.log_health();
            match &result {
                Ok(()) => health.ok_at_ms.store(self.metrics.now_ms(), Relaxed),
                Err(_) => {
                    self.metrics.log_errors.inc();
                    health.failed_at_ms.store(self.metrics.now_ms(), Relaxed);
                }
            }
            if !b.voids.is_empty() {
                self.voided(result, b.voids);
                continue;
            }
            match result {
                Ok(()) => self.acknowledge(&mut b.entries),
                Err(e) => self.refuse(&mut b.entries, &e),
            }
            b.entries.clear();
            let _ = self.spare_tx.send(b.entries);
        }
    }

    fn voided(&self, result: Result<(), LogError>, originals: Vec<Command>) {
        match result {
            Ok(()) => tracing::warn!(
                voided = originals.len(),
                "voided commands whose append had an unknown outcome"
            ),
            Err(e) => {
                tracing::warn!(error = %e, pending = originals.len(), "could not void in-doubt commands yet");
                let _ = self.in_doubt_tx.send(originals);
            }
        }
    }

    /// Answers a failed batch 503 and undoes it; keeps it in doubt if it may be in the log.
    fn refuse(&self, entries: &mut [Entry], e: &LogError) {
        tracing::error!(error = %e, batch = entries.len(), "order log append failed; answering 503");
        // Cluster mode, unknown outcome: replicas apply whatever the log holds, so the places
        // keep their keys pending and their margin reserved until this node's replica reads
        // the place (written) or its void (not written). Registered before the voids are
        // queued, so the replica knows them before it can read a void.
        let doubts = match (&self.doubts_tx, e) {
            (Some(tx), LogError::Timeout(_)) => Some(tx),
            _ => None,
        };
        if let Some(tx) = doubts {
            let places: Vec<Command> = entries
                .iter()
                .map(|x| x.cmd)
                .filter(|c| matches!(c, Command::Place(_)))
                .collect();
            if !places.is_empty() {
                let _ = tx.send(places);
            }
        }
        if matches!(e, LogError::Timeout(_)) {
            // Unknown outcome: some of these may be in the log. Void them once the log answers
            // again, so a restart's replay never executes them.
            let doubt: Vec<Command> = entries
                .iter()
                .map(|x| x.cmd)
                .filter(|c| !matches!(c, Command::Halt(_)))
                .collect();
            if !doubt.is_empty() {
                let _ = self.in_doubt_tx.send(doubt);
            }
        }
        let msg = e.to_string();
        let mut feedback = Vec::new();
        for x in entries.iter_mut() {
            let in_doubt = doubts.is_some() && matches!(x.cmd, Command::Place(_));
            if !in_doubt {
                undo(&self.idem_tx, &x.cmd, &mut feedback);
            }
            if let Some(t) = x.ticket.take() {
                t.reply(Reply::Error(ApiError::log_unavailable(&msg)));
            }
        }
        if !feedback.is_empty() {
            let _ = self.feedback_tx.send(feedback);
        }
    }

    /// Replies to places, hands every durable command to the processor (which answers
    /// cancels, amends and halts after applying them).
    fn acknowledge(&self, entries: &mut [Entry]) {
        let mut durable = Vec::with_capacity(entries.len());
        let mut replies = Vec::with_capacity(entries.len());
        for x in entries.iter_mut() {
            let ticket = x.ticket.take();
            match &x.cmd {
                Command::Place(p) => {
                    let corr = p.correlation_id.as_ref().map_or("", |c| c.as_str());
                    let (status, body) = oms_wire::place_ack(&self.table, p, corr);
                    if let Some(key) = p.idempotency_key {
                        let done = Completion {
                            key: IdemKey {
                                account: p.account,
                                key,
                            },
                            fingerprint: p.fingerprint,
                            response: StoredResponse {
                                status,
                                body: body.clone(),
                            },
                        };
                        if let Some(tx) = &self.answered_tx {
                            let _ = tx.send(IdemMsg::Done(done.clone()));
                        }
                        let _ = self.idem_tx.send(IdemMsg::Done(done));
                    }
                    if status == 201 {
                        self.metrics.orders_accepted.inc();
                    }
                    if let Some(t) = ticket {
                        replies.push((
                            t,
                            Reply::Json {
                                status,
                                body,
                                replayed: false,
                            },
                        ));
                    }
                    durable.push(Durable {
                        cmd: x.cmd,
                        ticket: None,
                        trace: x.trace,
                    });
                }
                _ => durable.push(Durable {
                    cmd: x.cmd,
                    ticket,
                    trace: x.trace,
                }),
            }
        }
        // The processor gets the batch before any client hears back, and it applies queued
        // commands before it answers a read: a GET or DELETE sent after a 201 sees the order.
        let _ = self.processor_tx.send(durable);
        for (t, r) in replies {
            self.metrics.ack_latency.observe(t.started.elapsed());
            t.reply(r);
        }
    }
}

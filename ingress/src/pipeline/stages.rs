//! The four ring stages: validate ▶ idempotency ▶ risk ▶ publish.
//!
//! Each stage owns its state (no locks): the instrument table, the idempotency index, the R1
//! risk book, the order log. A stage that can answer a request on its own (validation error,
//! idempotent replay, key in use) replies and takes the slot's ticket, so later stages skip
//! it. Only the publish stage answers accepted orders, and only after the log made the whole
//! batch durable.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use oms_core::command::{Command, PlaceOrder, RiskDecision};
use oms_core::ports::{Completion, IdemKey, OrderLog, StoredResponse};
use oms_core::risk::RiskEngine;
use oms_core::{InstrumentTable, OrderId, OrderRequest, validate};
use oms_wire::ApiError;

use super::slot::{Reply, Slot, SlotData, Work};
use crate::metrics::Metrics;
use crate::processor::{Durable, Feedback};

/// Messages to the idempotency stage from later stages.
pub enum IdemMsg {
    Done(Completion),
    Release(IdemKey),
}

fn fail(d: &mut SlotData, metrics: &Metrics, e: ApiError) {
    metrics.reject(e.code);
    if let Some(t) = d.ticket.take() {
        t.reply(Reply::Error(e));
    }
}

/// Times whole batches of one stage.
struct BatchTimer {
    start: Option<Instant>,
}

impl BatchTimer {
    fn tick(&mut self, end_of_batch: bool, metrics: &Metrics, stage: usize) {
        let start = *self.start.get_or_insert_with(Instant::now);
        if end_of_batch {
            metrics.stage_latency[stage].observe(start.elapsed());
            self.start = None;
        }
    }
}

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
            let req = OrderRequest {
                symbol: raw.symbol.as_str(),
                side: raw.side.as_str(),
                order_type: raw.order_type.as_ref().map(|t| t.as_str()),
                time_in_force: raw.time_in_force.as_ref().map(|t| t.as_str()),
                post_only: raw.post_only,
                quantity: raw.quantity.as_str(),
                price: raw.price.as_ref().map(|t| t.as_str()),
                client_order_id: raw.client_order_id.as_ref().map(|t| t.as_str()),
            };
            match validate(&table, &req) {
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
                Err(e) => fail(d, &metrics, e.into()),
            }
        }
        timer.tick(eob, &metrics, 0);
    }
}

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
                Work::Place { cmd: None, .. } | Work::Cancel(_) => {}
            }
        }
        timer.tick(eob, &metrics, 2);
    }
}

/// Stage 4 settings.
pub struct PublishConfig {
    pub max_batch: usize,
    pub test_stall: Duration,
}

/// Stage 4: group commit to the order log, then acknowledge.
pub struct PublishStage {
    log: Box<dyn OrderLog>,
    table: Arc<InstrumentTable>,
    metrics: Arc<Metrics>,
    idem_tx: Sender<IdemMsg>,
    feedback_tx: Sender<Vec<Feedback>>,
    processor_tx: Sender<Vec<Durable>>,
    cfg: PublishConfig,
    pending: Vec<*const Slot>,
    cmds: Vec<Command>,
    /// Commands whose append timed out (they may be in the log): voided before the next batch.
    in_doubt: Vec<Command>,
    batch_start: Option<Instant>,
}

// SAFETY: the raw slot pointers in `pending` are only dereferenced on the stage's own thread,
// within the batch they were collected in (see `handle`); the log is `Send`.
unsafe impl Send for PublishStage {}

impl PublishStage {
    pub fn new(
        log: Box<dyn OrderLog>,
        table: Arc<InstrumentTable>,
        metrics: Arc<Metrics>,
        idem_tx: Sender<IdemMsg>,
        feedback_tx: Sender<Vec<Feedback>>,
        processor_tx: Sender<Vec<Durable>>,
        cfg: PublishConfig,
    ) -> Self {
        let cap = cfg.max_batch.max(1);
        PublishStage {
            log,
            table,
            metrics,
            idem_tx,
            feedback_tx,
            processor_tx,
            cfg,
            pending: Vec::with_capacity(cap),
            cmds: Vec::with_capacity(cap),
            in_doubt: Vec::new(),
            batch_start: None,
        }
    }

    /// The disruptor handler: collect the batch, flush at its end or when full.
    pub fn handle(&mut self, slot: &Slot, _seq: i64, end_of_batch: bool) {
        self.batch_start.get_or_insert_with(Instant::now);
        self.pending.push(slot as *const Slot);
        if end_of_batch || self.pending.len() >= self.cfg.max_batch {
            self.flush();
        }
        if end_of_batch && let Some(s) = self.batch_start.take() {
            self.metrics.stage_latency[3].observe(s.elapsed());
        }
    }

    fn flush(&mut self) {
        self.cmds.clear();
        let mut feedback = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        let mut live: Vec<&mut SlotData> = Vec::with_capacity(pending.len());
        for p in &pending {
            // SAFETY: `p` points into the ring and was handed to this stage in the current
            // batch; the disruptor does not publish this stage's cursor (so no producer can
            // reuse the slot) until `handle` returns for the batch's last event, and no other
            // stage touches it meanwhile. Each pointer is distinct, so the `&mut`s don't alias.
            let d = unsafe { (**p).data() };
            let Some(ticket) = d.ticket.as_ref() else {
                continue;
            };
            let Some(cmd) = command_of(d) else { continue };
            if !ticket.commit() {
                // The client already got a 503: this command must never execute.
                self.metrics.abandoned.fetch_add(1, Relaxed);
                self.undo(d, &cmd, &mut feedback);
                d.ticket = None;
                continue;
            }
            self.cmds.push(cmd);
            live.push(d);
        }
        if !self.cmds.is_empty() && !self.in_doubt.is_empty() {
            self.void_in_doubt();
        }
        if !self.cmds.is_empty() {
            if !self.cfg.test_stall.is_zero() {
                std::thread::sleep(self.cfg.test_stall);
            }
            let started = Instant::now();
            let result = self.log.append(&self.cmds);
            self.metrics.log_append_latency.observe(started.elapsed());
            self.metrics
                .log_batch_size
                .observe_raw(self.cmds.len() as u64);
            match result {
                Ok(()) => {
                    self.metrics
                        .log_ok_at_ms
                        .store(self.metrics.now_ms(), Relaxed);
                    self.acknowledge(&mut live)
                }
                Err(e) => {
                    self.metrics.log_errors.fetch_add(1, Relaxed);
                    self.metrics
                        .log_failed_at_ms
                        .store(self.metrics.now_ms(), Relaxed);
                    tracing::error!(error = %e, batch = self.cmds.len(), "order log append failed; answering 503");
                    if matches!(e, oms_core::ports::LogError::Timeout(_)) {
                        // Unknown outcome: some of these may be in the log. Void them once the
                        // log answers again, so a restart's replay never executes them.
                        self.in_doubt
                            .extend(self.cmds.iter().filter(|c| !matches!(c, Command::Halt(_))));
                    }
                    let msg = e.to_string();
                    for (d, cmd) in live.iter_mut().zip(self.cmds.iter()) {
                        self.undo(d, cmd, &mut feedback);
                        if let Some(t) = d.ticket.take() {
                            self.metrics.reject("LOG_UNAVAILABLE");
                            t.reply(Reply::Error(ApiError::log_unavailable(&msg)));
                        }
                    }
                }
            }
        }
        if !feedback.is_empty() {
            let _ = self.feedback_tx.send(feedback);
        }
        self.pending = pending;
        self.pending.clear();
    }

    /// Replies to places, hands every durable command to the processor (which answers
    /// cancels, amends and halts after applying them).
    fn acknowledge(&mut self, live: &mut [&mut SlotData]) {
        let mut durable = Vec::with_capacity(live.len());
        let mut replies = Vec::with_capacity(live.len());
        for (d, cmd) in live.iter_mut().zip(self.cmds.iter()) {
            let ticket = d.ticket.take();
            match cmd {
                Command::Place(p) => {
                    let corr = d.correlation_id.as_ref().map_or("", |c| c.as_str());
                    let (status, body) = oms_wire::place_ack(&self.table, p, corr);
                    if let Some(key) = p.idempotency_key {
                        let _ = self.idem_tx.send(IdemMsg::Done(Completion {
                            key: IdemKey {
                                account: p.account,
                                key,
                            },
                            fingerprint: p.fingerprint,
                            response: StoredResponse {
                                status,
                                body: body.clone(),
                            },
                        }));
                    }
                    if status == 201 {
                        self.metrics.orders_accepted.fetch_add(1, Relaxed);
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
                        cmd: *cmd,
                        ticket: None,
                    });
                }
                _ => durable.push(Durable { cmd: *cmd, ticket }),
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

    /// Appends a `Void` for every in-doubt command; keeps them for the next try on failure.
    fn void_in_doubt(&mut self) {
        let voids: Vec<Command> = self
            .in_doubt
            .iter()
            .filter_map(|c| oms_core::VoidOrder::of(c).map(Command::Void))
            .collect();
        match self.log.append(&voids) {
            Ok(()) => {
                tracing::warn!(
                    voided = voids.len(),
                    "voided commands whose append had an unknown outcome"
                );
                self.in_doubt.clear();
            }
            Err(e) => {
                tracing::warn!(error = %e, pending = voids.len(), "could not void in-doubt commands yet")
            }
        }
    }

    /// Gives back what earlier stages took for a command that will not be logged.
    fn undo(&self, d: &SlotData, cmd: &Command, feedback: &mut Vec<Feedback>) {
        if let Command::Place(p) = cmd {
            if let Some(key) = p.idempotency_key {
                let _ = self.idem_tx.send(IdemMsg::Release(IdemKey {
                    account: d.account,
                    key,
                }));
            }
            if matches!(p.risk, RiskDecision::Accepted { .. }) {
                feedback.push(Feedback::Done {
                    account: p.account,
                    order_id: p.order_id,
                });
            }
        }
    }
}

/// The command a slot will log, if it got that far.
fn command_of(d: &SlotData) -> Option<Command> {
    match &d.work {
        Work::Place { cmd: Some(p), .. } => Some(Command::Place(*p)),
        Work::Place { cmd: None, .. } => None,
        Work::Cancel(c) => Some(Command::Cancel(*c)),
        Work::Amend { cmd, .. } => Some(Command::Amend(*cmd)),
        Work::Halt(h) => Some(Command::Halt(*h)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU8;

    use oms_core::ports::{Checkpoint, LogError};
    use oms_core::{AccountId, IdempotencyKey, Qty, ValidatedOrder};

    use super::*;
    use crate::pipeline::slot::{QUEUED, Ticket};

    /// A log that fails its first append with an unknown outcome, then records everything.
    struct FlakyLog {
        fail_next: bool,
        appended: Arc<parking_lot::Mutex<Vec<Command>>>,
    }

    impl OrderLog for FlakyLog {
        fn append(&mut self, batch: &[Command]) -> Result<(), LogError> {
            if std::mem::take(&mut self.fail_next) {
                return Err(LogError::Timeout(Duration::from_millis(5)));
            }
            self.appended.lock().extend_from_slice(batch);
            Ok(())
        }
        fn replay(
            &mut self,
            _: &Checkpoint,
            _: &mut dyn FnMut(&Command),
        ) -> Result<Checkpoint, LogError> {
            Ok(Checkpoint::start())
        }
    }

    fn place_slot(
        table: &InstrumentTable,
        id: u128,
        ts: u64,
    ) -> (Slot, tokio::sync::oneshot::Receiver<Reply>) {
        let mut slot = Slot::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let account = AccountId::new("a").unwrap();
        let order = validate(
            table,
            &OrderRequest {
                symbol: "BTC/USD",
                side: "BUY",
                quantity: "0.1",
                price: Some("45000"),
                ..Default::default()
            },
        )
        .unwrap();
        let d = slot.data_mut();
        d.account = account;
        d.work = Work::Place {
            raw: Default::default(),
            key: IdempotencyKey::new("k").unwrap(),
            fingerprint: 1,
            cmd: Some(PlaceOrder {
                order_id: OrderId(id),
                account,
                order: ValidatedOrder {
                    quantity: Qty(1000),
                    ..order
                },
                ts,
                idempotency_key: Some(IdempotencyKey::new("k").unwrap()),
                fingerprint: 1,
                correlation_id: None,
                risk: RiskDecision::Accepted {
                    reserved: oms_core::Money(1),
                },
            }),
        };
        d.ticket = Some(Ticket {
            tx,
            state: Arc::new(AtomicU8::new(QUEUED)),
            started: Instant::now(),
        });
        (slot, rx)
    }

    #[test]
    fn a_timed_out_batch_is_voided_before_the_next_one() {
        let table = Arc::new(InstrumentTable::demo());
        let appended = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (idem_tx, _idem_rx) = crossbeam_channel::unbounded();
        let (fb_tx, _fb_rx) = crossbeam_channel::unbounded();
        let (proc_tx, proc_rx) = crossbeam_channel::unbounded();
        let mut stage = PublishStage::new(
            Box::new(FlakyLog {
                fail_next: true,
                appended: Arc::clone(&appended),
            }),
            Arc::clone(&table),
            Arc::new(Metrics::default()),
            idem_tx,
            fb_tx,
            proc_tx,
            PublishConfig {
                max_batch: 16,
                test_stall: Duration::ZERO,
            },
        );
        let (first, mut rx1) = place_slot(&table, 7, 100);
        stage.handle(&first, 0, true);
        let Ok(Reply::Error(e)) = rx1.try_recv() else {
            panic!("the timed-out place must get an error")
        };
        assert_eq!((e.status, e.code), (503, "LOG_UNAVAILABLE"));
        assert!(
            proc_rx.try_recv().is_err(),
            "a 503'd place must not reach the processor"
        );

        let (second, mut rx2) = place_slot(&table, 8, 200);
        stage.handle(&second, 1, true);
        assert!(matches!(
            rx2.try_recv(),
            Ok(Reply::Json { status: 201, .. })
        ));
        let log = appended.lock();
        assert!(
            matches!(log[0], Command::Void(v) if v.order_id == OrderId(7) && v.ts == 100),
            "{log:?}"
        );
        assert!(matches!(log[1], Command::Place(p) if p.order_id == OrderId(8)));
    }
}

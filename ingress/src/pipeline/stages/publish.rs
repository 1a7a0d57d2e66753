//! Stage 4, publish: hands each batch of accepted commands to the order log (group commit),
//! with several batches in flight when the log is pipelined (Kafka).
//!
//! This stage runs on the ring: it takes the commands out of the slots (so the ring can reuse
//! them at once), drops those whose HTTP task already gave up (503: never logged), voids what
//! an earlier failure left in doubt, and submits the batch. The outcome is learned on the
//! acknowledger thread ([`super::acknowledge`]), which releases completions strictly in log
//! order. With a synchronous log (the embedded journal) the append happens here and the
//! acknowledger only renders and answers, overlapping that work with the next append.
//!
//! Adaptive batching: a batch is whatever the ring holds when this stage runs (capped by
//! `max_batch`), so an idle pipeline sends batches of one (lowest latency). When
//! `max_in_flight` batches are already waiting for the log, this stage blocks, the ring fills,
//! and the next batch is as large as the load: under load fewer, larger appends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use oms_core::InstrumentTable;
use oms_core::command::{Command, RiskDecision};
use oms_core::ports::{BatchId, IdemKey, LogError, OrderLog};

use super::IdemMsg;
use super::acknowledge::{Acknowledger, Entry, InFlight};
use crate::metrics::{Metrics, Stage};
use crate::pipeline::handoff::{Durable, Feedback};
use crate::pipeline::slot::{Slot, SlotData, Work};
use crate::telemetry::{self, RecordTraces, Step, TraceParent};

/// Stage 4 settings.
pub struct PublishConfig {
    pub max_batch: usize,
    /// Batches that may wait for the log at once (pipelined logs; at least 2: one being
    /// decided, one being submitted).
    pub max_in_flight: usize,
    pub test_stall: Duration,
    /// Also told every answer before its client (the idempotency stage: a retry right after
    /// the answer must find it, before the completer stored it).
    pub answered_to: Option<Sender<IdemMsg>>,
    /// Cluster mode: places of a batch whose append outcome is unknown go here (the replica
    /// decides from the log) instead of being undone (see `processor::doubt`).
    pub doubts_to: Option<Sender<Vec<Command>>>,
    /// Traces on with a log that carries them (Kafka): the `traceparent` of each command of
    /// the batch being handed over, by index (`KafkaLog::trace_headers`).
    pub record_traces: Option<RecordTraces>,
}

/// Stage 4: group commit to the order log; answers come from the acknowledger thread.
pub struct PublishStage {
    log: Box<dyn OrderLog>,
    pipelined: bool,
    metrics: Arc<Metrics>,
    idem_tx: Sender<IdemMsg>,
    feedback_tx: Sender<Vec<Feedback>>,
    to_ack: Sender<InFlight>,
    /// Commands a failed append may have written: voided before the next batch.
    in_doubt_rx: Receiver<Vec<Command>>,
    /// Entry vectors handed back by the acknowledger, reused (no allocation per batch).
    spare_rx: Receiver<Vec<Entry>>,
    cfg: PublishConfig,
    entries: Vec<Entry>,
    cmds: Vec<Command>,
    in_doubt: Vec<Command>,
    batch_start: Option<Instant>,
}

impl PublishStage {
    /// Builds the stage and starts its acknowledger thread (`oms-ack`), which lives until the
    /// stage is dropped.
    pub fn new(
        mut log: Box<dyn OrderLog>,
        table: Arc<InstrumentTable>,
        metrics: Arc<Metrics>,
        idem_tx: Sender<IdemMsg>,
        feedback_tx: Sender<Vec<Feedback>>,
        processor_tx: Sender<Vec<Durable>>,
        cfg: PublishConfig,
    ) -> Self {
        let cap = cfg.max_batch.max(1);
        let outcomes = log.outcomes();
        let pipelined = outcomes.is_some();
        // In flight: the one the acknowledger waits for, those queued in the channel, and the
        // one this stage submitted and is trying to queue.
        let (to_ack, from_publish) = crossbeam_channel::bounded(cfg.max_in_flight.max(2) - 2);
        let (in_doubt_tx, in_doubt_rx) = crossbeam_channel::unbounded();
        let (spare_tx, spare_rx) = crossbeam_channel::unbounded();
        let ack = Acknowledger {
            outcomes,
            table,
            metrics: Arc::clone(&metrics),
            idem_tx: idem_tx.clone(),
            answered_tx: cfg.answered_to.clone(),
            feedback_tx: feedback_tx.clone(),
            processor_tx,
            in_doubt_tx,
            doubts_tx: cfg.doubts_to.clone(),
            spare_tx,
        };
        std::thread::Builder::new()
            .name("oms-ack".into())
            .spawn(move || ack.run(from_publish))
            .expect("spawn the acknowledger thread");
        PublishStage {
            log,
            pipelined,
            metrics,
            idem_tx,
            feedback_tx,
            to_ack,
            in_doubt_rx,
            spare_rx,
            cfg,
            entries: Vec::with_capacity(cap),
            cmds: Vec::with_capacity(cap),
            in_doubt: Vec::new(),
            batch_start: None,
        }
    }

    /// The disruptor handler: take the command out of the slot; submit at the end of the
    /// ring's batch or when `max_batch` is reached.
    pub fn handle(&mut self, slot: &Slot, _seq: i64, end_of_batch: bool) {
        self.batch_start.get_or_insert_with(Instant::now);
        // SAFETY: the disruptor hands this slot to this stage only, after every earlier stage
        // finished with it, and no producer rewrites it before this handler returns (see
        // slot.rs). Nothing is kept pointing into the slot after that.
        let d = unsafe { slot.data() };
        self.take(d);
        if end_of_batch || self.entries.len() >= self.cfg.max_batch {
            self.flush();
        }
        if end_of_batch && let Some(s) = self.batch_start.take() {
            self.metrics.stage(Stage::Publish).observe(s.elapsed());
        }
    }

    /// Moves a slot's command and ticket into the batch being built.
    fn take(&mut self, d: &mut SlotData) {
        let Some(ticket) = d.ticket.as_ref() else {
            return;
        };
        let Some(cmd) = command_of(d) else { return };
        if !ticket.commit() {
            // The client already got a 503: this command must never execute.
            self.metrics.abandoned.inc();
            let mut feedback = Vec::new();
            undo(&self.idem_tx, &cmd, &mut feedback);
            if !feedback.is_empty() {
                let _ = self.feedback_tx.send(feedback);
            }
            d.ticket = None;
            return;
        }
        // Traced: the log-append span runs from here to the log's outcome (the acknowledger
        // drops it), and its context is what the log record and the processor carry on.
        let span = d.trace.map(|t| telemetry::child(Step::Publish, t));
        let trace = span.as_ref().and_then(TraceParent::of);
        self.entries.push(Entry {
            cmd,
            ticket: d.ticket.take(),
            trace,
            span,
        });
    }

    fn flush(&mut self) {
        while let Ok(cmds) = self.in_doubt_rx.try_recv() {
            self.in_doubt.extend(cmds);
        }
        if self.entries.is_empty() {
            return;
        }
        if !self.in_doubt.is_empty() {
            self.void_in_doubt();
        }
        if !self.cfg.test_stall.is_zero() {
            std::thread::sleep(self.cfg.test_stall);
        }
        self.cmds.clear();
        self.cmds.extend(self.entries.iter().map(|e| e.cmd));
        if let Some(t) = &self.cfg.record_traces {
            let mut t = t.lock();
            t.clear();
            t.extend(
                self.entries
                    .iter()
                    .map(|e| e.trace.map(TraceParent::to_text)),
            );
        }
        let submitted = Instant::now();
        let (id, outcome) = self.submit();
        let spare = self
            .spare_rx
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.cfg.max_batch.max(1)));
        let entries = std::mem::replace(&mut self.entries, spare);
        // Blocks while `max_in_flight` batches wait for the log: backpressure into the ring.
        let _ = self.to_ack.send(InFlight {
            id,
            outcome,
            entries,
            voids: Vec::new(),
            submitted,
        });
    }

    /// Submits `self.cmds`: pipelined, the outcome comes later; otherwise it is known now.
    fn submit(&mut self) -> (BatchId, Option<Result<(), LogError>>) {
        if self.pipelined {
            match self.log.submit(&self.cmds) {
                Ok(id) => (id, None),
                Err(e) => (0, Some(Err(e))),
            }
        } else {
            (0, Some(self.log.append(&self.cmds)))
        }
    }

    /// Appends a `Void` for every in-doubt command. Their outcome is learned like any batch's;
    /// if the voids fail, the acknowledger hands the commands back to be voided again.
    fn void_in_doubt(&mut self) {
        let originals = std::mem::take(&mut self.in_doubt);
        self.cmds.clear();
        self.cmds.extend(
            originals
                .iter()
                .filter_map(|c| oms_core::VoidOrder::of(c).map(Command::Void)),
        );
        if let Some(t) = &self.cfg.record_traces {
            t.lock().clear();
        }
        let submitted = Instant::now();
        let (id, outcome) = self.submit();
        let _ = self.to_ack.send(InFlight {
            id,
            outcome,
            entries: Vec::new(),
            voids: originals,
            submitted,
        });
    }
}

/// Gives back what earlier stages took for a command that will not be logged.
pub(crate) fn undo(idem_tx: &Sender<IdemMsg>, cmd: &Command, feedback: &mut Vec<Feedback>) {
    if let Command::Place(p) = cmd {
        if let Some(key) = p.idempotency_key {
            let _ = idem_tx.send(IdemMsg::Release(IdemKey {
                account: p.account,
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

/// The command a slot will log, if it got that far.
fn command_of(d: &SlotData) -> Option<Command> {
    match &d.work {
        Work::Place { cmd: Some(p), .. } => Some(Command::Place(*p)),
        Work::Place { cmd: None, .. } => None,
        Work::Cancel(c) => Some(Command::Cancel(*c)),
        Work::Amend { cmd, .. } => Some(Command::Amend(*cmd)),
        Work::Halt(h) => Some(Command::Halt(*h)),
        Work::CancelAll(c) => Some(Command::CancelAll(*c)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU8;

    use oms_core::command::PlaceOrder;
    use oms_core::ports::{AppendOutcomes, Checkpoint};
    use oms_core::{
        AccountId, IdempotencyKey, OrderId, OrderRequest, Qty, ValidatedOrder, validate,
    };
    use tokio::sync::oneshot;

    use super::*;
    use crate::pipeline::slot::{QUEUED, Reply, Ticket};

    type Appended = Arc<parking_lot::Mutex<Vec<Command>>>;

    /// A log that fails its first append with an unknown outcome, then records everything.
    struct FlakyLog {
        fail_next: bool,
        appended: Appended,
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

    /// Outcomes the test decides: batch id → result, released when the test says so.
    #[derive(Default)]
    struct Gate {
        decided: parking_lot::Mutex<HashMap<BatchId, Result<(), LogError>>>,
        cv: parking_lot::Condvar,
    }

    impl Gate {
        fn decide(&self, id: BatchId, r: Result<(), LogError>) {
            self.decided.lock().insert(id, r);
            self.cv.notify_all();
        }
    }

    struct GateOutcomes(Arc<Gate>);

    impl AppendOutcomes for GateOutcomes {
        fn wait(&mut self, id: BatchId) -> Result<(), LogError> {
            let mut d = self.0.decided.lock();
            loop {
                if let Some(r) = d.remove(&id) {
                    return r;
                }
                self.0.cv.wait(&mut d);
            }
        }
    }

    /// A pipelined log: `submit` records the batch and returns at once; the gate decides.
    struct PipelinedLog {
        next: BatchId,
        gate: Arc<Gate>,
        submitted: Arc<parking_lot::Mutex<Vec<Vec<Command>>>>,
    }

    impl OrderLog for PipelinedLog {
        fn append(&mut self, _: &[Command]) -> Result<(), LogError> {
            unreachable!("a pipelined log is only submitted to")
        }
        fn replay(
            &mut self,
            _: &Checkpoint,
            _: &mut dyn FnMut(&Command),
        ) -> Result<Checkpoint, LogError> {
            Ok(Checkpoint::start())
        }
        fn outcomes(&mut self) -> Option<Box<dyn AppendOutcomes>> {
            Some(Box::new(GateOutcomes(Arc::clone(&self.gate))))
        }
        fn submit(&mut self, batch: &[Command]) -> Result<BatchId, LogError> {
            self.next += 1;
            self.submitted.lock().push(batch.to_vec());
            Ok(self.next)
        }
    }

    fn place_slot(table: &InstrumentTable, id: u128, ts: u64) -> (Slot, oneshot::Receiver<Reply>) {
        let mut slot = Slot::new();
        let (tx, rx) = oneshot::channel();
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
        let key = IdempotencyKey::new(&format!("k{id}")).unwrap();
        let d = slot.data_mut();
        d.account = account;
        d.work = Work::Place {
            raw: Default::default(),
            key,
            fingerprint: 1,
            cmd: Some(PlaceOrder {
                order_id: OrderId(id),
                account,
                order: ValidatedOrder {
                    quantity: Qty(1000),
                    ..order
                },
                ts,
                idempotency_key: Some(key),
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

    struct Harness {
        table: Arc<InstrumentTable>,
        stage: PublishStage,
        proc_rx: Receiver<Vec<Durable>>,
        _idem_rx: Receiver<IdemMsg>,
        _fb_rx: Receiver<Vec<Feedback>>,
    }

    fn harness(log: Box<dyn OrderLog>, max_in_flight: usize) -> Harness {
        let table = Arc::new(InstrumentTable::demo());
        let (idem_tx, idem_rx) = crossbeam_channel::unbounded();
        let (fb_tx, fb_rx) = crossbeam_channel::unbounded();
        let (proc_tx, proc_rx) = crossbeam_channel::unbounded();
        let stage = PublishStage::new(
            log,
            Arc::clone(&table),
            Arc::new(Metrics::default()),
            idem_tx,
            fb_tx,
            proc_tx,
            PublishConfig {
                record_traces: None,
                max_batch: 16,
                max_in_flight,
                test_stall: Duration::ZERO,
                answered_to: None,
                doubts_to: None,
            },
        );
        Harness {
            table,
            stage,
            proc_rx,
            _idem_rx: idem_rx,
            _fb_rx: fb_rx,
        }
    }

    fn status(rx: oneshot::Receiver<Reply>) -> (u16, &'static str) {
        match rx.blocking_recv().expect("a reply") {
            Reply::Json { status, .. } => (status, ""),
            Reply::Error(e) => (e.status, e.code),
        }
    }

    fn placed_ids(batch: &[Durable]) -> Vec<u128> {
        batch
            .iter()
            .filter_map(|d| match d.cmd {
                Command::Place(p) => Some(p.order_id.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_timed_out_batch_is_voided_before_the_next_one() {
        let appended: Appended = Arc::default();
        let mut h = harness(
            Box::new(FlakyLog {
                fail_next: true,
                appended: Arc::clone(&appended),
            }),
            4,
        );
        let (first, rx1) = place_slot(&h.table, 7, 100);
        h.stage.handle(&first, 0, true);
        assert_eq!(status(rx1), (503, "LOG_UNAVAILABLE"));

        let (second, rx2) = place_slot(&h.table, 8, 200);
        h.stage.handle(&second, 1, true);
        assert_eq!(status(rx2).0, 201);
        // Only the second place reaches the processor: a 503'd place never executes.
        let batch = h.proc_rx.recv().unwrap();
        assert_eq!(placed_ids(&batch), vec![8]);
        assert!(h.proc_rx.try_recv().is_err());
        let log = appended.lock();
        assert!(
            matches!(log[0], Command::Void(v) if v.order_id == OrderId(7) && v.ts == 100),
            "{log:?}"
        );
        assert!(matches!(log[1], Command::Place(p) if p.order_id == OrderId(8)));
    }

    #[test]
    fn pipelined_batches_complete_in_log_order_and_a_failed_one_is_voided() {
        let gate = Arc::new(Gate::default());
        let submitted = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut h = harness(
            Box::new(PipelinedLog {
                next: 0,
                gate: Arc::clone(&gate),
                submitted: Arc::clone(&submitted),
            }),
            8,
        );
        // Three batches in flight before any outcome is known.
        let mut rxs = Vec::new();
        for (i, id) in [1u128, 2, 3].into_iter().enumerate() {
            let (slot, rx) = place_slot(&h.table, id, 100 * id as u64);
            h.stage.handle(&slot, i as i64, true);
            rxs.push(rx);
        }
        assert_eq!(
            submitted.lock().len(),
            3,
            "all three submitted without waiting"
        );
        // The later batches are durable first; nothing is released before batch 1 is decided.
        gate.decide(3, Ok(()));
        gate.decide(2, Ok(()));
        std::thread::sleep(Duration::from_millis(50));
        assert!(h.proc_rx.try_recv().is_err(), "released out of log order");
        // Batch 1: unknown outcome → 503, in doubt; 2 and 3 are durable → 201, in order.
        gate.decide(1, Err(LogError::Timeout(Duration::from_millis(5))));
        let mut rxs = rxs.into_iter();
        assert_eq!(status(rxs.next().unwrap()), (503, "LOG_UNAVAILABLE"));
        assert_eq!(status(rxs.next().unwrap()).0, 201);
        assert_eq!(status(rxs.next().unwrap()).0, 201);
        assert_eq!(placed_ids(&h.proc_rx.recv().unwrap()), vec![2]);
        assert_eq!(placed_ids(&h.proc_rx.recv().unwrap()), vec![3]);
        assert!(
            h.proc_rx.try_recv().is_err(),
            "the 503'd place reached the processor"
        );

        // The next batch is preceded by the void of order 1.
        let (slot, rx4) = place_slot(&h.table, 4, 400);
        h.stage.handle(&slot, 3, true);
        {
            let s = submitted.lock();
            assert_eq!(s.len(), 5, "{s:?}");
            assert!(
                matches!(s[3][..], [Command::Void(v)] if v.order_id == OrderId(1) && v.ts == 100),
                "{:?}",
                s[3]
            );
            assert!(matches!(s[4][..], [Command::Place(p)] if p.order_id == OrderId(4)));
        }
        gate.decide(4, Ok(()));
        gate.decide(5, Ok(()));
        assert_eq!(status(rx4).0, 201);
        assert_eq!(placed_ids(&h.proc_rx.recv().unwrap()), vec![4]);
    }
}

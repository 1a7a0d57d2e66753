//! Snapshots at start and while running (ARCHITECTURE.md §9, issue 11).
//!
//! Start = newest valid snapshot + the log tail after its checkpoint, instead of a replay of
//! the whole log. The pieces:
//!
//! * [`PositionedLog`] wraps the order log the publish stage appends to and reports, after
//!   each successful append, the log position together with the number of processor
//!   commands appended so far. The processor matches that count against what it applied, so
//!   the checkpoint in a snapshot is exactly the position of the state it describes.
//! * The processor decides when (every N commands or T seconds, and at stop), captures the
//!   engine (the only part that must run on its thread; [`image`]) and hands it to the
//!   [`Snapshotter`] thread, which encodes it unless the processor did (`--snapshot-encode`),
//!   makes every idempotency answer given so far durable in the answer store (through the
//!   completer), hashes, writes the file crash-safely and applies journal retention.
//! * [`restore`] loads the newest snapshot that verifies (checksum, versions, a checkpoint
//!   inside the log), falling back to older ones and finally to a full replay, and rebuilds
//!   the idempotency index from the answer store plus the answers of the log tail.
//!
//! The idempotency answers are not in the snapshot: they are in the append-only answer store
//! ([`oms_journal::answers`]), written as they are given and fsynced before every snapshot.
//! A snapshot carrying them (as it did first) rewrote every live answer each time — 534 MB
//! per snapshot at 1 M orders — and the image of them doubled their memory. The answers of
//! commands after the snapshot's checkpoint are in the store too unless a crash cut them
//! off; the tail replay re-renders exactly those (the answer is a pure function of the logged
//! place, `oms_wire::place_ack`, so the bytes are the ones sent).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};
use oms_core::command::{Command, PlaceOrder};
use oms_core::idempotency::AnswerIndex;
use oms_core::ports::{
    AppendOutcomes, BatchId, Checkpoint, IDEMPOTENCY_TTL, IdemKey, LogError, OrderLog,
    StoredResponse,
};
use oms_core::{Capture, Engine, EngineConfig, InstrumentTable, Order};
use oms_journal::{AnswerStore, Retention, SnapshotImage, SnapshotStore, remove_segments_before};

use crate::config::SnapshotEncode;
use crate::metrics::Metrics;
use crate::pipeline::idempotency::Completer;

/// The order log with its position reported after every append (see the module docs).
/// A pipelined log (several batches in flight, Kafka) stays pipelined: the position is
/// reported by the outcome side, after each batch it learns is durable.
pub struct PositionedLog {
    inner: Box<dyn OrderLog>,
    /// Commands the processor will receive (everything but voids) appended so far.
    count: u64,
    tx: Sender<(u64, Checkpoint)>,
    /// Pipelined: each submitted batch's id and the commands of it the processor will get.
    submitted: Option<Sender<(BatchId, u64)>>,
}

/// The outcome side of a pipelined [`PositionedLog`].
struct PositionedOutcomes {
    inner: Box<dyn AppendOutcomes>,
    submitted: Receiver<(BatchId, u64)>,
    count: u64,
    tx: Sender<(u64, Checkpoint)>,
}

impl AppendOutcomes for PositionedOutcomes {
    fn wait(&mut self, id: BatchId) -> Result<(), LogError> {
        let r = self.inner.wait(id);
        // Waits come in submission order, one per successful submit, each after its submit
        // recorded the batch here.
        let mut n = 0;
        while let Ok((sid, k)) = self
            .submitted
            .recv_timeout(std::time::Duration::from_secs(1))
        {
            if sid == id {
                n = k;
                break;
            }
        }
        if r.is_ok() {
            self.count += n;
            // Sent before the acknowledger hands the batch to the processor, so a position
            // always arrives before the commands it covers.
            if let Some(p) = self.inner.position() {
                let _ = self.tx.send((self.count, p));
            }
        }
        r
    }

    fn position(&self) -> Option<Checkpoint> {
        self.inner.position()
    }
}

fn processor_commands(batch: &[Command]) -> u64 {
    batch
        .iter()
        .filter(|c| !matches!(c, Command::Void(_)))
        .count() as u64
}

impl PositionedLog {
    /// Wraps `inner`; the receiver goes to the processor.
    pub fn new(inner: Box<dyn OrderLog>) -> (PositionedLog, Receiver<(u64, Checkpoint)>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (
            PositionedLog {
                inner,
                count: 0,
                tx,
                submitted: None,
            },
            rx,
        )
    }
}

impl OrderLog for PositionedLog {
    fn append(&mut self, batch: &[Command]) -> Result<(), LogError> {
        self.inner.append(batch)?;
        self.count += processor_commands(batch);
        if let Some(p) = self.inner.position() {
            let _ = self.tx.send((self.count, p));
        }
        Ok(())
    }

    fn outcomes(&mut self) -> Option<Box<dyn AppendOutcomes>> {
        let inner = self.inner.outcomes()?;
        let (tx, rx) = crossbeam_channel::unbounded();
        self.submitted = Some(tx);
        Some(Box::new(PositionedOutcomes {
            inner,
            submitted: rx,
            count: self.count,
            tx: self.tx.clone(),
        }))
    }

    fn submit(&mut self, batch: &[Command]) -> Result<BatchId, LogError> {
        let Some(s) = &self.submitted else {
            return self.append(batch).map(|()| 0);
        };
        let id = self.inner.submit(batch)?;
        let _ = s.send((id, processor_commands(batch)));
        Ok(id)
    }

    fn replay(
        &mut self,
        from: &Checkpoint,
        visit: &mut dyn FnMut(&Command),
    ) -> Result<Checkpoint, LogError> {
        self.inner.replay(from, visit)
    }

    fn replay_copies(
        &mut self,
        from: &Checkpoint,
        visit: &mut dyn FnMut(u32, &Command),
    ) -> Result<Checkpoint, LogError> {
        self.inner.replay_copies(from, visit)
    }

    fn position(&self) -> Option<Checkpoint> {
        self.inner.position()
    }
}

/// Snapshot-thread settings (`--journal-retention`; when to snapshot is the processor's).
#[derive(Clone, Debug)]
pub struct SnapshotConfig {
    /// Journal root for retention (embedded log only).
    pub journal_root: Option<std::path::PathBuf>,
    pub retention: Retention,
}

/// The engine's state as the processor hands it over.
pub enum SnapImage {
    /// Already encoded on the processor thread.
    Encoded(Vec<u8>),
    /// Captured; the snapshot thread encodes it.
    Captured(Box<Capture>),
}

/// The processor's part of a snapshot: capture the state and, unless `mode` is
/// `Background`, encode it right away (then nothing is shared copy-on-write with the engine
/// after this returns). Sets `oms_snapshot_capture_seconds` / `oms_snapshot_encode_seconds`.
pub fn image(engine: &Engine, mode: SnapshotEncode, metrics: &Metrics) -> SnapImage {
    let capturing = Instant::now();
    let capture = engine.capture();
    metrics
        .snapshot_capture_seconds
        .set(capturing.elapsed().as_secs_f64());
    if mode == SnapshotEncode::Background {
        return SnapImage::Captured(Box::new(capture));
    }
    SnapImage::Encoded(encode(capture, metrics))
}

/// Encodes a capture, timing it in `oms_snapshot_encode_seconds`.
fn encode(capture: Capture, metrics: &Metrics) -> Vec<u8> {
    let encoding = Instant::now();
    let bytes = capture.encode();
    metrics
        .snapshot_encode_seconds
        .set(encoding.elapsed().as_secs_f64());
    bytes
}

/// Messages to the snapshot thread, in processor order.
pub enum SnapMsg {
    /// Write a snapshot of this engine image at this checkpoint; `done` hears when it is on
    /// disk (or failed).
    Take {
        engine: SnapImage,
        checkpoint: Checkpoint,
        applied: u64,
        done: Option<Sender<()>>,
        /// Answered once the orders the engine evicted before this snapshot are durable in
        /// the archive; the file is written only then (see `crate::archive`).
        archived: Option<Receiver<()>>,
    },
}

/// How long a snapshot waits for the answer store to be fsynced.
const ANSWERS_SYNC_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

/// The snapshot writer thread. See the module docs.
pub struct Snapshotter {
    store: SnapshotStore,
    /// Makes the answers durable before a snapshot (`None`: no answers to keep, tests).
    answers: Option<Completer>,
    cfg: SnapshotConfig,
    metrics: Arc<Metrics>,
    next_seq: u64,
}

impl Snapshotter {
    /// Starts the thread; returns the sender the processor uses.
    pub fn spawn(
        store: SnapshotStore,
        answers: Option<Completer>,
        cfg: SnapshotConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Sender<SnapMsg>> {
        let next_seq = store.list()?.first().map_or(1, |s| s + 1);
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut s = Snapshotter {
            store,
            answers,
            cfg,
            metrics,
            next_seq,
        };
        std::thread::Builder::new()
            .name("oms-snapshot".into())
            .spawn(move || {
                while let Ok(msg) = rx.recv() {
                    s.handle(msg);
                }
            })?;
        Ok(tx)
    }

    fn handle(&mut self, msg: SnapMsg) {
        match msg {
            SnapMsg::Take {
                engine,
                checkpoint,
                applied,
                done,
                archived,
            } => {
                let ready = archived
                    .is_none_or(|a| a.recv_timeout(std::time::Duration::from_secs(60)).is_ok());
                if !ready {
                    self.metrics.snapshot_errors.inc();
                    tracing::error!("the archive did not confirm evicted orders; snapshot skipped");
                } else if let Err(e) = self.take(engine, checkpoint, applied) {
                    self.metrics.snapshot_errors.inc();
                    tracing::error!(error = %e, "writing a snapshot failed; the previous one stays");
                }
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
        }
    }

    fn take(
        &mut self,
        engine: SnapImage,
        checkpoint: Checkpoint,
        applied: u64,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let engine = match engine {
            SnapImage::Encoded(bytes) => bytes,
            SnapImage::Captured(capture) => encode(*capture, &self.metrics),
        };
        // Every command up to `checkpoint` was answered before the processor applied it, so
        // its answer is queued at the completer by now: after this, the store holds them all.
        if let Some(c) = &self.answers
            && !c.sync(ANSWERS_SYNC_BOUND)
        {
            anyhow::bail!("the idempotency answers could not be made durable");
        }
        let state_hash = Engine::snapshot_state_hash(&engine)?;
        let img = SnapshotImage {
            seq: self.next_seq,
            applied,
            state_hash,
            checkpoint,
            engine,
        };
        self.next_seq += 1;
        let bytes = self.store.write(&img)?;
        let m = &self.metrics;
        m.snapshots_written.inc();
        m.snapshot_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        m.snapshot_write_seconds
            .set(started.elapsed().as_secs_f64());
        tracing::info!(
            seq = img.seq,
            bytes,
            applied,
            took_ms = started.elapsed().as_millis() as u64,
            "snapshot written"
        );
        if let Some(root) = &self.cfg.journal_root
            && self.cfg.retention != Retention::Keep
        {
            self.retain(root)?;
        }
        Ok(())
    }

    /// Removes journal segments before the oldest kept snapshot's checkpoint.
    fn retain(&self, root: &std::path::Path) -> anyhow::Result<()> {
        let Some(&oldest) = self.store.list()?.last() else {
            return Ok(());
        };
        let img = self.store.read(oldest)?;
        let removed =
            remove_segments_before(root, img.checkpoint.next_offset(0), self.cfg.retention)?;
        if !removed.is_empty() {
            tracing::info!(segments = removed.len(), mode = ?self.cfg.retention, "journal retention");
        }
        Ok(())
    }
}

/// What start-up recovered.
pub struct Restored {
    pub engine: Engine,
    /// The idempotency index over `answers`.
    pub idem: AnswerIndex,
    /// The answer store, every answer of the log so far in it (flushed, for the completer).
    pub answers: AnswerStore,
    /// The log position after the last record applied.
    pub checkpoint: Checkpoint,
    /// Commands applied since the beginning of the log (snapshot + tail).
    pub applied: u64,
    /// The snapshot used, if any.
    pub snapshot_seq: Option<u64>,
}

/// The idempotency index and its answer store during recovery.
pub struct Answers<'a> {
    pub index: &'a mut AnswerIndex,
    pub store: &'a mut AnswerStore,
    pub table: &'a InstrumentTable,
    pub now_ms: u64,
    /// Answers re-rendered from the log (missing from the store).
    pub rendered: u64,
}

impl Answers<'_> {
    /// Makes sure the answer to a replayed keyed place is stored: it is unless a crash cut
    /// the store short after the last snapshot; then it is rendered again from the command
    /// (a pure function of it, so the same bytes the client got).
    pub fn record_place(&mut self, p: &PlaceOrder) -> anyhow::Result<()> {
        let Some(key) = p.idempotency_key else {
            return Ok(());
        };
        let ttl = IDEMPOTENCY_TTL.as_millis() as u64;
        let written_ms = p.ts / 1_000_000;
        if written_ms.saturating_add(ttl) <= self.now_ms {
            return Ok(());
        }
        let key = IdemKey {
            account: p.account,
            key,
        };
        if self
            .index
            .find(&key, self.now_ms, &*self.store)
            .is_some_and(|a| a.fingerprint == p.fingerprint)
        {
            return Ok(());
        }
        let corr = p.correlation_id.as_ref().map_or("", |c| c.as_str());
        let (status, body) = oms_wire::place_ack(self.table, p, corr);
        let loc = self
            .store
            .append(
                &key,
                p.fingerprint,
                written_ms,
                &StoredResponse { status, body },
            )
            .context("appending to the answer store")?;
        self.index.insert(&key, loc, &*self.store);
        self.rendered += 1;
        Ok(())
    }
}

/// Replays the log after `from` into `engine` and the idempotency answers, skipping voided
/// commands (two passes: voids are rare and the first pass only decodes).
pub fn replay_tail(
    log: &mut dyn OrderLog,
    from: &Checkpoint,
    engine: &mut Engine,
    answers: &mut Answers<'_>,
    copies: Option<&[u32]>,
    evicted: &mut dyn FnMut(Vec<Order>),
) -> anyhow::Result<(Checkpoint, u64)> {
    let mut voided = std::collections::HashSet::new();
    log.replay(from, &mut |cmd: &Command| {
        if let Command::Void(v) = cmd {
            voided.insert((v.order_id, v.ts));
        }
    })
    .context("scanning the order log")?;

    if !voided.is_empty() {
        tracing::warn!(
            voided = voided.len(),
            "the log holds voided commands; they are skipped"
        );
    }
    let mut events = Vec::with_capacity(64);
    let mut n = 0u64;
    let mut failed = None;
    let mut visit = |p: u32, cmd: &Command| {
        if matches!(cmd, Command::Void(_)) {
            return;
        }
        // A single node never applied a voided command; cluster replicas apply what the
        // log holds, voided or not (`processor::doubt`), and recovery must match them.
        if copies.is_none()
            && let Some(id) = cmd.order_id()
            && voided.contains(&(id, cmd.ts()))
        {
            return;
        }
        events.clear();
        match copies {
            // Cluster mode: each copy to its partition's books, as the replica does.
            Some(parts) => engine.apply_partition(
                cmd,
                &|s: oms_core::SymbolId| parts.get(s.0 as usize) == Some(&p),
                &mut events,
            ),
            None => engine.apply(cmd, &mut events),
        }
        if let Command::Place(p) = cmd
            && let Err(e) = answers.record_place(p)
        {
            failed.get_or_insert(e);
        }
        n += 1;
        if n.is_multiple_of(4096) {
            // Finished orders leave memory during a long replay too.
            drain(engine, evicted);
        }
    };
    let checkpoint = match copies {
        Some(_) => log.replay_copies(from, &mut visit),
        None => log.replay(from, &mut |c| visit(0, c)),
    }
    .context("replaying the order log")?;
    if let Some(e) = failed {
        return Err(e);
    }
    drain(engine, evicted);
    answers.store.flush().context("writing the answer store")?;
    Ok((checkpoint, n))
}

fn drain(engine: &mut Engine, evicted: &mut dyn FnMut(Vec<Order>)) {
    let mut out = Vec::new();
    engine.take_evicted(&mut out);
    if !out.is_empty() {
        evicted(out);
    }
}

/// Opens the answer store in `dir` and indexes every live answer in it.
pub fn open_answers(
    dir: &std::path::Path,
    now_ms: u64,
) -> anyhow::Result<(AnswerStore, AnswerIndex)> {
    let index = std::cell::RefCell::new(AnswerIndex::new());
    let (store, loaded) = AnswerStore::open(
        dir,
        IDEMPOTENCY_TTL.as_millis() as u64,
        now_ms,
        &mut |n| index.borrow_mut().reserve(n),
        &mut |a, k, l, reader| index.borrow_mut().insert_parts(a, k, l, reader),
    )
    .with_context(|| format!("cannot open the answer store in {}", dir.display()))?;
    tracing::debug!(?loaded, "answer store opened");
    Ok((store, index.into_inner()))
}

/// Where the answer store is, and the time its TTL is measured at.
#[derive(Clone, Copy, Debug)]
pub struct AnswersAt<'a> {
    pub dir: &'a std::path::Path,
    /// Wall-clock ms in `oms serve`; answers written a TTL before it are dropped.
    pub now_ms: u64,
}

/// What [`restore`] starts from.
#[derive(Clone, Copy, Default)]
pub struct Recovery<'a> {
    /// Where snapshots are (`None`: replay the whole log).
    pub store: Option<&'a SnapshotStore>,
    /// Cluster mode: the partition of each symbol (index = symbol id); every copy of a
    /// command written to several partitions is applied to its partition's books, exactly
    /// as the replica applies it, so a snapshot the replica took at any offsets continues.
    pub copies: Option<&'a [u32]>,
}

/// Loads the newest usable snapshot, then the log tail; a full replay without one. The
/// idempotency index is rebuilt from the answer store. Orders the engine evicts on the way
/// are handed to `evicted` (the archive).
///
/// A snapshot is unusable when it does not verify (checksum, versions), when its checkpoint
/// lies beyond the log's end (a log that reports its end), or when the log refuses the tail
/// replay from its checkpoint (a Kafka topic whose records before it were deleted, or that
/// ends before it): then the previous snapshot is tried, and finally a full replay.
pub fn restore(
    log: &mut dyn OrderLog,
    table: &InstrumentTable,
    cfg: EngineConfig,
    recovery: Recovery<'_>,
    answers_at: AnswersAt<'_>,
    metrics: &Metrics,
    evicted: &mut dyn FnMut(Vec<Order>),
) -> anyhow::Result<Restored> {
    let started = Instant::now();
    // The answer store loads on its own thread while this one loads the snapshot.
    let now = answers_at.now_ms;
    let loader = {
        let dir = answers_at.dir.to_path_buf();
        std::thread::Builder::new()
            .name("oms-answers-load".into())
            .spawn(move || {
                let t = Instant::now();
                open_answers(&dir, now).map(|r| (r, t.elapsed()))
            })?
    };
    let end = log.position();
    let candidates = match recovery.store {
        Some(store) => store.list()?,
        None => Vec::new(),
    };
    let load = |seq: u64| -> anyhow::Result<(SnapshotImage, Engine)> {
        let store = recovery.store.context("no snapshot store")?;
        let img = store.read(seq)?;
        if let Some(end) = end.as_ref() {
            for (p, o) in &img.checkpoint.next {
                if *o > end.next_offset(*p) {
                    anyhow::bail!(
                        "its checkpoint (partition {p} offset {o}) is beyond the log's end"
                    );
                }
            }
        }
        let engine = Engine::restore(table.clone(), cfg.clone(), &img.engine)?;
        Ok((img, engine))
    };
    let ((mut answer_store, mut idem), answers_took) = loader
        .join()
        .map_err(|_| anyhow::anyhow!("loading the answer store panicked"))??;
    let answers_ms = answers_took.as_millis() as u64;
    let mut next = 0;
    loop {
        let attempt_started = Instant::now();
        let mut base = None;
        while base.is_none() && next < candidates.len() {
            let seq = candidates[next];
            next += 1;
            match load(seq) {
                Ok(b) => base = Some(b),
                Err(e) => {
                    metrics.snapshot_errors.inc();
                    let path = recovery.store.map(|s| s.path(seq)).unwrap_or_default();
                    tracing::warn!(path = %path.display(), error = %e, "snapshot unusable; trying the previous one");
                }
            }
        }
        let (mut engine, from, applied0, seq) = match base {
            Some((img, engine)) => (engine, img.checkpoint, img.applied, Some(img.seq)),
            None => (
                Engine::new(table.clone(), cfg.clone()),
                Checkpoint::start(),
                0,
                None,
            ),
        };
        let loaded_ms = attempt_started.elapsed().as_millis() as u64;
        let mut answers = Answers {
            index: &mut idem,
            store: &mut answer_store,
            table,
            now_ms: now,
            rendered: 0,
        };
        let (checkpoint, n) = match replay_tail(
            log,
            &from,
            &mut engine,
            &mut answers,
            recovery.copies,
            evicted,
        ) {
            Ok(r) => r,
            Err(e) if seq.is_some() => {
                // The log cannot continue this snapshot (its records before the
                // checkpoint are gone, or it ends before it): try the previous one.
                metrics.snapshot_errors.inc();
                tracing::warn!(snapshot = ?seq, error = %format!("{e:#}"), "the log cannot continue from this snapshot; trying the previous one");
                continue;
            }
            Err(e) => return Err(e),
        };
        let rendered = answers.rendered;
        answer_store.expire(now);
        let took = started.elapsed();
        metrics.replayed_commands.inc_by(n);
        metrics.replay_seconds.set(took.as_secs_f64());
        metrics.idempotency_keys.set(idem.len() as i64);
        tracing::info!(
            snapshot = ?seq,
            snapshot_load_ms = loaded_ms,
            answers_load_ms = answers_ms,
            tail_commands = n,
            answers_rendered = rendered,
            took_ms = took.as_millis() as u64,
            orders = engine.order_count(),
            answers = idem.len(),
            "recovered"
        );
        return Ok(Restored {
            engine,
            idem,
            answers: answer_store,
            checkpoint,
            applied: applied0 + n,
            snapshot_seq: seq,
        });
    }
}

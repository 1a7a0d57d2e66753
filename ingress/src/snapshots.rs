//! Snapshots at start and while running (ARCHITECTURE.md §9, issue 11).
//!
//! Start = newest valid snapshot + the log tail after its checkpoint, instead of a replay of
//! the whole log. The pieces:
//!
//! * [`PositionedLog`] wraps the order log the publish stage appends to and reports, after
//!   each successful append, the log position together with the number of processor
//!   commands appended so far. The processor matches that count against what it applied, so
//!   the checkpoint in a snapshot is exactly the position of the state it describes.
//! * The processor decides when (every N commands or T seconds, and at stop), encodes the
//!   engine (the only part that must run on its thread) and hands the bytes to the
//!   [`Snapshotter`] thread, which keeps the image of the live idempotency answers (fed with
//!   every keyed place, rendered here, off the hot path), hashes, writes the file crash-safely
//!   and applies journal retention.
//! * [`restore`] loads the newest snapshot that verifies (checksum, versions, a checkpoint
//!   inside the log), falling back to older ones and finally to a full replay.

use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;
use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};
use oms_core::command::{Command, PlaceOrder};
use oms_core::idempotency::MemoryIdempotency;
use oms_core::ports::{Checkpoint, IDEMPOTENCY_TTL, IdemKey, LogError, OrderLog, StoredResponse};
use oms_core::{AccountId, Engine, EngineConfig, IdempotencyKey, InstrumentTable, Order};
use oms_journal::{Retention, SnapshotImage, SnapshotStore, remove_segments_before};

use crate::metrics::Metrics;

/// The order log with its position reported after every append (see the module docs).
pub struct PositionedLog {
    inner: Box<dyn OrderLog>,
    /// Commands the processor will receive (everything but voids) appended so far.
    count: u64,
    tx: Sender<(u64, Checkpoint)>,
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
            },
            rx,
        )
    }
}

impl OrderLog for PositionedLog {
    fn append(&mut self, batch: &[Command]) -> Result<(), LogError> {
        self.inner.append(batch)?;
        self.count += batch
            .iter()
            .filter(|c| !matches!(c, Command::Void(_)))
            .count() as u64;
        if let Some(p) = self.inner.position() {
            let _ = self.tx.send((self.count, p));
        }
        Ok(())
    }

    fn replay(
        &mut self,
        from: &Checkpoint,
        visit: &mut dyn FnMut(&Command),
    ) -> Result<Checkpoint, LogError> {
        self.inner.replay(from, visit)
    }

    fn position(&self) -> Option<Checkpoint> {
        self.inner.position()
    }
}

/// One live idempotency answer, as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Answer {
    fingerprint: u64,
    status: u16,
    body: Box<[u8]>,
    written_ms: u64,
}

/// The live idempotency answers at the snapshot's log position.
#[derive(Debug, Default)]
pub struct IdemImage {
    map: AHashMap<IdemKey, Answer>,
}

fn invalid(what: &str) -> anyhow::Error {
    anyhow::anyhow!("idempotency image: invalid {what}")
}

impl IdemImage {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records the answer of a logged, keyed place (the same bytes the client got).
    pub fn record_place(&mut self, table: &InstrumentTable, p: &PlaceOrder) {
        let Some(key) = p.idempotency_key else { return };
        let corr = p.correlation_id.as_ref().map_or("", |c| c.as_str());
        let (status, body) = oms_wire::place_ack(table, p, corr);
        self.map.insert(
            IdemKey {
                account: p.account,
                key,
            },
            Answer {
                fingerprint: p.fingerprint,
                status,
                body: body.into_boxed_slice(),
                written_ms: p.ts / 1_000_000,
            },
        );
    }

    /// Drops answers older than the TTL.
    pub fn purge(&mut self, now_ms: u64, ttl_ms: u64) {
        self.map
            .retain(|_, a| a.written_ms.saturating_add(ttl_ms) > now_ms);
    }

    /// Fills the idempotency stage's index.
    pub fn fill(&self, idem: &mut MemoryIdempotency) {
        for (k, a) in &self.map {
            idem.record_done(
                *k,
                a.fingerprint,
                StoredResponse {
                    status: a.status,
                    body: a.body.to_vec(),
                },
                a.written_ms,
            );
        }
    }

    /// `count u64 | (account, key: u8 len + bytes, fingerprint u64, written_ms u64,
    /// status u16, body: u32 len + bytes)*`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.map.len() as u64).to_le_bytes());
        for (k, a) in &self.map {
            for s in [k.account.as_str().as_bytes(), k.key.as_bytes()] {
                out.push(s.len() as u8);
                out.extend_from_slice(s);
            }
            out.extend_from_slice(&a.fingerprint.to_le_bytes());
            out.extend_from_slice(&a.written_ms.to_le_bytes());
            out.extend_from_slice(&a.status.to_le_bytes());
            out.extend_from_slice(&(a.body.len() as u32).to_le_bytes());
            out.extend_from_slice(&a.body);
        }
    }

    pub fn decode(bytes: &[u8]) -> anyhow::Result<IdemImage> {
        let mut pos = 0usize;
        let mut take = |n: usize| -> anyhow::Result<&[u8]> {
            let s = bytes
                .get(pos..pos + n)
                .ok_or_else(|| invalid("length (truncated)"))?;
            pos += n;
            Ok(s)
        };
        let n = u64::from_le_bytes(take(8)?.try_into()?);
        if n > bytes.len() as u64 {
            return Err(invalid("count"));
        }
        let mut map = AHashMap::with_capacity(n as usize);
        for _ in 0..n {
            let l = take(1)?[0] as usize;
            let account = std::str::from_utf8(take(l)?).map_err(|_| invalid("account"))?;
            let account = AccountId::new(account).map_err(|_| invalid("account"))?;
            let l = take(1)?[0] as usize;
            let key = std::str::from_utf8(take(l)?).map_err(|_| invalid("key"))?;
            let key = IdempotencyKey::new(key).map_err(|_| invalid("key"))?;
            let fingerprint = u64::from_le_bytes(take(8)?.try_into()?);
            let written_ms = u64::from_le_bytes(take(8)?.try_into()?);
            let status = u16::from_le_bytes(take(2)?.try_into()?);
            let l = u32::from_le_bytes(take(4)?.try_into()?) as usize;
            let body = take(l)?.into();
            map.insert(
                IdemKey { account, key },
                Answer {
                    fingerprint,
                    status,
                    body,
                    written_ms,
                },
            );
        }
        if pos != bytes.len() {
            return Err(invalid("trailing bytes"));
        }
        Ok(IdemImage { map })
    }
}

/// Snapshot-thread settings (`--journal-retention`; when to snapshot is the processor's).
#[derive(Clone, Debug)]
pub struct SnapshotConfig {
    /// Journal root for retention (embedded log only).
    pub journal_root: Option<std::path::PathBuf>,
    pub retention: Retention,
}

/// Messages to the snapshot thread, in processor order.
pub enum SnapMsg {
    /// Keyed places just applied: their answers join the image.
    Places(Vec<PlaceOrder>),
    /// Write a snapshot of this engine image at this checkpoint; `done` hears when it is on
    /// disk (or failed).
    Take {
        engine: Vec<u8>,
        checkpoint: Checkpoint,
        applied: u64,
        done: Option<Sender<()>>,
        /// Answered once the orders the engine evicted before this snapshot are durable in
        /// the archive; the file is written only then (see `crate::archive`).
        archived: Option<Receiver<()>>,
    },
}

/// Wall-clock milliseconds, for the TTL of idempotency answers.
fn now_ms() -> u64 {
    use oms_core::ids::Clock as _;
    crate::clock::SystemClock.now_nanos() / 1_000_000
}

/// The snapshot writer thread. See the module docs.
pub struct Snapshotter {
    store: SnapshotStore,
    table: Arc<InstrumentTable>,
    image: IdemImage,
    cfg: SnapshotConfig,
    metrics: Arc<Metrics>,
    next_seq: u64,
}

impl Snapshotter {
    /// Starts the thread; returns the sender the processor uses.
    pub fn spawn(
        store: SnapshotStore,
        table: Arc<InstrumentTable>,
        image: IdemImage,
        cfg: SnapshotConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Sender<SnapMsg>> {
        let next_seq = store.list()?.first().map_or(1, |s| s + 1);
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut s = Snapshotter {
            store,
            table,
            image,
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
            SnapMsg::Places(places) => {
                for p in &places {
                    self.image.record_place(&self.table, p);
                }
            }
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
        engine: Vec<u8>,
        checkpoint: Checkpoint,
        applied: u64,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        self.image
            .purge(now_ms(), IDEMPOTENCY_TTL.as_millis() as u64);
        let state_hash = Engine::snapshot_state_hash(&engine)?;
        let mut idem = Vec::with_capacity(64 + self.image.len() * 320);
        self.image.encode(&mut idem);
        let img = SnapshotImage {
            seq: self.next_seq,
            applied,
            state_hash,
            checkpoint,
            engine,
            idem,
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
            answers = self.image.len(),
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
    pub idem: MemoryIdempotency,
    pub image: IdemImage,
    /// The log position after the last record applied.
    pub checkpoint: Checkpoint,
    /// Commands applied since the beginning of the log (snapshot + tail).
    pub applied: u64,
    /// The snapshot used, if any.
    pub snapshot_seq: Option<u64>,
}

/// Replays the log after `from` into `engine` and the image of idempotency answers,
/// skipping voided commands (two passes: voids are rare and the first pass only decodes).
pub fn replay_tail(
    log: &mut dyn OrderLog,
    from: &Checkpoint,
    table: &InstrumentTable,
    engine: &mut Engine,
    image: &mut IdemImage,
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
    let checkpoint = log
        .replay(from, &mut |cmd: &Command| {
            if matches!(cmd, Command::Void(_)) {
                return;
            }
            if let Some(id) = cmd.order_id()
                && voided.contains(&(id, cmd.ts()))
            {
                return;
            }
            events.clear();
            engine.apply(cmd, &mut events);
            if let Command::Place(p) = cmd {
                // The stored answer is a pure function of the logged command, so it is
                // byte-identical to the one the client got before the restart.
                image.record_place(table, p);
            }
            n += 1;
            if n.is_multiple_of(4096) {
                // Finished orders leave memory during a long replay too.
                drain(engine, evicted);
            }
        })
        .context("replaying the order log")?;
    drain(engine, evicted);
    Ok((checkpoint, n))
}

fn drain(engine: &mut Engine, evicted: &mut dyn FnMut(Vec<Order>)) {
    let mut out = Vec::new();
    engine.take_evicted(&mut out);
    if !out.is_empty() {
        evicted(out);
    }
}

/// Loads the newest usable snapshot, then the log tail; a full replay without one. Orders
/// the engine evicts on the way are handed to `evicted` (the archive).
pub fn restore(
    log: &mut dyn OrderLog,
    table: &InstrumentTable,
    cfg: EngineConfig,
    store: Option<&SnapshotStore>,
    metrics: &Metrics,
    evicted: &mut dyn FnMut(Vec<Order>),
) -> anyhow::Result<Restored> {
    let started = Instant::now();
    let end = log.position();
    let mut base: Option<(SnapshotImage, Engine, IdemImage)> = None;
    if let (Some(store), Some(end)) = (store, end.as_ref()) {
        for seq in store.list()? {
            let path = store.path(seq);
            let attempt = (|| -> anyhow::Result<(SnapshotImage, Engine, IdemImage)> {
                let img = store.read(seq)?;
                for (p, o) in &img.checkpoint.next {
                    if *o > end.next_offset(*p) {
                        anyhow::bail!(
                            "its checkpoint (partition {p} offset {o}) is beyond the log's end"
                        );
                    }
                }
                let engine = Engine::restore(table.clone(), cfg.clone(), &img.engine)?;
                let idem = IdemImage::decode(&img.idem)?;
                Ok((img, engine, idem))
            })();
            match attempt {
                Ok(b) => {
                    base = Some(b);
                    break;
                }
                Err(e) => {
                    metrics.snapshot_errors.inc();
                    tracing::warn!(path = %path.display(), error = %e, "snapshot unusable; trying the previous one");
                }
            }
        }
    }
    let (mut engine, mut image, from, applied0, seq) = match base {
        Some((img, engine, image)) => (engine, image, img.checkpoint, img.applied, Some(img.seq)),
        None => (
            Engine::new(table.clone(), cfg),
            IdemImage::default(),
            Checkpoint::start(),
            0,
            None,
        ),
    };
    let loaded_ms = started.elapsed().as_millis() as u64;
    let (checkpoint, n) = replay_tail(log, &from, table, &mut engine, &mut image, evicted)?;
    let mut idem = MemoryIdempotency::with_capacity(image.len());
    image.fill(&mut idem);
    let took = started.elapsed();
    metrics.replayed_commands.inc_by(n);
    metrics.replay_seconds.set(took.as_secs_f64());
    tracing::info!(
        snapshot = ?seq,
        snapshot_load_ms = loaded_ms,
        tail_commands = n,
        took_ms = took.as_millis() as u64,
        orders = engine.order_count(),
        answers = image.len(),
        "recovered"
    );
    Ok(Restored {
        engine,
        idem,
        image,
        checkpoint,
        applied: applied0 + n,
        snapshot_seq: seq,
    })
}

//! The replica's reader (`oms-replica`): follows every partition of `orders` from the
//! position start-up recovered to, and hands the records to the processor in batches, in
//! each partition's order. It reads `read_committed`, so a batch the log aborted is never
//! seen (cluster mode writes the log transactionally: docs/scale-out.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;
use oms_core::ports::Checkpoint;
use oms_kafka::{ConsumerStart, KafkaConfig, OrderConsumer, OrderRecord};

/// Most records handed over at once.
const MAX_BATCH: usize = 1024;

/// Records in each partition's order, and the reader's position in every partition after
/// them (past transaction markers: what "caught up to the high watermark" compares).
pub struct ReplicaBatch {
    pub records: Vec<OrderRecord>,
    pub positions: Vec<(u32, u64)>,
}

/// Handle of the running reader.
pub struct Replica {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    pub fn start(
        cfg: &KafkaConfig,
        from: Checkpoint,
        out: Sender<ReplicaBatch>,
    ) -> anyhow::Result<Replica> {
        let mut consumer = OrderConsumer::new(cfg, ConsumerStart::Checkpoint(from))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("oms-replica".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                let mut last_positions = Vec::new();
                let mut read = 0u64;
                let mut reported = std::time::Instant::now();
                while !stopping.load(Ordering::Acquire) {
                    let mut wait = Duration::from_millis(50);
                    loop {
                        match consumer.poll(wait) {
                            Ok(Some(r)) => {
                                batch.push(r);
                                wait = Duration::ZERO;
                                if batch.len() >= MAX_BATCH {
                                    break;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                // A record that does not decode is a bug or corruption: the
                                // replica must not skip it silently.
                                tracing::error!(error = %e, "replica: cannot read the order log");
                                std::thread::sleep(Duration::from_millis(200));
                                break;
                            }
                        }
                    }
                    read += batch.len() as u64;
                    let positions = match consumer.positions() {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "replica: no consumer positions");
                            Vec::new()
                        }
                    };
                    if reported.elapsed() >= Duration::from_secs(10) {
                        tracing::info!(read, ?positions, "replica: reading the order log");
                        reported = std::time::Instant::now();
                    }
                    if batch.is_empty() && positions == last_positions {
                        continue;
                    }
                    last_positions.clone_from(&positions);
                    let records = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                    if out.send(ReplicaBatch { records, positions }).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Replica {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

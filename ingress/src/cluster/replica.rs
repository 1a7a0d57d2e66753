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

/// Handle of the running reader.
pub struct Replica {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    pub fn start(
        cfg: &KafkaConfig,
        from: Checkpoint,
        out: Sender<Vec<OrderRecord>>,
    ) -> anyhow::Result<Replica> {
        let mut consumer = OrderConsumer::new(cfg, ConsumerStart::Checkpoint(from))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("oms-replica".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
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
                    if !batch.is_empty()
                        && out
                            .send(std::mem::replace(
                                &mut batch,
                                Vec::with_capacity(MAX_BATCH),
                            ))
                            .is_err()
                    {
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

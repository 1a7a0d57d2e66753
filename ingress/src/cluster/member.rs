//! The membership thread (`oms-cluster`): keeps this node in the consumer group, turns
//! rebalances into [`Cluster`] state and [`Takeover`]s for the processor, announces what this
//! node leads in `{prefix}members` and keeps the leader table current.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;
use oms_kafka::{Announcement, Directory, GroupMember, KafkaConfig, OwnershipListener};
use parking_lot::Mutex;

use super::{Cluster, Takeover};

/// How long a revoked leader waits for requests it already admitted.
const REVOKE_WAIT: Duration = Duration::from_secs(3);
/// How often a leader commits how far its partitions' events are delivered (a killed
/// leader's successor re-emits what was delivered after the last commit: at-least-once).
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// How long a revoked leader waits for its sinks to deliver what it emitted.
const SETTLE_WAIT: Duration = Duration::from_secs(2);

struct Listener {
    cluster: Arc<Cluster>,
    gained: Mutex<Vec<Vec<u32>>>,
    changed: AtomicBool,
}

impl OwnershipListener for Listener {
    fn revoked(&self, partitions: &[u32]) -> Vec<(u32, u64)> {
        tracing::info!(?partitions, "cluster: leadership revoked");
        self.cluster.revoke(partitions, REVOKE_WAIT);
        self.changed.store(true, Ordering::Release);
        self.cluster.settle(partitions, SETTLE_WAIT)
    }

    fn assigned(&self, partitions: &[u32]) {
        tracing::info!(?partitions, "cluster: leadership assigned");
        self.cluster.assign(partitions);
        self.gained.lock().push(partitions.to_vec());
        self.changed.store(true, Ordering::Release);
    }
}

/// Handle of the running membership thread.
pub struct Membership {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Membership {
    /// Joins the group and starts the thread.
    pub fn start(
        cfg: &KafkaConfig,
        cluster: Arc<Cluster>,
        takeovers: Sender<Takeover>,
    ) -> anyhow::Result<Membership> {
        let listener = Arc::new(Listener {
            cluster: Arc::clone(&cluster),
            gained: Mutex::new(Vec::new()),
            changed: AtomicBool::new(true),
        });
        let member = GroupMember::join(cfg, Arc::clone(&listener) as Arc<dyn OwnershipListener>)?;
        let mut directory = Directory::open(cfg)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let timeout = cfg.ack_timeout.max(Duration::from_secs(2));
        let thread = std::thread::Builder::new()
            .name("oms-cluster".into())
            .spawn(move || {
                let mut last_commit = std::time::Instant::now();
                let mut last_committed: Vec<(u32, u64)> = Vec::new();
                while !stopping.load(Ordering::Acquire) {
                    member.poll(Duration::from_millis(50));
                    let gained: Vec<Vec<u32>> = std::mem::take(&mut *listener.gained.lock());
                    for partitions in gained {
                        let emit_from = member.committed(&partitions, timeout);
                        match (member.high_watermarks(timeout), emit_from) {
                            (Ok(high_watermarks), Ok(emit_from)) => {
                                let _ = takeovers.send(Takeover {
                                    partitions,
                                    high_watermarks,
                                    emit_from,
                                });
                            }
                            (Err(e), _) | (_, Err(e)) => {
                                // Without the watermarks the replica cannot know when it has
                                // caught up: give the partitions back to the group.
                                tracing::error!(error = %e, "cluster: cannot read high watermarks or committed offsets");
                                listener.cluster.revoke(&partitions, Duration::ZERO);
                            }
                        }
                    }
                    if last_commit.elapsed() >= COMMIT_EVERY {
                        let cluster = &listener.cluster;
                        let ready: Vec<u32> = cluster
                            .owned()
                            .into_iter()
                            .filter(|&p| cluster.is_ready_partition(p))
                            .collect();
                        // Only what every leader sink has delivered (the processor tracks it
                        // per partition): a killed leader's successor re-emits from here, so
                        // nothing is skipped and at most one interval is sent twice.
                        let settled = cluster.settled(&ready);
                        if settled != last_committed {
                            if let Err(e) = member.commit_emitted(&settled) {
                                tracing::warn!(error = %e, "cluster: could not commit emitted offsets");
                            }
                            last_committed = settled;
                        }
                        last_commit = std::time::Instant::now();
                    }
                    if listener.changed.swap(false, Ordering::AcqRel) {
                        announce(&directory, &listener.cluster);
                    }
                    if directory.poll(Duration::from_millis(50)) {
                        let owners = directory.owners(listener.cluster.partitions());
                        listener.cluster.set_owners(owners);
                    }
                }
                // Leave at once so the partitions move now, not after the session timeout.
                member.leave();
                announce(&directory, &listener.cluster);
            })?;
        Ok(Membership {
            stop,
            thread: Some(thread),
        })
    }

    /// Leaves the group (partitions move to the other nodes) and joins the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn announce(directory: &Directory, cluster: &Cluster) {
    let a = Announcement {
        node: cluster.node.clone(),
        url: cluster.url.clone(),
        partitions: cluster.owned(),
    };
    if let Err(e) = directory.announce(&a) {
        tracing::warn!(error = %e, "cluster: could not announce leadership");
    }
}

//! The `audit` collection: every node's audit records in one place, so an admin's
//! `GET /api/admin/audit` sees the whole venue, not one node's window.
//!
//! Each node writes its own records (after its local audit file, which stays the first,
//! durable copy). A record is identified by `(node, seq)` — a unique index — so a retried
//! insert of a record already stored is a no-op rather than a duplicate.

use std::sync::Arc;

use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::{Document, doc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::runtime::{Handle, Runtime};

use crate::store::{named_index, open_client, own_runtime};
use crate::{Error, MongoConfig};

const DUPLICATE_KEY: i32 = 11000;

/// The audit collection, with a runtime of its own (the writer is a plain thread; queries
/// come from HTTP tasks and are run on this runtime, awaited from theirs).
#[derive(Clone)]
pub struct MongoAudit {
    rt: Arc<OwnedRuntime>,
    coll: Collection<Document>,
    cfg: Arc<MongoConfig>,
}

/// The adapter's runtime, shut down without blocking when the last handle goes: the last
/// handle may be dropped on an async task (the HTTP state), where blocking is not allowed.
struct OwnedRuntime(Option<Runtime>);

impl OwnedRuntime {
    fn get(&self) -> &Runtime {
        self.0.as_ref().expect("present until drop")
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for MongoAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoAudit")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl MongoAudit {
    /// Connects and creates the indexes. Call from a plain thread.
    pub fn connect(cfg: MongoConfig) -> Result<Self, Error> {
        if Handle::try_current().is_ok() {
            return Err(Error::AsyncContext);
        }
        let rt = own_runtime("oms-mongo-audit")?;
        let client = rt.block_on(open_client(&cfg, "oms-audit"))?;
        let coll = client.database(&cfg.db).collection("audit");
        let a = MongoAudit {
            rt: Arc::new(OwnedRuntime(Some(rt))),
            coll,
            cfg: Arc::new(cfg),
        };
        a.ensure_indexes()?;
        Ok(a)
    }

    fn ensure_indexes(&self) -> Result<(), Error> {
        let limit = self.cfg.write_timeout + self.cfg.server_selection_timeout;
        let coll = self.coll.clone();
        let models = vec![
            named_index("node_seq_unique", doc! { "node": 1, "seq": 1 }, true, None),
            named_index("account_ts", doc! { "account": 1, "ts": 1 }, false, None),
            named_index("ts", doc! { "ts": 1 }, false, None),
        ];
        let r = self.rt.get().block_on(async move {
            tokio::time::timeout(limit, coll.create_indexes(models)).await
        });
        match r {
            Ok(r) => r.map(|_| ()).map_err(Error::from),
            Err(_) => Err(Error::Timeout(limit)),
        }
    }

    /// Stores `records` (each must carry `node` and `seq`); records already stored are
    /// skipped. Blocks the calling plain thread up to the write timeout.
    pub fn insert<T: Serialize>(&self, records: &[T]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        let docs = records
            .iter()
            .map(|r| mongodb::bson::to_document(r).map_err(|e| Error::Decode(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let limit = self.cfg.write_timeout;
        let coll = self.coll.clone();
        let r = self.rt.get().block_on(async move {
            tokio::time::timeout(limit, coll.insert_many(docs).ordered(false)).await
        });
        match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if only_duplicates(&e) => Ok(()),
            Ok(Err(e)) => Err(Error::from(e)),
            Err(_) => Err(Error::Timeout(limit)),
        }
    }

    /// Records of `account` (all when `None`) at or after `from_ns`, oldest first (time,
    /// then node and sequence), at most `limit`. Runs on the adapter's runtime; awaitable
    /// from any runtime.
    pub async fn query<T: DeserializeOwned + Send + 'static>(
        &self,
        account: Option<String>,
        from_ns: u64,
        limit: usize,
    ) -> Result<Vec<T>, Error> {
        let coll = self.coll.clone();
        let bound = self.cfg.query_timeout;
        let from = i64::try_from(from_ns).unwrap_or(i64::MAX);
        let job = self.rt.get().spawn(async move {
            let mut filter = doc! { "ts": { "$gte": from } };
            if let Some(a) = account {
                filter.insert("account", a);
            }
            let find = async {
                let cursor = coll
                    .find(filter)
                    .sort(doc! { "ts": 1, "node": 1, "seq": 1 })
                    .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                    .await?;
                cursor.try_collect::<Vec<Document>>().await
            };
            match tokio::time::timeout(bound, find).await {
                Ok(r) => r.map_err(Error::from),
                Err(_) => Err(Error::Timeout(bound)),
            }
        });
        let docs = job
            .await
            .map_err(|e| Error::Decode(format!("audit query task: {e}")))??;
        docs.into_iter()
            .map(|d| mongodb::bson::from_document(d).map_err(|e| Error::Decode(e.to_string())))
            .collect()
    }
}

/// An unordered insert whose only failures are duplicate keys (records stored before).
fn only_duplicates(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::InsertMany(f) => {
            f.write_concern_error.is_none()
                && f.write_errors
                    .as_ref()
                    .is_some_and(|w| w.iter().all(|x| x.code == DUPLICATE_KEY))
        }
        _ => false,
    }
}

//! Operational routes: readiness, metrics, the OpenAPI document.

use serde::Serialize;
use serde::ser::SerializeMap as _;

use std::sync::Arc;

use oms_wire::ApiError;

use super::{Answer, App};

/// The OpenAPI 3.1 document describing every route.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// One readiness check in `/ready`'s body.
#[derive(Serialize)]
struct Check {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// The checks, in the order they were made (started, log, then each dependency).
struct Checks(Vec<(&'static str, Check)>);

impl Serialize for Checks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, check) in &self.0 {
            m.serialize_entry(name, check)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct Ready {
    checks: Checks,
    status: &'static str,
}

/// `GET /ready`: 200 only when started, not draining, and every dependency answers.
pub fn ready(app: &App) -> Answer {
    let started = app.is_ready();
    let log_ok = app.metrics.log_healthy();
    let mut checks = vec![
        (
            "started",
            Check {
                ok: started,
                detail: (!started).then(|| "starting or draining".to_owned()),
            },
        ),
        (
            "log",
            Check {
                ok: log_ok,
                detail: Some(if log_ok {
                    "last append succeeded".to_owned()
                } else {
                    "the last order-log append failed".to_owned()
                }),
            },
        ),
    ];
    for check in app.ready_checks() {
        let (name, ok, detail) = check();
        checks.push((
            name,
            Check {
                ok,
                detail: Some(detail),
            },
        ));
    }
    let ok = checks.iter().all(|(_, c)| c.ok);
    let body = Ready {
        checks: Checks(checks),
        status: if ok { "ready" } else { "not_ready" },
    };
    Answer::json(if ok { 200 } else { 503 }, oms_wire::to_vec(&body, 256))
}

/// `GET /metrics`.
pub fn metrics(app: &App) -> Answer {
    let mut a = Answer::json(200, app.metrics.render());
    a.content_type = "text/plain; version=0.0.4; charset=utf-8";
    a
}

/// `GET /openapi.json`.
pub fn openapi() -> Answer {
    Answer::json(200, OPENAPI)
}

/// `GET /api/cluster` (cluster mode, docs/scale-out.md): this node, the leader of every
/// partition, and per partition what this node's replica has applied — the next offset and
/// the state hash of that partition's books. Two nodes that applied a partition to the same
/// offset report the same hash.
pub async fn cluster(app: &Arc<App>) -> super::Outcome {
    let Some(fw) = app.forwarder() else {
        return super::err(ApiError::new(
            404,
            "NOT_CLUSTERED",
            "this node does not run in cluster mode (--cluster)",
        ));
    };
    let cluster = Arc::clone(&fw.cluster);
    let table = Arc::clone(&app.table);
    let parts: Vec<u32> = table
        .iter()
        .map(|i| cluster.symbol_partition(&i.symbol))
        .collect();
    let n = cluster.partitions();
    let snapshot = Arc::clone(&cluster);
    let (hashes, applied) = app
        .query(move |e| {
            let hashes: Vec<u64> = (0..n)
                .map(|p| e.symbols_state_hash(&|s| parts[s.0 as usize] == p))
                .collect();
            (hashes, snapshot.applied())
        })
        .await
        .map_err(|e| (e, None))?;
    let owners = cluster.owners();
    let partitions: Vec<serde_json::Value> = (0..n as usize)
        .map(|p| {
            let symbols: Vec<&str> = table
                .iter()
                .filter(|i| cluster.symbol_partition(&i.symbol) == p as u32)
                .map(|i| i.symbol.as_str())
                .collect();
            serde_json::json!({
                "partition": p,
                "leader": owners.get(p).cloned().flatten().map(|o| o.node),
                "ledHere": cluster.leads(p as u32),
                "symbols": symbols,
                "appliedOffset": applied.get(p).copied().unwrap_or(0),
                "stateHash": format!("{:016x}", hashes[p]),
            })
        })
        .collect();
    let body = serde_json::json!({
        "node": cluster.node,
        "url": cluster.url,
        "ready": cluster.is_ready(),
        "partitions": partitions,
    });
    Ok(Answer::json(
        200,
        serde_json::to_vec(&body).unwrap_or_default(),
    ))
}

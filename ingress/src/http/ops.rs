//! Operational routes: readiness, metrics, the OpenAPI document.

use std::sync::atomic::Ordering;

use super::render::json_str;
use super::{Answer, App};

/// The OpenAPI 3.1 document describing every route.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// `GET /ready`: 200 only when started, not draining, and every dependency answers.
pub fn ready(app: &App) -> Answer {
    let mut ok = app.ready.load(Ordering::Acquire);
    let mut s = String::with_capacity(256);
    s.push_str("{\"checks\":{\"started\":");
    s.push_str(if ok {
        "{\"ok\":true}"
    } else {
        "{\"ok\":false,\"detail\":\"starting or draining\"}"
    });
    let log_ok = app.metrics.log_healthy();
    ok &= log_ok;
    s.push_str(if log_ok {
        ",\"log\":{\"ok\":true,\"detail\":\"last append succeeded\"}"
    } else {
        ",\"log\":{\"ok\":false,\"detail\":\"the last order-log append failed\"}"
    });
    for check in &app.ready_checks {
        let (name, good, detail) = check();
        ok &= good;
        s.push(',');
        json_str(&mut s, name);
        s.push_str(if good {
            ":{\"ok\":true,\"detail\":"
        } else {
            ":{\"ok\":false,\"detail\":"
        });
        json_str(&mut s, &detail);
        s.push('}');
    }
    s.push_str(if ok {
        "},\"status\":\"ready\"}"
    } else {
        "},\"status\":\"not_ready\"}"
    });
    Answer::json(if ok { 200 } else { 503 }, s)
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

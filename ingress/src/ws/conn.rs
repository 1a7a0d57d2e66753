//! One WebSocket connection: reads client operations, answers the local ones (auth, ping,
//! heartbeat, limits), forwards subscriptions to the fan-out thread and writes what the
//! fan-out queues for it. It closes with a code and a reason: 1008 for a slow consumer,
//! 1009 for an oversize message, 1001 when idle, 1002 on a protocol error.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use oms_core::AccountId;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsErr};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};

use super::WsShared;
use super::data::{self, Head, Kind};
use super::hub::{Control, Out};
use super::metrics::CloseReason;
use super::protocol::{self, Op, Topic, WsError};
use crate::auth::Authenticator;

/// What the fan-out thread shares with a connection: a request to close.
pub struct ConnShared {
    kill: parking_lot::Mutex<Option<String>>,
    notify: tokio::sync::Notify,
}

impl ConnShared {
    pub(super) fn new() -> Self {
        ConnShared {
            kill: parking_lot::Mutex::new(None),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// Asks the connection to close with 1008 and `reason`.
    pub fn kill(&self, reason: String) {
        *self.kill.lock() = Some(reason);
        self.notify.notify_one();
    }
}

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Why the loop ended.
enum End {
    /// The peer closed or the socket failed: nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(CloseCode, String),
}

/// The state a connection keeps for itself.
struct Conn {
    id: u64,
    ws: Arc<WsShared>,
    account: Option<AccountId>,
    topics: HashSet<Topic>,
    heartbeat_seq: u64,
    last_in: Instant,
    last_out: Instant,
    last_ping: Instant,
    /// The client opted in to cancel-on-disconnect (in its `auth` op).
    cancel_on_disconnect: bool,
    /// Length and birth of each message of the batch being written (reused).
    written: Vec<(usize, Option<Instant>)>,
}

/// The close a kill request from the fan-out asks for.
fn killed_end(shared: &ConnShared) -> End {
    let reason = shared
        .kill
        .lock()
        .take()
        .unwrap_or_else(|| "server shutting down".to_owned());
    End::Close(CloseCode::Policy, reason)
}

/// At most this many queued messages go out with one flush.
const WRITE_BATCH: usize = 64;

/// Runs a connection until it ends; `account` came with the upgrade request (already
/// counted against its limit).
pub async fn run(ws: Arc<WsShared>, upgraded: Upgraded, account: Option<AccountId>, id: u64) {
    let cfg = &ws.cfg;
    let config = WebSocketConfig::default()
        .max_message_size(Some(cfg.ws_max_message_bytes))
        .max_frame_size(Some(cfg.ws_max_message_bytes));
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Out>(cfg.ws_send_queue.max(1));
    let shared = Arc::new(ConnShared::new());
    let _ = ws.control.send(Control::Register {
        id,
        tx,
        shared: Arc::clone(&shared),
        account,
    });
    let now = Instant::now();
    let mut c = Conn {
        id,
        ws: Arc::clone(&ws),
        account,
        topics: HashSet::new(),
        heartbeat_seq: 0,
        last_in: now,
        last_out: now,
        last_ping: now,
        cancel_on_disconnect: false,
        written: Vec::with_capacity(WRITE_BATCH),
    };
    let end = c.serve(&mut socket, &mut rx, &shared).await;
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let close_timeout = Duration::from_millis(ws.cfg.ws_close_timeout_ms);
        let _ = tokio::time::timeout(close_timeout, socket.close(Some(frame))).await;
    }
    let _ = ws.control.send(Control::Unregister { id });
    if c.topics.contains(&Topic::Heartbeat) {
        ws.metrics.subscribed(protocol::Channel::Heartbeat, -1);
    }
    ws.release(c.account.as_ref());
    if c.cancel_on_disconnect
        && let (Some(a), Some(hook)) = (c.account, ws.on_close.get())
    {
        hook(&a);
    }
}

impl Conn {
    async fn serve(
        &mut self,
        socket: &mut Ws,
        rx: &mut tokio::sync::mpsc::Receiver<Out>,
        shared: &ConnShared,
    ) -> End {
        let cfg = &self.ws.cfg;
        let tick_every = Duration::from_millis(
            (cfg.ws_heartbeat_ms.min(cfg.ws_ping_interval_ms) / 4).clamp(10, 1000),
        );
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shared.notify.notified() => return self.killed(shared),
                out = rx.recv() => {
                    let Some(out) = out else { return self.killed(shared) };
                    if let Err(end) = self.write_queued(socket, shared, out, rx).await {
                        return end;
                    }
                }
                frame = socket.next() => {
                    self.last_in = Instant::now();
                    match frame {
                        None => return End::Gone,
                        Some(Ok(Message::Text(t))) => {
                            if let Err(end) = self.on_text(socket, shared, &t).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let e = WsError::new("INVALID_MESSAGE", "binary frames are not supported; send JSON text");
                            if let Err(end) = self.reply(socket, shared, protocol::error_reply("", None, &e)).await {
                                return end;
                            }
                            self.ws.metrics.error_replies.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Some(Ok(Message::Close(_))) => return End::Gone,
                        Some(Ok(_)) => {} // ping (answered by tungstenite), pong, raw frame
                        Some(Err(WsErr::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                            self.ws.metrics.closed(CloseReason::MessageTooBig);
                            return End::Close(CloseCode::Size, format!("message of {size} bytes exceeds the limit of {max_size}"));
                        }
                        Some(Err(WsErr::Protocol(p))) => {
                            self.ws.metrics.closed(CloseReason::ProtocolError);
                            return End::Close(CloseCode::Protocol, format!("protocol error: {p}"));
                        }
                        Some(Err(WsErr::Utf8(_))) => {
                            self.ws.metrics.closed(CloseReason::ProtocolError);
                            return End::Close(CloseCode::Invalid, "text frame is not UTF-8".to_owned());
                        }
                        Some(Err(_)) => return End::Gone,
                    }
                }
                _ = tick.tick() => {
                    if let Err(end) = self.on_tick(socket, shared).await {
                        return end;
                    }
                }
            }
        }
    }

    fn killed(&self, shared: &ConnShared) -> End {
        killed_end(shared)
    }

    /// Writes `first` and what else is already queued (up to [`WRITE_BATCH`] messages) with one
    /// flush, so a busy connection pays one socket write per batch rather than per message. A
    /// close request from the fan-out wins over a blocked write.
    async fn write_queued(
        &mut self,
        socket: &mut Ws,
        shared: &ConnShared,
        first: Out,
        rx: &mut tokio::sync::mpsc::Receiver<Out>,
    ) -> Result<(), End> {
        let written = &mut self.written;
        written.clear();
        let feed = async {
            let mut next = Some(first);
            while let Some(out) = next.take() {
                written.push((out.text.len(), out.born));
                socket.feed(Message::Text(out.text)).await?;
                if written.len() < WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            socket.flush().await
        };
        let r = tokio::select! {
            biased;
            _ = shared.notify.notified() => return Err(killed_end(shared)),
            r = feed => r,
        };
        if r.is_err() {
            return Err(End::Gone);
        }
        self.last_out = Instant::now();
        for (len, born) in self.written.drain(..) {
            self.ws.metrics.sent(len, born.map(|b| b.elapsed()));
        }
        Ok(())
    }

    /// Writes one message; a close request from the fan-out wins over a blocked write.
    async fn write(&mut self, socket: &mut Ws, shared: &ConnShared, out: Out) -> Result<(), End> {
        let len = out.text.len();
        let r = tokio::select! {
            biased;
            _ = shared.notify.notified() => return Err(self.killed(shared)),
            r = socket.send(Message::Text(out.text)) => r,
        };
        if r.is_err() {
            return Err(End::Gone);
        }
        self.last_out = Instant::now();
        self.ws.metrics.sent(len, out.born.map(|b| b.elapsed()));
        Ok(())
    }

    async fn reply(
        &mut self,
        socket: &mut Ws,
        shared: &ConnShared,
        text: String,
    ) -> Result<(), End> {
        self.write(
            socket,
            shared,
            Out {
                text: Utf8Bytes::from(text),
                born: None,
            },
        )
        .await
    }

    async fn on_tick(&mut self, socket: &mut Ws, shared: &ConnShared) -> Result<(), End> {
        let cfg = &self.ws.cfg;
        let now = Instant::now();
        if now - self.last_in >= Duration::from_millis(cfg.ws_idle_timeout_ms) {
            self.ws.metrics.closed(CloseReason::Idle);
            return Err(End::Close(
                CloseCode::Away,
                format!("idle: nothing received for {} ms", cfg.ws_idle_timeout_ms),
            ));
        }
        if now - self.last_ping >= Duration::from_millis(cfg.ws_ping_interval_ms) {
            self.last_ping = now;
            let r = tokio::select! {
                biased;
                _ = shared.notify.notified() => return Err(self.killed(shared)),
                r = socket.send(Message::Ping(Bytes::new())) => r,
            };
            if r.is_err() {
                return Err(End::Gone);
            }
        }
        if self.topics.contains(&Topic::Heartbeat)
            && now - self.last_out >= Duration::from_millis(cfg.ws_heartbeat_ms)
        {
            self.heartbeat_seq += 1;
            let head = Head {
                channel: "heartbeat",
                symbol: None,
                depth: None,
                interval: None,
            };
            let text = data::envelope(
                &head,
                Kind::Heartbeat,
                self.heartbeat_seq,
                data::now_nanos(),
                "null",
            );
            self.reply(socket, shared, text).await?;
        }
        Ok(())
    }

    async fn on_text(
        &mut self,
        socket: &mut Ws,
        shared: &ConnShared,
        text: &str,
    ) -> Result<(), End> {
        let req = protocol::parse(text, &self.ws.table);
        let id = req.id.as_deref();
        let answer = match req.parsed {
            Err(e) => Err(e),
            Ok(op) => self.apply(op, id),
        };
        match answer {
            Ok(Some(reply)) => self.reply(socket, shared, reply).await,
            Ok(None) => Ok(()),
            Err(e) => {
                self.ws
                    .metrics
                    .error_replies
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.reply(socket, shared, protocol::error_reply(&req.op, id, &e))
                    .await
            }
        }
    }

    /// Applies an operation: a reply to send now, `None` when the fan-out answers, or an
    /// error.
    fn apply(&mut self, op: Op, id: Option<&str>) -> Result<Option<String>, WsError> {
        let req = id.map(str::to_owned);
        match op {
            Op::Ping => Ok(Some(protocol::ok_reply("pong", id, ""))),
            Op::Auth {
                token,
                account,
                cancel_on_disconnect,
            } => {
                let a = self.authenticate(token, account)?;
                self.cancel_on_disconnect |= cancel_on_disconnect;
                let mut extra = String::from("\"account\":");
                oms_wire::push_json_str(&mut extra, a.as_str());
                Ok(Some(protocol::ok_reply("auth", id, &extra)))
            }
            Op::Subscribe(topics) => {
                if topics.iter().any(|t| t.channel().is_private()) && self.account.is_none() {
                    return Err(WsError::new(
                        "UNAUTHORIZED",
                        "private channels need authentication: send {\"op\":\"auth\",…} first",
                    ));
                }
                let new = topics.iter().filter(|t| !self.topics.contains(t)).count();
                let max = self.ws.cfg.ws_max_subscriptions;
                if self.topics.len() + new > max {
                    return Err(WsError::new(
                        "TOO_MANY_SUBSCRIPTIONS",
                        format!("at most {max} subscriptions per connection"),
                    ));
                }
                let mut hub_topics = Vec::with_capacity(topics.len());
                for t in topics {
                    if t == Topic::Heartbeat {
                        if self.topics.insert(t) {
                            self.ws.metrics.subscribed(protocol::Channel::Heartbeat, 1);
                        }
                    } else {
                        self.topics.insert(t);
                        hub_topics.push(t);
                    }
                }
                if hub_topics.is_empty() {
                    return Ok(Some(protocol::ok_reply("subscribe", id, "")));
                }
                let _ = self.ws.control.send(Control::Subscribe {
                    id: self.id,
                    req,
                    topics: hub_topics,
                });
                Ok(None)
            }
            Op::Unsubscribe(topics) | Op::Resync(topics)
                if topics.iter().any(|t| !self.topics.contains(t)) =>
            {
                Err(WsError::new(
                    "NOT_SUBSCRIBED",
                    "the connection is not subscribed to that channel",
                ))
            }
            Op::Unsubscribe(topics) => {
                let mut hub_topics = Vec::with_capacity(topics.len());
                for t in topics {
                    self.topics.remove(&t);
                    if t == Topic::Heartbeat {
                        self.ws.metrics.subscribed(protocol::Channel::Heartbeat, -1);
                    } else {
                        hub_topics.push(t);
                    }
                }
                if hub_topics.is_empty() {
                    return Ok(Some(protocol::ok_reply("unsubscribe", id, "")));
                }
                let _ = self.ws.control.send(Control::Unsubscribe {
                    id: self.id,
                    req,
                    topics: hub_topics,
                });
                Ok(None)
            }
            Op::Resync(topics) => {
                let topics: Vec<Topic> = topics
                    .into_iter()
                    .filter(|t| *t != Topic::Heartbeat)
                    .collect();
                if topics.is_empty() {
                    return Ok(Some(protocol::ok_reply("resync", id, "")));
                }
                let _ = self.ws.control.send(Control::Resync {
                    id: self.id,
                    req,
                    topics,
                });
                Ok(None)
            }
        }
    }

    fn authenticate(
        &mut self,
        token: Option<String>,
        account: Option<String>,
    ) -> Result<AccountId, WsError> {
        let a = match (&*self.ws.auth, token, account) {
            (Authenticator::Jwt(v), Some(t), None) => {
                v.verify(&t, self.ws.now_secs())
                    .map_err(|e| WsError::new("UNAUTHORIZED", e.message))?
                    .account
            }
            (Authenticator::Jwt(_), _, _) => {
                return Err(WsError::new(
                    "UNAUTHORIZED",
                    "auth needs a \"token\" (a JWT) and nothing else",
                ));
            }
            (Authenticator::Off, None, Some(a)) => protocol::dev_account(&a)?,
            (Authenticator::Off, _, _) => {
                return Err(WsError::new(
                    "UNAUTHORIZED",
                    "auth is off on this server: send {\"op\":\"auth\",\"account\":\"…\"}",
                ));
            }
        };
        match self.account {
            Some(cur) if cur == a => return Ok(a),
            Some(cur) => {
                return Err(WsError::new(
                    "ALREADY_AUTHENTICATED",
                    format!(
                        "the connection is already authenticated as '{}'",
                        cur.as_str()
                    ),
                ));
            }
            None => {}
        }
        self.ws.claim(&a).map_err(|max| {
            WsError::new(
                "TOO_MANY_CONNECTIONS",
                format!("at most {max} connections per account"),
            )
        })?;
        self.account = Some(a);
        let _ = self.ws.control.send(Control::Auth {
            id: self.id,
            account: a,
        });
        Ok(a)
    }
}

//! The fan-out thread: applies the processor's events to its market mirror, renders each
//! message once, and offers it to every subscribed connection's bounded queue.
//!
//! Nothing here can slow matching: the processor only `try_send`s a batch into the feed
//! queue (and the sink sends nothing while no client is connected). A connection whose queue
//! is full is a slow consumer: it is dropped from every stream and told to close (1008); the
//! other connections never wait for it. If the feed queue itself overflows, the mirror may
//! have a hole, so it is reloaded from the engine and every subscriber gets a fresh snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use oms_core::{AccountId, Candle, Event, InstrumentTable, Side, SymbolId};
use tokio::sync::mpsc::error::TrySendError;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::book::{self, DepthView, Level};
use super::conn::ConnShared;
use super::data::{self, Head, Kind};
use super::market::{self, Feed, Market, PrivateState};
use super::metrics::{CloseReason, WsMetrics};
use super::protocol::{self, Channel, Topic};
use crate::processor::Query;

/// At most this many events are merged into one update (bounds one message's size).
const COALESCE_EVENTS: usize = 4096;

/// One outbound message: shared text, and when its event left the processor.
#[derive(Clone)]
pub struct Out {
    pub text: Utf8Bytes,
    pub born: Option<Instant>,
}

/// What connections tell the fan-out.
pub enum Control {
    Register {
        id: u64,
        tx: tokio::sync::mpsc::Sender<Out>,
        shared: Arc<ConnShared>,
        account: Option<AccountId>,
    },
    Auth {
        id: u64,
        account: AccountId,
    },
    Subscribe {
        id: u64,
        req: Option<String>,
        topics: Vec<Topic>,
    },
    Unsubscribe {
        id: u64,
        req: Option<String>,
        topics: Vec<Topic>,
    },
    Resync {
        id: u64,
        req: Option<String>,
        topics: Vec<Topic>,
    },
    Unregister {
        id: u64,
    },
}

/// Settings of the fan-out thread.
pub struct HubConfig {
    pub trades_snapshot: usize,
    pub candle_history: usize,
    pub checksum_levels: usize,
}

/// A stream: one seq, its subscribers, and (for private snapshots) who waits for one.
#[derive(Default)]
struct Stream {
    seq: u64,
    subs: Vec<u64>,
    /// Subscribers waiting for a snapshot from a private query.
    pending: Vec<u64>,
    /// Book streams: the levels subscribers hold.
    view: DepthView,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Key {
    Public(Topic),
    Private(Channel, AccountId),
}

struct Conn {
    tx: tokio::sync::mpsc::Sender<Out>,
    shared: Arc<ConnShared>,
    account: Option<AccountId>,
    topics: HashSet<Topic>,
}

/// The fan-out thread's state.
pub struct Hub {
    table: Arc<InstrumentTable>,
    cfg: HubConfig,
    metrics: Arc<WsMetrics>,
    queries: Sender<Query>,
    feed_tx: Sender<Feed>,
    lost: Arc<AtomicBool>,
    active: Arc<AtomicBool>,
    market: Option<Market>,
    /// Queries that found the processor's queue full; retried on the next tick.
    unsent: Vec<Query>,
    conns: HashMap<u64, Conn>,
    streams: HashMap<Key, Stream>,
    /// Book depths with a stream, per symbol.
    depths: Vec<Vec<u32>>,
    /// Accounts with a positions query in flight, and whether another is due after it.
    positions_in_flight: HashMap<AccountId, bool>,
}

fn key_of(t: Topic, account: Option<AccountId>) -> Option<Key> {
    match t {
        Topic::Heartbeat => None,
        Topic::Orders | Topic::Executions | Topic::Positions => {
            account.map(|a| Key::Private(t.channel(), a))
        }
        _ => Some(Key::Public(t)),
    }
}

impl Hub {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        table: Arc<InstrumentTable>,
        cfg: HubConfig,
        metrics: Arc<WsMetrics>,
        queries: Sender<Query>,
        feed_tx: Sender<Feed>,
        lost: Arc<AtomicBool>,
        active: Arc<AtomicBool>,
    ) -> Hub {
        let n = table.len();
        Hub {
            table,
            cfg,
            metrics,
            queries,
            feed_tx,
            lost,
            active,
            market: None,
            unsent: Vec::new(),
            conns: HashMap::new(),
            streams: HashMap::new(),
            depths: vec![Vec::new(); n],
            positions_in_flight: HashMap::new(),
        }
    }

    /// Runs until both queues close.
    ///
    /// Event batches that queued up while the hub was busy are merged into one before they are
    /// rendered (up to [`COALESCE_EVENTS`] events): each stream then gets one update for all of
    /// them, so under load a subscriber receives fewer, larger messages instead of falling
    /// behind; when idle every processor batch goes out on its own, at once.
    pub fn run(mut self, feed: Receiver<Feed>, control: Receiver<Control>) {
        let mut merged: Vec<Event> = Vec::new();
        loop {
            select! {
                recv(feed) -> m => match m {
                    Ok(m) => self.on_feed_merged(m, &feed, &mut merged),
                    Err(_) => break,
                },
                recv(control) -> m => match m {
                    Ok(c) => self.on_control(c),
                    Err(_) => break,
                },
                default(Duration::from_millis(100)) => {}
            }
            self.housekeeping();
        }
    }

    fn housekeeping(&mut self) {
        if self.lost.swap(false, Ordering::AcqRel) && !self.conns.is_empty() {
            self.rebuild();
        }
        if !self.unsent.is_empty() {
            let unsent = std::mem::take(&mut self.unsent);
            for q in unsent {
                self.query(q);
            }
        }
    }

    fn query(&mut self, q: Query) {
        if let Err(e) = self.queries.try_send(q) {
            match e {
                crossbeam_channel::TrySendError::Full(q) => self.unsent.push(q),
                crossbeam_channel::TrySendError::Disconnected(_) => {}
            }
        }
    }

    /// Forgets the market and asks the engine for it again (events wait until it arrives).
    fn rebuild(&mut self) {
        self.market = None;
        self.metrics.rebuilds.fetch_add(1, Ordering::Relaxed);
        let q = market::init_query(
            self.feed_tx.clone(),
            Arc::clone(&self.lost),
            self.cfg.trades_snapshot,
            self.cfg.candle_history,
        );
        self.query(q);
    }

    /// Handles `m` and every event batch already queued behind it as one batch.
    fn on_feed_merged(&mut self, m: Feed, feed: &Receiver<Feed>, merged: &mut Vec<Event>) {
        let Feed::Events { events, at, wall } = m else {
            return self.on_feed(m);
        };
        if feed.is_empty() {
            return self.on_feed(Feed::Events { events, at, wall });
        }
        merged.clear();
        merged.extend_from_slice(&events);
        let mut next = None;
        while merged.len() < COALESCE_EVENTS {
            match feed.try_recv() {
                Ok(Feed::Events { events, .. }) => merged.extend_from_slice(&events),
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        self.metrics
            .coalesced_batches
            .fetch_add(1, Ordering::Relaxed);
        if self.lost.swap(false, Ordering::AcqRel) && !self.conns.is_empty() {
            self.rebuild();
        }
        // `at`/`wall` of the oldest batch: latency counts from the first event merged.
        if self.market.is_some() {
            self.on_events(merged, at, wall);
        }
        if let Some(m) = next {
            self.on_feed(m);
        }
    }

    fn on_feed(&mut self, m: Feed) {
        // A batch was dropped before this one: the mirror would be wrong from here on.
        if self.lost.swap(false, Ordering::AcqRel) && !self.conns.is_empty() {
            self.rebuild();
        }
        match m {
            Feed::Events { events, at, wall } => {
                if self.market.is_some() {
                    self.on_events(&events, at, wall);
                }
            }
            Feed::Init(m) => {
                self.market = Some(*m);
                self.resnapshot_all();
            }
            Feed::Private(p) => self.on_private(*p),
        }
    }

    fn on_control(&mut self, c: Control) {
        match c {
            Control::Register {
                id,
                tx,
                shared,
                account,
            } => {
                if self.conns.is_empty() {
                    self.active.store(true, Ordering::Release);
                    self.rebuild();
                }
                self.conns.insert(
                    id,
                    Conn {
                        tx,
                        shared,
                        account,
                        topics: HashSet::new(),
                    },
                );
            }
            Control::Auth { id, account } => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.account = Some(account);
                }
            }
            Control::Subscribe { id, req, topics } => {
                self.reply_ok(id, "subscribe", req.as_deref());
                for t in topics {
                    self.subscribe(id, t);
                }
            }
            Control::Resync { id, req, topics } => {
                self.reply_ok(id, "resync", req.as_deref());
                for t in topics {
                    self.snapshot_for(id, t);
                }
            }
            Control::Unsubscribe { id, req, topics } => {
                for t in topics {
                    self.unsubscribe(id, t);
                }
                self.reply_ok(id, "unsubscribe", req.as_deref());
            }
            Control::Unregister { id } => self.drop_conn(id),
        }
    }

    fn drop_conn(&mut self, id: u64) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        for t in c.topics {
            self.metrics.subscribed(t.channel(), -1);
            if let Some(k) = key_of(t, c.account) {
                self.leave(k, id);
            }
        }
        if self.conns.is_empty() {
            // Nobody listens: the processor stops sending, the mirror is rebuilt on demand.
            self.active.store(false, Ordering::Release);
            self.market = None;
            self.positions_in_flight.clear();
        }
    }

    fn leave(&mut self, k: Key, id: u64) {
        let Some(s) = self.streams.get_mut(&k) else {
            return;
        };
        s.subs.retain(|c| *c != id);
        s.pending.retain(|c| *c != id);
        if s.subs.is_empty() && s.pending.is_empty() {
            self.streams.remove(&k);
            if let Key::Public(Topic::Book(sym, d)) = k
                && let Some(v) = self.depths.get_mut(sym.0 as usize)
            {
                v.retain(|x| *x != d);
            }
        }
    }

    fn reply_ok(&mut self, id: u64, op: &str, req: Option<&str>) {
        let text = protocol::ok_reply(op, req, "");
        self.send(
            id,
            &Out {
                text: text.into(),
                born: None,
            },
        );
    }

    fn subscribe(&mut self, id: u64, t: Topic) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(k) = key_of(t, c.account) else {
            return;
        };
        if c.topics.insert(t) {
            self.metrics.subscribed(t.channel(), 1);
            let s = self.streams.entry(k).or_default();
            s.subs.push(id);
            if let Key::Public(Topic::Book(sym, d)) = k
                && let Some(v) = self.depths.get_mut(sym.0 as usize)
                && !v.contains(&d)
            {
                v.push(d);
                // A new stream starts from the current book.
                if let Some(m) = &self.market {
                    let view = depth_view(m, sym, d as usize);
                    if let Some(s) = self.streams.get_mut(&k) {
                        s.view = view;
                    }
                }
            }
        }
        self.snapshot_for(id, t);
    }

    fn unsubscribe(&mut self, id: u64, t: Topic) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.topics.remove(&t) {
            self.metrics.subscribed(t.channel(), -1);
            if let Some(k) = key_of(t, c.account) {
                self.leave(k, id);
            }
        }
    }

    /// Sends `id` the snapshot of `t` now, or asks the engine for it (private state).
    fn snapshot_for(&mut self, id: u64, t: Topic) {
        let Some(account) = self.conns.get(&id).map(|c| c.account) else {
            return;
        };
        let Some(k) = key_of(t, account) else { return };
        match (t, account) {
            (Topic::Orders | Topic::Positions, Some(a)) => {
                if let Some(s) = self.streams.get_mut(&k) {
                    s.subs.retain(|c| *c != id);
                    if !s.pending.contains(&id) {
                        s.pending.push(id);
                    }
                }
                let q = market::private_query(
                    self.feed_tx.clone(),
                    Arc::clone(&self.lost),
                    a,
                    t == Topic::Orders,
                    t == Topic::Positions,
                );
                self.query(q);
            }
            _ => {
                if let Some(text) = self.snapshot_text(k) {
                    self.send(
                        id,
                        &Out {
                            text: text.into(),
                            born: None,
                        },
                    );
                }
            }
        }
    }

    /// The snapshot message of a stream served from the mirror (None while it loads).
    fn snapshot_text(&self, k: Key) -> Option<String> {
        let seq = self.streams.get(&k).map_or(0, |s| s.seq);
        let now = data::now_nanos();
        let mut d = String::with_capacity(1024);
        let head = match k {
            Key::Private(Channel::Executions, _) => {
                d.push_str("[]");
                Head {
                    channel: "executions",
                    symbol: None,
                    depth: None,
                    interval: None,
                }
            }
            Key::Public(Topic::Book(sym, depth)) => {
                self.market.as_ref()?;
                let ins = self.table.try_get(sym)?;
                let s = self.streams.get(&k)?;
                self.book_data(&mut d, sym, &s.view.bids, &s.view.asks, Some(&s.view));
                Head {
                    channel: "book",
                    symbol: Some(&ins.symbol),
                    depth: Some(depth),
                    interval: None,
                }
            }
            Key::Public(Topic::Trades(sym)) => {
                let m = self.market.as_ref()?;
                let ins = self.table.try_get(sym)?;
                d.push('[');
                if let Some(q) = m.trades.get(sym.0 as usize) {
                    for (i, t) in q.iter().enumerate() {
                        if i > 0 {
                            d.push(',');
                        }
                        data::event(&mut d, &self.table, &Event::Trade(*t));
                    }
                }
                d.push(']');
                Head {
                    channel: "trades",
                    symbol: Some(&ins.symbol),
                    depth: None,
                    interval: None,
                }
            }
            Key::Public(Topic::Candles(sym, iv)) => {
                let m = self.market.as_ref()?;
                let ins = self.table.try_get(sym)?;
                d.push('[');
                for (i, c) in m.candles(sym, iv).enumerate() {
                    if i > 0 {
                        d.push(',');
                    }
                    data::event(&mut d, &self.table, &Event::Candle(*c));
                }
                d.push(']');
                Head {
                    channel: "candles",
                    symbol: Some(&ins.symbol),
                    depth: None,
                    interval: Some(iv.as_str()),
                }
            }
            _ => return None,
        };
        Some(data::envelope(&head, Kind::Snapshot, seq, now, &d))
    }

    /// `{"bids":[…],"asks":[…][,"checksum":N]}` (snapshots also carry the symbol).
    fn book_data(
        &self,
        d: &mut String,
        sym: SymbolId,
        bids: &[Level],
        asks: &[Level],
        full: Option<&DepthView>,
    ) {
        let Some(ins) = self.table.try_get(sym) else {
            return;
        };
        d.push_str("{\"bids\":");
        book::levels_json(d, ins, bids);
        d.push_str(",\"asks\":");
        book::levels_json(d, ins, asks);
        if let (Some(v), n) = (full, self.cfg.checksum_levels)
            && n > 0
        {
            let _ = std::fmt::Write::write_fmt(
                d,
                format_args!(",\"checksum\":{}", book::checksum(ins, &v.bids, &v.asks, n)),
            );
        }
        d.push('}');
    }

    /// After a (re)load: every subscriber gets a fresh snapshot.
    fn resnapshot_all(&mut self) {
        let keys: Vec<Key> = self.streams.keys().copied().collect();
        let mut accounts: HashMap<AccountId, (bool, bool)> = HashMap::new();
        for k in keys {
            if let Key::Public(Topic::Book(sym, d)) = k
                && let Some(m) = &self.market
            {
                let view = depth_view(m, sym, d as usize);
                if let Some(s) = self.streams.get_mut(&k) {
                    s.view = view;
                }
            }
            match k {
                Key::Private(Channel::Orders, a) => accounts.entry(a).or_default().0 = true,
                Key::Private(Channel::Positions, a) => accounts.entry(a).or_default().1 = true,
                _ => {
                    if let Some(text) = self.snapshot_text(k) {
                        let out = Out {
                            text: text.into(),
                            born: None,
                        };
                        let subs = self.streams.get(&k).map(|s| s.subs.clone());
                        self.fan_out(subs.as_deref().unwrap_or_default(), &out);
                    }
                }
            }
        }
        for (a, (orders, positions)) in accounts {
            for (want, ch) in [(orders, Channel::Orders), (positions, Channel::Positions)] {
                if want && let Some(s) = self.streams.get_mut(&Key::Private(ch, a)) {
                    let subs = std::mem::take(&mut s.subs);
                    s.pending.extend(subs);
                }
            }
            let q = market::private_query(
                self.feed_tx.clone(),
                Arc::clone(&self.lost),
                a,
                orders,
                positions,
            );
            self.query(q);
        }
    }

    fn on_private(&mut self, p: PrivateState) {
        let now = data::now_nanos();
        if let Some(orders) = &p.orders {
            let mut d = String::with_capacity(64 + orders.len() * 600);
            d.push('[');
            for (i, o) in orders.iter().enumerate() {
                if i > 0 {
                    d.push(',');
                }
                data::order(&mut d, &self.table, o);
            }
            d.push(']');
            self.flush_pending(Key::Private(Channel::Orders, p.account), "orders", &d, now);
        }
        if let Some(ps) = &p.positions {
            let mut d = String::with_capacity(256);
            data::positions(&mut d, &self.table, ps);
            let k = Key::Private(Channel::Positions, p.account);
            let fills_pending = self.positions_in_flight.remove(&p.account);
            // An answer to fills is an update for the current subscribers.
            if fills_pending.is_some()
                && let Some(s) = self.streams.get_mut(&k)
                && !s.subs.is_empty()
            {
                s.seq += 1;
                let head = private_head("positions");
                let text = data::envelope(&head, Kind::Update, s.seq, now, &d);
                let subs = s.subs.clone();
                self.fan_out(
                    &subs,
                    &Out {
                        text: text.into(),
                        born: None,
                    },
                );
            }
            self.flush_pending(k, "positions", &d, now);
            if fills_pending == Some(true) {
                self.positions_after_fill(p.account);
            }
        }
    }

    /// Sends the waiting subscribers of a private stream their snapshot.
    fn flush_pending(&mut self, k: Key, channel: &'static str, d: &str, now: u64) {
        let Some(s) = self.streams.get_mut(&k) else {
            return;
        };
        if s.pending.is_empty() {
            return;
        }
        let text = data::envelope(&private_head(channel), Kind::Snapshot, s.seq, now, d);
        let pending = std::mem::take(&mut s.pending);
        s.subs.extend(pending.iter().copied());
        self.fan_out(
            &pending,
            &Out {
                text: text.into(),
                born: None,
            },
        );
    }

    /// Fills changed the account's positions: ask for them (one query in flight each).
    fn positions_after_fill(&mut self, a: AccountId) {
        match self.positions_in_flight.get_mut(&a) {
            Some(again) => *again = true,
            None => {
                self.positions_in_flight.insert(a, false);
                let q = market::private_query(
                    self.feed_tx.clone(),
                    Arc::clone(&self.lost),
                    a,
                    false,
                    true,
                );
                self.query(q);
            }
        }
    }

    fn on_events(&mut self, events: &[Event], at: Instant, wall: u64) {
        let mut bufs: Vec<(Key, String)> = Vec::new();
        let mut touched: Vec<SymbolId> = Vec::new();
        let mut candles: Vec<Candle> = Vec::new();
        let mut fills: Vec<AccountId> = Vec::new();
        let Some(m) = self.market.as_mut() else {
            return;
        };
        let streams = &self.streams;
        let table = &self.table;
        let mut push = |k: Key, render: &dyn Fn(&mut String)| {
            if streams.get(&k).is_none_or(|s| s.subs.is_empty()) {
                return;
            }
            let i = match bufs.iter().position(|(bk, _)| *bk == k) {
                Some(i) => {
                    bufs[i].1.push(',');
                    i
                }
                None => {
                    bufs.push((k, String::from("[")));
                    bufs.len() - 1
                }
            };
            render(&mut bufs[i].1);
        };
        for e in events {
            match e {
                Event::OrderUpdate { order, .. } => {
                    if let Some(b) = m.books.get_mut(order.symbol.0 as usize) {
                        b.on_order(order);
                        if !touched.contains(&order.symbol) {
                            touched.push(order.symbol);
                        }
                    }
                    push(Key::Private(Channel::Orders, order.account), &|s| {
                        data::order(s, table, order)
                    });
                }
                Event::Execution(x) => {
                    push(Key::Private(Channel::Executions, x.account), &|s| {
                        data::event(s, table, e)
                    });
                    if !fills.contains(&x.account) {
                        fills.push(x.account);
                    }
                }
                Event::Trade(t) => {
                    m.on_trade(t);
                    push(Key::Public(Topic::Trades(t.symbol)), &|s| {
                        data::event(s, table, e)
                    });
                }
                Event::Candle(c)
                    if m.on_candle(c)
                        && streams
                            .get(&Key::Public(Topic::Candles(c.symbol, c.interval)))
                            .is_some_and(|s| !s.subs.is_empty()) =>
                {
                    // Only the last state of each candle in the batch is sent.
                    match candles.iter_mut().find(|k| {
                        (k.symbol, k.interval, k.open_time) == (c.symbol, c.interval, c.open_time)
                    }) {
                        Some(k) => *k = *c,
                        None => candles.push(*c),
                    }
                }
                _ => {}
            }
        }
        for c in &candles {
            push(Key::Public(Topic::Candles(c.symbol, c.interval)), &|s| {
                data::event(s, table, &Event::Candle(*c))
            });
        }
        for (k, mut d) in bufs {
            d.push(']');
            self.publish(k, &d, at, wall);
        }
        for sym in touched {
            self.book_updates(sym, at, wall);
        }
        for a in fills {
            if self
                .streams
                .get(&Key::Private(Channel::Positions, a))
                .is_some_and(|s| !s.subs.is_empty())
            {
                self.positions_after_fill(a);
            }
        }
    }

    /// Renders one update of a stream (next seq) and offers it to its subscribers.
    fn publish(&mut self, k: Key, d: &str, at: Instant, wall: u64) {
        let Some(s) = self.streams.get_mut(&k) else {
            return;
        };
        s.seq += 1;
        let seq = s.seq;
        let text = match k {
            Key::Private(ch, _) => {
                data::envelope(&private_head(ch.as_str()), Kind::Update, seq, wall, d)
            }
            Key::Public(t) => {
                let (sym, interval) = match t {
                    Topic::Trades(sym) => (sym, None),
                    Topic::Candles(sym, i) => (sym, Some(i.as_str())),
                    _ => return,
                };
                let Some(ins) = self.table.try_get(sym) else {
                    return;
                };
                let head = Head {
                    channel: t.channel().as_str(),
                    symbol: Some(&ins.symbol),
                    depth: None,
                    interval,
                };
                data::envelope(&head, Kind::Update, seq, wall, d)
            }
        };
        let subs = self
            .streams
            .get(&k)
            .map(|s| s.subs.clone())
            .unwrap_or_default();
        self.fan_out(
            &subs,
            &Out {
                text: text.into(),
                born: Some(at),
            },
        );
    }

    /// The changes of each subscribed depth of `sym`'s book.
    fn book_updates(&mut self, sym: SymbolId, at: Instant, wall: u64) {
        let Some(depths) = self.depths.get(sym.0 as usize).cloned() else {
            return;
        };
        let mut changed_bids = Vec::new();
        let mut changed_asks = Vec::new();
        for depth in depths {
            let k = Key::Public(Topic::Book(sym, depth));
            let Some(m) = &self.market else { return };
            let view = depth_view(m, sym, depth as usize);
            let Some(s) = self.streams.get(&k) else {
                continue;
            };
            book::diff(&s.view.bids, &view.bids, &mut changed_bids);
            book::diff(&s.view.asks, &view.asks, &mut changed_asks);
            if changed_bids.is_empty() && changed_asks.is_empty() {
                continue;
            }
            let mut d = String::with_capacity(256);
            self.book_data(&mut d, sym, &changed_bids, &changed_asks, Some(&view));
            let Some(ins) = self.table.try_get(sym) else {
                return;
            };
            let Some(s) = self.streams.get_mut(&k) else {
                continue;
            };
            s.seq += 1;
            s.view = view;
            let head = Head {
                channel: "book",
                symbol: Some(&ins.symbol),
                depth: Some(depth),
                interval: None,
            };
            let text = data::envelope(&head, Kind::Update, s.seq, wall, &d);
            let subs = s.subs.clone();
            self.fan_out(
                &subs,
                &Out {
                    text: text.into(),
                    born: Some(at),
                },
            );
        }
    }

    fn send(&mut self, id: u64, out: &Out) {
        self.fan_out(&[id], out);
    }

    /// Offers `out` to each connection; a full queue closes that connection (1008).
    fn fan_out(&mut self, ids: &[u64], out: &Out) {
        let mut slow: Vec<u64> = Vec::new();
        for id in ids {
            if let Some(c) = self.conns.get(id) {
                match c.tx.try_send(out.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => slow.push(*id),
                    Err(TrySendError::Closed(_)) => {}
                }
            }
        }
        for id in slow {
            if let Some(c) = self.conns.get(&id) {
                c.shared.kill(format!(
                    "slow consumer: outbound queue full ({} messages)",
                    c.tx.max_capacity()
                ));
                self.metrics.closed(CloseReason::SlowConsumer);
            }
            self.drop_conn(id);
        }
    }
}

fn private_head(channel: &'static str) -> Head<'static> {
    Head {
        channel,
        symbol: None,
        depth: None,
        interval: None,
    }
}

fn depth_view(m: &Market, sym: SymbolId, depth: usize) -> DepthView {
    let mut v = DepthView::default();
    if let Some(b) = m.books.get(sym.0 as usize) {
        b.top(Side::Buy, depth, &mut v.bids);
        b.top(Side::Sell, depth, &mut v.asks);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_core::{Engine, EngineConfig, OrderId, Price, Qty, Trade};
    use serde_json::Value;

    fn trade(id: u64) -> Event {
        Event::Trade(Trade {
            trade_id: id,
            symbol: SymbolId(0),
            price: Price(100_000 + id as i64),
            qty: Qty(1),
            aggressor: Side::Buy,
            maker_order_id: OrderId(u128::from(id) * 2),
            taker_order_id: OrderId(u128::from(id) * 2 + 1),
            ts: id,
        })
    }

    fn events(ts: &[u64]) -> Feed {
        Feed::Events {
            events: ts.iter().map(|t| trade(*t)).collect(),
            at: Instant::now(),
            wall: 0,
        }
    }

    fn drain(rx: &mut tokio::sync::mpsc::Receiver<Out>) -> Vec<Value> {
        let mut v = Vec::new();
        while let Ok(o) = rx.try_recv() {
            v.push(serde_json::from_str(o.text.as_str()).expect("json"));
        }
        v
    }

    fn trade_ids(m: &Value) -> Vec<u64> {
        m["data"]
            .as_array()
            .expect("array")
            .iter()
            .map(|t| {
                t["tradeId"]
                    .as_u64()
                    .or_else(|| t["tradeId"].as_str()?.parse().ok())
                    .expect("tradeId")
            })
            .collect()
    }

    #[test]
    fn batches_queued_behind_each_other_go_out_as_one_update_per_stream() {
        let table = Arc::new(InstrumentTable::demo());
        let engine = Engine::new((*table).clone(), EngineConfig::default());
        let (feed_tx, feed_rx) = crossbeam_channel::unbounded();
        let (q_tx, _q_rx) = crossbeam_channel::unbounded();
        let metrics = Arc::new(WsMetrics::default());
        let mut hub = Hub::new(
            Arc::clone(&table),
            HubConfig {
                trades_snapshot: 50,
                candle_history: 10,
                checksum_levels: 0,
            },
            Arc::clone(&metrics),
            q_tx,
            feed_tx.clone(),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        hub.on_control(Control::Register {
            id: 1,
            tx,
            shared: Arc::new(ConnShared::new()),
            account: None,
        });
        hub.on_feed(Feed::Init(Box::new(Market::capture(&engine, 50, 10))));
        hub.on_control(Control::Subscribe {
            id: 1,
            req: None,
            topics: vec![Topic::Trades(SymbolId(0))],
        });
        let first = drain(&mut rx);
        let snapshot = first.last().expect("snapshot");
        assert_eq!(snapshot["type"], "snapshot");
        let seq0 = snapshot["seq"].as_u64().expect("seq");

        // Three processor batches queued while the hub was busy: one update holds them all.
        let mut merged = Vec::new();
        feed_tx.send(events(&[1, 2])).expect("send");
        feed_tx.send(events(&[3])).expect("send");
        feed_tx.send(events(&[4])).expect("send");
        let m = feed_rx.try_recv().expect("queued");
        hub.on_feed_merged(m, &feed_rx, &mut merged);
        let out = drain(&mut rx);
        assert_eq!(out.len(), 1, "one message for the merged batches: {out:?}");
        assert_eq!(out[0]["type"], "update");
        assert_eq!(out[0]["seq"].as_u64(), Some(seq0 + 1));
        assert_eq!(trade_ids(&out[0]), vec![1, 2, 3, 4]);
        assert_eq!(metrics.coalesced_batches.load(Ordering::Relaxed), 1);
        assert!(feed_rx.is_empty());

        // Idle: a lone batch goes out on its own, next seq, nothing merged.
        feed_tx.send(events(&[5])).expect("send");
        let m = feed_rx.try_recv().expect("queued");
        hub.on_feed_merged(m, &feed_rx, &mut merged);
        let out = drain(&mut rx);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["seq"].as_u64(), Some(seq0 + 2));
        assert_eq!(trade_ids(&out[0]), vec![5]);
        assert_eq!(metrics.coalesced_batches.load(Ordering::Relaxed), 1);
    }
}

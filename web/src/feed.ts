// The live feed over /ws (ARCHITECTURE.md §5): one connection, auth, subscriptions, a seq
// check per stream with resync on a gap, and automatic reconnect with backoff. Messages are
// queued as they arrive and applied once per animation frame, so a burst of events costs one
// render per panel per frame. After a reconnect every stream starts over from a snapshot and
// the account's REST state is fetched again, so nothing missed while offline stays missing.

import { api, getSession } from "./api";
import { store } from "./store";
import {
  Envelope,
  Order,
  Position,
  toCandle,
  toFill,
  toLevels,
  toOrder,
  toTrade,
} from "./types";

type Obj = Record<string, unknown>;

const PING_EVERY_MS = 10_000;
const SILENCE_LIMIT_MS = 20_000;
const BACKOFF_MS = [250, 500, 1000, 2000, 3000];

function asList(data: unknown, key: string): Obj[] {
  if (Array.isArray(data)) return data as Obj[];
  if (data && typeof data === "object") {
    const inner = (data as Obj)[key];
    if (Array.isArray(inner)) return inner as Obj[];
    return [data as Obj];
  }
  return [];
}

export class Feed {
  private ws: WebSocket | null = null;
  private attempt = 0;
  private nextId = 1;
  private queue: Envelope[] = [];
  private raf = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private seqs = new Map<string, number>();
  private awaitingSnapshot = new Set<string>();
  private lastMessage = 0;
  private watchdog: ReturnType<typeof setInterval> | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  /** Resync requests sent (a gap was seen). */
  resyncs = 0;
  private symbol = store.symbol;
  private interval = store.interval;

  start(): void {
    this.stopped = false;
    this.connect();
    this.watchdog = setInterval(() => this.checkAlive(), 2_000);
  }

  stop(): void {
    this.stopped = true;
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.ws?.close(1000, "logout");
    this.ws = null;
  }

  /** Switches the market streams to another symbol or candle interval. */
  setMarket(symbol: string, interval: string): void {
    const old = this.marketArgs();
    this.symbol = symbol;
    this.interval = interval;
    store.symbol = symbol;
    store.interval = interval;
    store.setBook([], []);
    store.setTrades([]);
    store.setCandles([]);
    store.touch("symbols");
    store.flush();
    for (const a of old) this.forget(String(a.channel), a.symbol);
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.send({ op: "unsubscribe", args: old });
      this.send({ op: "subscribe", args: this.marketArgs() });
    }
    void this.loadMarketHistory();
  }

  private marketArgs(): Obj[] {
    return [
      { channel: "book", symbol: this.symbol, depth: 50 },
      { channel: "trades", symbol: this.symbol },
      { channel: "candles", symbol: this.symbol, interval: this.interval },
    ];
  }

  private connect(): void {
    if (this.stopped) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    this.ws = ws;
    store.setConn(this.attempt === 0 ? "connecting" : "reconnecting", this.attempt ? `attempt ${this.attempt}` : "");
    ws.onopen = () => {
      this.lastMessage = Date.now();
      this.seqs.clear();
      this.awaitingSnapshot.clear();
      const s = getSession();
      if (s?.mode === "jwt") this.send({ op: "auth", token: s.value });
      else if (s?.mode === "dev") this.send({ op: "auth", account: s.value });
      this.send({
        op: "subscribe",
        args: [...this.marketArgs(), { channel: "orders" }, { channel: "executions" }, { channel: "positions" }],
      });
      void this.loadAll();
    };
    ws.onmessage = (ev) => {
      this.lastMessage = Date.now();
      let msg: Envelope;
      try {
        msg = JSON.parse(typeof ev.data === "string" ? ev.data : "");
      } catch {
        return;
      }
      if (msg.op) this.onReply(msg);
      else {
        this.queue.push(msg);
        this.schedule();
      }
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) {
        store.setConn("offline", "signed out");
        return;
      }
      const wait = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt += 1;
      store.setConn("reconnecting", ev.reason ? `closed: ${ev.reason}` : `retry in ${wait} ms`);
      this.reconnectTimer = setTimeout(() => this.connect(), wait);
    };
    ws.onerror = () => {
      /* onclose follows and schedules the reconnect */
    };
  }

  private checkAlive(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const quiet = Date.now() - this.lastMessage;
    if (quiet > SILENCE_LIMIT_MS) ws.close(4000, "no message from the server");
    else if (quiet > PING_EVERY_MS) this.send({ op: "ping" });
  }

  private send(m: Obj): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ id: this.nextId++, ...m }));
  }

  private onReply(m: Envelope): void {
    if (m.ok === false && m.error) {
      store.setConn(store.conn === "live" ? "live" : "connecting", `${m.op}: ${m.error.code}`);
      return;
    }
    if (m.op === "subscribe" && m.ok) {
      this.attempt = 0;
      store.setConn("live");
    }
  }

  private schedule(): void {
    if (this.raf) return;
    this.raf = requestAnimationFrame(() => this.flush());
    // A hidden tab gets no animation frames: apply the queue on a timer then.
    this.timer = setTimeout(() => this.flush(), 250);
  }

  private flush(): void {
    if (this.raf) cancelAnimationFrame(this.raf);
    if (this.timer) clearTimeout(this.timer);
    this.raf = 0;
    this.timer = null;
    const batch = this.queue;
    this.queue = [];
    for (const m of batch) this.apply(m);
    store.messages += batch.length;
    if (store.conn !== "live" && batch.length > 0) store.setConn("live");
    store.flush();
  }

  /** Test hook: shifts the last seen seq of a stream, as if messages had been lost. */
  skewSeq(channel: string, symbol: string | undefined, delta: number): void {
    const k = this.key(channel, symbol);
    const last = this.seqs.get(k);
    if (last !== undefined) this.seqs.set(k, last + delta);
  }

  private key(channel: string, symbol?: string): string {
    return `${channel}|${symbol ?? ""}`;
  }

  private forget(channel: string, symbol?: unknown): void {
    const k = this.key(channel, symbol as string | undefined);
    this.seqs.delete(k);
    this.awaitingSnapshot.delete(k);
  }

  /** False when the message must be dropped (a gap was found, or a resync is pending). */
  private inSequence(m: Envelope): boolean {
    if (typeof m.seq !== "number") return true;
    const k = this.key(m.channel, m.symbol);
    if (m.type === "snapshot") {
      this.awaitingSnapshot.delete(k);
      this.seqs.set(k, m.seq);
      return true;
    }
    if (this.awaitingSnapshot.has(k)) return false;
    const last = this.seqs.get(k);
    if (last !== undefined && m.seq !== last + 1) {
      this.awaitingSnapshot.add(k);
      this.seqs.delete(k);
      this.resyncs += 1;
      const arg = this.marketArgs().find((a) => a.channel === m.channel);
      this.send({ op: "resync", ...(arg ?? { channel: m.channel }) });
      if (!m.symbol) this.refreshAccount(0);
      return false;
    }
    this.seqs.set(k, m.seq);
    return true;
  }

  private apply(m: Envelope): void {
    if (m.channel === "heartbeat") return;
    const market = m.channel === "book" || m.channel === "trades" || m.channel === "candles";
    if (market && m.symbol && m.symbol !== this.symbol) return;
    if (m.channel === "candles") {
      const iv = (m.data as Obj | undefined)?.interval ?? (m as unknown as Obj).interval;
      if (iv && iv !== this.interval) return;
    }
    if (!this.inSequence(m)) return;
    const data = m.data;
    switch (m.channel) {
      case "book": {
        const d = (data ?? {}) as Obj;
        if (m.type === "snapshot") store.setBook(toLevels(d.bids), toLevels(d.asks));
        else {
          if (d.bids) store.updateBook("bids", toLevels(d.bids));
          if (d.asks) store.updateBook("asks", toLevels(d.asks));
          for (const c of asList(d.changes, "changes")) {
            const side = String(c.side).toUpperCase() === "BUY" || c.side === "bid" ? "bids" : "asks";
            store.updateBook(side, toLevels([c]));
          }
        }
        break;
      }
      case "trades": {
        const list = asList(data, "trades").map(toTrade);
        if (m.type === "snapshot") store.setTrades(list);
        else for (const t of list) store.addTrade(t);
        break;
      }
      case "candles": {
        const list = asList(data, "candles").map(toCandle);
        // History (snapshot) merges with what REST gave: same bucket → the newer values.
        if (m.type === "snapshot") store.setCandles([...store.candles, ...list]);
        else for (const c of list) store.upsertCandle(c);
        break;
      }
      case "orders":
        for (const o of asList(data, "orders")) store.upsertOrder(toOrder(o) as Order);
        this.refreshAccount();
        break;
      case "executions":
        for (const e of asList(data, "executions")) store.addFill(toFill(e));
        this.refreshAccount();
        break;
      case "positions":
        for (const p of asList(data, "positions")) if (p.symbol) store.upsertPosition(p as unknown as Position);
        this.refreshAccount();
        break;
    }
  }

  /** Margin and positions follow fills: fetched once after a burst of private events. */
  private refreshAccount(delay = 150): void {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(async () => {
      this.refreshTimer = null;
      try {
        const [a, ps] = await Promise.all([api.account(), api.positions()]);
        store.setAccount(a);
        store.setPositions(ps);
        store.flush();
      } catch {
        /* offline: the reconnect reloads it */
      }
    }, delay);
  }

  private async loadMarketHistory(): Promise<void> {
    const symbol = this.symbol;
    const interval = this.interval;
    const [candles, trades] = await Promise.allSettled([api.candles(symbol, interval), api.trades(symbol)]);
    if (symbol !== this.symbol || interval !== this.interval) return;
    if (candles.status === "fulfilled") {
      // Keep a forming candle the feed may already have delivered.
      const live = store.candles;
      store.setCandles([...candles.value, ...live]);
    }
    if (trades.status === "fulfilled" && store.trades.length === 0) store.setTrades(trades.value);
    store.flush();
  }

  /** Everything the page shows, fetched again after (re)connecting. */
  private async loadAll(): Promise<void> {
    const [orders, positions, account] = await Promise.allSettled([api.orders(), api.positions(), api.account()]);
    if (orders.status === "fulfilled") store.setOrders(orders.value);
    if (positions.status === "fulfilled") store.setPositions(positions.value);
    if (account.status === "fulfilled") store.setAccount(account.value);
    store.flush();
    await this.loadMarketHistory();
  }
}

export const feed = new Feed();

// The page's state, kept outside React: the feed applies a whole animation frame of messages
// to it and then bumps each touched slice's version once, so React renders at most once per
// frame per panel however many events arrived (1,000/s becomes ~60 renders/s).

import { useSyncExternalStore } from "react";
import {
  Account,
  Candle,
  Fill,
  Level,
  OPEN_STATUSES,
  Order,
  Position,
  SymbolInfo,
  Trade,
  isZero,
} from "./types";

export type ConnState = "connecting" | "live" | "reconnecting" | "offline";
export type Slice = "conn" | "book" | "trades" | "orders" | "fills" | "positions" | "account" | "candles" | "symbols";

const MAX_TRADES = 100;
const MAX_FILLS = 200;
const MAX_CLOSED = 100;

export class Store {
  conn: ConnState = "connecting";
  connDetail = "";
  symbols: SymbolInfo[] = [];
  symbol = "BTC/USD";
  interval = "1m";
  bids = new Map<string, Level>();
  asks = new Map<string, Level>();
  trades: Trade[] = [];
  orders = new Map<string, Order>();
  fills: Fill[] = [];
  fillIds = new Set<string>();
  positions = new Map<string, Position>();
  account: Account | null = null;
  candles: Candle[] = [];
  /** Messages applied since load (for the perf figures). */
  messages = 0;

  private versions = new Map<Slice, number>();
  private listeners = new Map<Slice, Set<() => void>>();
  private dirty = new Set<Slice>();

  touch(s: Slice): void {
    this.dirty.add(s);
  }

  /** Publishes every slice touched since the last flush. */
  flush(): void {
    if (this.dirty.size === 0) return;
    const touched = [...this.dirty];
    this.dirty.clear();
    for (const s of touched) {
      this.versions.set(s, (this.versions.get(s) ?? 0) + 1);
      this.listeners.get(s)?.forEach((l) => l());
    }
  }

  subscribe(s: Slice, l: () => void): () => void {
    let set = this.listeners.get(s);
    if (!set) this.listeners.set(s, (set = new Set()));
    set.add(l);
    return () => set.delete(l);
  }

  version(s: Slice): number {
    return this.versions.get(s) ?? 0;
  }

  // ---- book
  setBook(bids: Level[], asks: Level[]): void {
    this.bids = new Map(bids.filter((l) => !isZero(l.quantity)).map((l) => [l.price, l]));
    this.asks = new Map(asks.filter((l) => !isZero(l.quantity)).map((l) => [l.price, l]));
    this.touch("book");
  }

  updateBook(side: "bids" | "asks", levels: Level[]): void {
    const m = side === "bids" ? this.bids : this.asks;
    for (const l of levels) {
      if (isZero(l.quantity)) m.delete(l.price);
      else m.set(l.price, l);
    }
    this.touch("book");
  }

  /** Best first, at most `depth` levels. */
  topLevels(side: "bids" | "asks", depth: number): Level[] {
    const m = side === "bids" ? this.bids : this.asks;
    const levels = [...m.values()];
    levels.sort((a, b) => (side === "bids" ? Number(b.price) - Number(a.price) : Number(a.price) - Number(b.price)));
    return levels.slice(0, depth);
  }

  // ---- trades
  setTrades(ts: Trade[]): void {
    this.trades = ts.slice(0, MAX_TRADES);
    this.touch("trades");
  }

  addTrade(t: Trade): void {
    this.trades.unshift(t);
    if (this.trades.length > MAX_TRADES) this.trades.length = MAX_TRADES;
    this.touch("trades");
  }

  // ---- orders
  /** Keeps the newest version of each order (REST answers and WS updates may race). */
  upsertOrder(o: Order): void {
    if (!o || !o.orderId) return;
    const prev = this.orders.get(o.orderId);
    if (prev && (prev.version ?? 0) > (o.version ?? 0)) return;
    this.orders.set(o.orderId, { ...prev, ...o });
    this.trimClosed();
    this.touch("orders");
  }

  setOrders(list: Order[]): void {
    this.orders.clear();
    for (const o of list) this.orders.set(o.orderId, o);
    this.trimClosed();
    this.touch("orders");
  }

  private trimClosed(): void {
    const closed = [...this.orders.values()].filter((o) => !OPEN_STATUSES.has(o.status));
    if (closed.length <= MAX_CLOSED) return;
    closed.sort((a, b) => a.updatedAt.localeCompare(b.updatedAt));
    for (const o of closed.slice(0, closed.length - MAX_CLOSED)) this.orders.delete(o.orderId);
  }

  openOrders(): Order[] {
    return [...this.orders.values()]
      .filter((o) => OPEN_STATUSES.has(o.status))
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  closedOrders(): Order[] {
    return [...this.orders.values()]
      .filter((o) => !OPEN_STATUSES.has(o.status))
      .sort((a, b) => b.updatedAt.localeCompare(a.updatedAt));
  }

  // ---- fills
  addFill(f: Fill): void {
    if (this.fillIds.has(f.id)) return;
    this.fillIds.add(f.id);
    this.fills.unshift(f);
    if (this.fills.length > MAX_FILLS) {
      const gone = this.fills.pop();
      if (gone) this.fillIds.delete(gone.id);
    }
    this.touch("fills");
  }

  // ---- positions and account
  setPositions(ps: Position[]): void {
    this.positions = new Map(ps.map((p) => [p.symbol, p]));
    this.touch("positions");
  }

  upsertPosition(p: Position): void {
    this.positions.set(p.symbol, { ...this.positions.get(p.symbol), ...p });
    this.touch("positions");
  }

  setAccount(a: Account): void {
    this.account = a;
    this.touch("account");
  }

  // ---- candles
  setCandles(cs: Candle[]): void {
    const byTime = new Map<number, Candle>();
    for (const c of cs) byTime.set(c.time, c);
    this.candles = [...byTime.values()].sort((a, b) => a.time - b.time);
    this.touch("candles");
  }

  /** The forming candle (or a new one). Older buckets than the last are replaced in place. */
  upsertCandle(c: Candle): void {
    const last = this.candles[this.candles.length - 1];
    if (!last || c.time > last.time) this.candles.push(c);
    else if (c.time === last.time) this.candles[this.candles.length - 1] = c;
    else {
      const i = this.candles.findIndex((x) => x.time === c.time);
      if (i >= 0) this.candles[i] = c;
    }
    this.touch("candles");
  }

  setConn(s: ConnState, detail = ""): void {
    if (this.conn === s && this.connDetail === detail) return;
    this.conn = s;
    this.connDetail = detail;
    this.touch("conn");
    this.flush();
  }
}

export const store = new Store();

/** Re-renders the caller when `slice` changes (at most once per animation frame). */
export function useSlice(slice: Slice): number {
  return useSyncExternalStore(
    (l) => store.subscribe(slice, l),
    () => store.version(slice),
  );
}

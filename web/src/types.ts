// Wire types of the oms REST API and the /ws envelope (docs/api.md, ARCHITECTURE.md §5).
// Decimals arrive as strings and are kept as strings for display: money is never
// computed with floats here; only the chart converts prices to numbers for drawing.

export type Side = "BUY" | "SELL";
export type OrderType = "LIMIT" | "MARKET";
export type Tif = "GTC" | "IOC" | "FOK";

export interface SymbolInfo {
  symbol: string;
  base: string;
  quote: string;
  tickSize: string;
  lotSize: string;
  minQty: string;
  lastPrice: string | null;
  referencePrice: string;
}

export interface Order {
  orderId: string;
  clientOrderId: string | null;
  symbol: string;
  side: Side;
  orderType: OrderType;
  timeInForce: Tif;
  postOnly: boolean;
  quantity: string;
  price: string | null;
  status: string;
  filledQuantity: string;
  avgFillPrice: string | null;
  createdAt: string;
  updatedAt: string;
  version: number;
  rejectReason: string | null;
}

export interface Fill {
  id: string;
  orderId: string;
  symbol: string;
  side: Side;
  price: string;
  quantity: string;
  liquidity: string;
  timestamp: string;
}

export interface Trade {
  tradeId: string;
  price: string;
  quantity: string;
  side: Side;
  timestamp: string;
}

export interface Level {
  price: string;
  quantity: string;
  orders?: number;
}

export interface Candle {
  /** Bucket start, seconds since the epoch (what the chart wants). */
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
}

export interface Position {
  symbol: string;
  quantity: string;
  avgEntryPrice: string | null;
  realizedPnl: string;
  unrealizedPnl: string | null;
}

export interface Account {
  account: string;
  currency: string;
  equity: string;
  realizedPnl: string;
  usedMargin: string;
  reservedMargin: string;
  availableMargin: string;
  openOrders: number;
  halted: boolean;
}

/** Server → client message (§5). */
export interface Envelope {
  channel: string;
  symbol?: string;
  type?: "snapshot" | "update";
  seq?: number;
  ts?: string;
  data?: unknown;
  // replies to ops
  op?: string;
  id?: number;
  ok?: boolean;
  error?: { code: string; message?: string };
}

export const OPEN_STATUSES = new Set(["NEW", "ACCEPTED", "PARTIALLY_FILLED"]);

/** RFC 3339 with microseconds → seconds since the epoch. */
export function rfcSeconds(s: string | number): number {
  if (typeof s === "number") return s > 1e12 ? Math.floor(s / 1000) : s;
  const ms = Date.parse(s.replace(/\.(\d{3})\d*Z$/, ".$1Z"));
  return Math.floor(ms / 1000);
}

type Obj = Record<string, unknown>;
const str = (v: unknown): string => (v === null || v === undefined ? "" : String(v));

export function toCandle(c: Obj): Candle {
  return {
    time: rfcSeconds(c.openTime as string),
    open: Number(c.open),
    high: Number(c.high),
    low: Number(c.low),
    close: Number(c.close),
    volume: Number(c.volume),
  };
}

export function toTrade(t: Obj): Trade {
  return {
    tradeId: str(t.tradeId),
    price: str(t.price),
    quantity: str(t.quantity),
    side: (t.side ?? t.aggressorSide ?? t.aggressor) as Side,
    timestamp: str(t.timestamp ?? t.ts),
  };
}

/** An order update may carry the order itself or wrap it as `{order: …}`. */
export function toOrder(o: Obj): Order {
  const inner = (o.order && typeof o.order === "object" ? o.order : o) as Obj;
  return inner as unknown as Order;
}

export function toFill(e: Obj): Fill {
  return {
    id: str(e.execId ?? e.tradeId ?? `${e.orderId}-${e.timestamp}`),
    orderId: str(e.orderId),
    symbol: str(e.symbol),
    side: e.side as Side,
    price: str(e.lastPx ?? e.price),
    quantity: str(e.lastQty ?? e.quantity),
    liquidity: str(e.liquidity),
    timestamp: str(e.timestamp ?? e.ts),
  };
}

export function toLevels(v: unknown): Level[] {
  if (!Array.isArray(v)) return [];
  return v.map((l) =>
    Array.isArray(l)
      ? { price: str(l[0]), quantity: str(l[1]) }
      : { price: str((l as Obj).price), quantity: str((l as Obj).quantity), orders: (l as Obj).orders as number },
  );
}

/** True for "0", "0.000", "" — a removed book level. */
export function isZero(q: string): boolean {
  return !/[1-9]/.test(q);
}

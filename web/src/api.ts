// REST calls with the session's identity: `X-Account-Id` in dev mode, `Authorization:
// Bearer` in JWT mode. The token lives in memory and sessionStorage only, never in a URL.

import { Account, Order, Position, SymbolInfo, Trade, toCandle, toTrade, Candle, Level, toLevels } from "./types";

export interface Session {
  mode: "dev" | "jwt";
  /** Account name (dev) or the JWT (jwt). */
  value: string;
}

const KEY = "oms.session";

export function loadSession(): Session | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

export function saveSession(s: Session | null): void {
  try {
    if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
    else sessionStorage.removeItem(KEY);
  } catch {
    /* storage disabled: the session stays in memory */
  }
}

let session: Session | null = null;
export function setSession(s: Session | null): void {
  session = s;
}
export function getSession(): Session | null {
  return session;
}

/** The server's error body, kept whole so the page can show its code by field. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public field: string | null,
    public order?: Order,
  ) {
    super(message);
  }
}

function headers(extra?: Record<string, string>): Record<string, string> {
  const h: Record<string, string> = { Accept: "application/json", ...extra };
  if (session?.mode === "dev") h["X-Account-Id"] = session.value;
  if (session?.mode === "jwt") h["Authorization"] = `Bearer ${session.value}`;
  return h;
}

async function call<T>(method: string, path: string, body?: unknown, extra?: Record<string, string>): Promise<T> {
  const init: RequestInit = { method, headers: headers(extra) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  if (!r.ok) {
    const e = json?.error;
    throw new ApiError(r.status, e?.code ?? `HTTP_${r.status}`, e?.message ?? r.statusText, e?.field ?? null, json?.order);
  }
  return json as T;
}

export const pathSymbol = (s: string) => encodeURIComponent(s.replace("/", "-"));

function idempotencyKey(): string {
  if (typeof crypto !== "undefined" && "randomUUID" in crypto) return crypto.randomUUID();
  return `web-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

export interface NewOrder {
  symbol: string;
  side: string;
  orderType: string;
  timeInForce: string;
  quantity: string;
  price?: string;
  postOnly: boolean;
}

export const api = {
  symbols: () => call<{ symbols: SymbolInfo[] }>("GET", "/api/symbols").then((r) => r.symbols),
  account: () => call<Account>("GET", "/api/account"),
  positions: () => call<{ positions: Position[] }>("GET", "/api/positions").then((r) => r.positions),
  orders: async (): Promise<Order[]> => {
    const r = await call<{ orders: Order[] }>("GET", "/api/orders?limit=200");
    return r.orders;
  },
  book: (symbol: string) =>
    call<{ bids: unknown; asks: unknown }>("GET", `/api/book/${pathSymbol(symbol)}?depth=50`).then(
      (r): { bids: Level[]; asks: Level[] } => ({ bids: toLevels(r.bids), asks: toLevels(r.asks) }),
    ),
  trades: (symbol: string) =>
    call<{ trades: Record<string, unknown>[] }>("GET", `/api/trades/${pathSymbol(symbol)}?limit=100`).then(
      (r): Trade[] => r.trades.map(toTrade),
    ),
  candles: (symbol: string, interval: string) =>
    call<{ candles: Record<string, unknown>[] }>(
      "GET",
      `/api/candles/${pathSymbol(symbol)}?interval=${interval}&limit=500`,
    ).then((r): Candle[] => r.candles.map(toCandle)),
  place: (o: NewOrder) => call<Order>("POST", "/api/orders", o, { "X-Idempotency-Key": idempotencyKey() }),
  cancel: (orderId: string) => call<Order>("DELETE", `/api/orders/${encodeURIComponent(orderId)}`),
};

/** Cancels every open order of the account: the venue's cancel-all when it has one, else one by one. */
export async function cancelAll(orderIds: string[]): Promise<{ canceled: number; errors: string[] }> {
  try {
    await call<unknown>("DELETE", "/api/orders");
    return { canceled: orderIds.length, errors: [] };
  } catch (e) {
    if (!(e instanceof ApiError) || (e.status !== 404 && e.status !== 405)) throw e;
  }
  const results = await Promise.allSettled(orderIds.map((id) => api.cancel(id)));
  const errors = results.flatMap((r) => (r.status === "rejected" ? [String((r.reason as ApiError).code ?? r.reason)] : []));
  return { canceled: results.length - errors.length, errors };
}

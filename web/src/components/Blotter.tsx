// The account's side of the page: open orders (cancel, cancel-all), order history, fills,
// positions and margin. All of it is updated from the private /ws channels.

import { useState } from "react";
import { ApiError, api, cancelAll } from "../api";
import { store, useSlice } from "../store";
import { Order } from "../types";

const sideText = (s: string) => (s === "BUY" ? "BUY ▲" : "SELL ▼");

function OrderRow({ o, onCancel }: { o: Order; onCancel?: (o: Order) => void }) {
  return (
    <tr data-order-id={o.orderId} data-status={o.status} className={o.side === "BUY" ? "buy" : "sell"}>
      <td>{o.updatedAt?.slice(11, 19)}</td>
      <td>{o.symbol}</td>
      <td>{sideText(o.side)}</td>
      <td>{o.orderType}{o.postOnly ? " PO" : ""} {o.timeInForce}</td>
      <td>{o.price ?? "MKT"}</td>
      <td>
        {o.filledQuantity}/{o.quantity}
      </td>
      <td className="status">{o.status}{o.rejectReason ? ` (${o.rejectReason})` : ""}</td>
      {onCancel && (
        <td>
          <button type="button" onClick={() => onCancel(o)} aria-label={`Cancel ${o.side} ${o.quantity} ${o.symbol} at ${o.price}`}>
            Cancel
          </button>
        </td>
      )}
    </tr>
  );
}

const HEAD = ["Time", "Symbol", "Side", "Type", "Price", "Filled/Qty", "Status"];

export function Orders() {
  useSlice("orders");
  const [msg, setMsg] = useState("");
  const open = store.openOrders();
  const closed = store.closedOrders().slice(0, 30);

  async function cancel(o: Order) {
    setMsg("");
    try {
      store.upsertOrder(await api.cancel(o.orderId));
      store.flush();
    } catch (e) {
      setMsg(e instanceof ApiError ? `${e.code}: ${e.message}` : String(e));
    }
  }
  async function all() {
    setMsg("");
    try {
      const r = await cancelAll(open.map((o) => o.orderId));
      setMsg(r.errors.length ? `canceled ${r.canceled}, failed: ${r.errors.join(", ")}` : `canceled ${r.canceled}`);
    } catch (e) {
      setMsg(e instanceof ApiError ? `${e.code}: ${e.message}` : String(e));
    }
  }

  return (
    <section className="panel orders" aria-label="Orders">
      <header>
        <h2>Open orders ({open.length})</h2>
        <button type="button" onClick={all} disabled={open.length === 0}>
          Cancel all
        </button>
        <span role="status" className="note">
          {msg}
        </span>
      </header>
      <table data-testid="open-orders">
        <thead>
          <tr>
            {HEAD.map((h) => (
              <th key={h}>{h}</th>
            ))}
            <th>Action</th>
          </tr>
        </thead>
        <tbody>
          {open.map((o) => (
            <OrderRow key={o.orderId} o={o} onCancel={cancel} />
          ))}
        </tbody>
      </table>
      <h2>Order history</h2>
      <table data-testid="order-history">
        <thead>
          <tr>
            {HEAD.map((h) => (
              <th key={h}>{h}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {closed.map((o) => (
            <OrderRow key={o.orderId} o={o} />
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function Fills() {
  useSlice("fills");
  return (
    <section className="panel fills" aria-label="Fills">
      <header>
        <h2>Fills</h2>
      </header>
      <table data-testid="fills">
        <thead>
          <tr>
            <th>Time</th>
            <th>Symbol</th>
            <th>Side</th>
            <th>Price</th>
            <th>Qty</th>
            <th>Liquidity</th>
          </tr>
        </thead>
        <tbody>
          {store.fills.slice(0, 50).map((f) => (
            <tr key={f.id} data-order-id={f.orderId} className={f.side === "BUY" ? "buy" : "sell"}>
              <td>{f.timestamp.slice(11, 19)}</td>
              <td>{f.symbol}</td>
              <td>{sideText(f.side)}</td>
              <td>{f.price}</td>
              <td>{f.quantity}</td>
              <td>{f.liquidity}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function Positions() {
  useSlice("positions");
  useSlice("account");
  const a = store.account;
  const ps = [...store.positions.values()].filter((p) => /[1-9]/.test(p.quantity) || /[1-9]/.test(p.realizedPnl ?? ""));
  return (
    <section className="panel positions" aria-label="Positions and margin">
      <header>
        <h2>Positions and margin</h2>
      </header>
      {a && (
        <dl className="account" data-testid="account">
          <dt>Equity</dt>
          <dd>{a.equity}</dd>
          <dt>Available</dt>
          <dd data-testid="available-margin">{a.availableMargin}</dd>
          <dt>Used margin</dt>
          <dd>{a.usedMargin}</dd>
          <dt>Reserved</dt>
          <dd>{a.reservedMargin}</dd>
          <dt>Realized PnL</dt>
          <dd>{a.realizedPnl}</dd>
          {a.halted && (
            <>
              <dt>Trading</dt>
              <dd className="halted">HALTED</dd>
            </>
          )}
        </dl>
      )}
      <table data-testid="positions">
        <thead>
          <tr>
            <th>Symbol</th>
            <th>Position</th>
            <th>Avg entry</th>
            <th>Realized</th>
            <th>Unrealized</th>
          </tr>
        </thead>
        <tbody>
          {ps.map((p) => (
            <tr key={p.symbol} data-symbol={p.symbol}>
              <td>{p.symbol}</td>
              <td className="pos-qty">
                {p.quantity.startsWith("-") ? "SHORT" : /[1-9]/.test(p.quantity) ? "LONG" : "FLAT"} {p.quantity}
              </td>
              <td>{p.avgEntryPrice ?? "—"}</td>
              <td>{p.realizedPnl}</td>
              <td>{p.unrealizedPnl ?? "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

// Order book (depth with cumulative bars and the spread) and the trades tape. Sides are told
// apart by text ("BID"/"ASK", "BUY ▲"/"SELL ▼"), not by colour alone.

import { store, useSlice } from "../store";

const DEPTH = 15;

export function Book({ onPrice }: { onPrice: (p: string) => void }) {
  useSlice("book");
  const bids = store.topLevels("bids", DEPTH);
  const asks = store.topLevels("asks", DEPTH);
  const max = Math.max(1, ...bids.map((l) => Number(l.quantity)), ...asks.map((l) => Number(l.quantity)));
  const bestBid = bids[0]?.price;
  const bestAsk = asks[0]?.price;
  const spread = bestBid && bestAsk ? (Number(bestAsk) - Number(bestBid)).toFixed(Math.max(decimals(bestBid), decimals(bestAsk))) : "—";
  const row = (side: "bid" | "ask") => (l: { price: string; quantity: string; orders?: number }) => (
    <tr key={l.price} className={side}>
      <th scope="row">{side === "bid" ? "BID" : "ASK"}</th>
      <td>
        <button type="button" className="link" onClick={() => onPrice(l.price)} aria-label={`Use price ${l.price}`}>
          {l.price}
        </button>
      </td>
      <td className="qty">
        <span className="bar" style={{ width: `${(Number(l.quantity) / max) * 100}%` }} />
        {l.quantity}
      </td>
    </tr>
  );
  return (
    <section className="panel book" aria-label="Order book">
      <header>
        <h2>Order book</h2>
      </header>
      <table data-testid="book-asks">
        <thead>
          <tr>
            <th>Side</th>
            <th>Price</th>
            <th>Quantity</th>
          </tr>
        </thead>
        <tbody>{[...asks].reverse().map(row("ask"))}</tbody>
      </table>
      <p className="spread" data-testid="spread">
        Spread <strong>{spread}</strong> {bestBid ? `bid ${bestBid}` : ""} {bestAsk ? `ask ${bestAsk}` : ""}
      </p>
      <table data-testid="book-bids">
        <tbody>{bids.map(row("bid"))}</tbody>
      </table>
    </section>
  );
}

function decimals(p: string): number {
  const i = p.indexOf(".");
  return i < 0 ? 0 : p.length - i - 1;
}

export function Tape() {
  useSlice("trades");
  const trades = store.trades.slice(0, 40);
  return (
    <section className="panel tape" aria-label="Trades">
      <header>
        <h2>Trades</h2>
      </header>
      <table data-testid="tape">
        <thead>
          <tr>
            <th>Time</th>
            <th>Side</th>
            <th>Price</th>
            <th>Qty</th>
          </tr>
        </thead>
        <tbody>
          {trades.map((t, i) => (
            <tr key={`${t.tradeId}-${i}`} className={t.side === "BUY" ? "buy" : "sell"}>
              <td>{t.timestamp.slice(11, 19)}</td>
              <td>{t.side === "BUY" ? "BUY ▲" : "SELL ▼"}</td>
              <td>{t.price}</td>
              <td>{t.quantity}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

// The order ticket. The page does not pre-validate numbers: the server's exact decimal
// parsing and risk checks are the rules, and their error code is shown next to the field it
// names (or the field a risk code is about), with aria-invalid on the input.

import { FormEvent, useState } from "react";
import { ApiError, api } from "../api";
import { store } from "../store";
import { OrderType, Side, Tif } from "../types";

const FIELD_OF_CODE: Record<string, string> = {
  PRICE_OUT_OF_BAND: "price",
  INSUFFICIENT_MARGIN: "quantity",
  MAX_NOTIONAL_EXCEEDED: "quantity",
  POSITION_LIMIT_EXCEEDED: "quantity",
};
const FIELDS = ["side", "orderType", "timeInForce", "price", "quantity", "postOnly", "symbol"];

interface Err {
  field: string;
  code: string;
  message: string;
}

export function Ticket({ symbol, price, setPrice }: { symbol: string; price: string; setPrice: (p: string) => void }) {
  const [side, setSide] = useState<Side>("BUY");
  const [type, setType] = useState<OrderType>("LIMIT");
  const [tif, setTif] = useState<Tif>("GTC");
  const [qty, setQty] = useState("");
  const [postOnly, setPostOnly] = useState(false);
  const [err, setErr] = useState<Err | null>(null);
  const [result, setResult] = useState("");
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    setResult("");
    try {
      const o = await api.place({
        symbol,
        side,
        orderType: type,
        timeInForce: type === "MARKET" ? "IOC" : tif,
        quantity: qty.trim(),
        ...(type === "LIMIT" ? { price: price.trim() } : {}),
        postOnly: type === "LIMIT" && postOnly,
      });
      store.upsertOrder(o);
      store.flush();
      setResult(`${o.side} ${o.quantity} ${o.symbol} ${o.status}`);
    } catch (x) {
      if (x instanceof ApiError) {
        const raw = x.field ?? FIELD_OF_CODE[x.code] ?? "form";
        const field = FIELDS.includes(raw) ? raw : raw === "type" ? "orderType" : "form";
        setErr({ field, code: x.code, message: x.message });
        if (x.order) {
          store.upsertOrder(x.order);
          store.flush();
        }
      } else setErr({ field: "form", code: "NETWORK", message: String(x) });
    } finally {
      setBusy(false);
    }
  }

  const errFor = (f: string) =>
    err && err.field === f ? (
      <span className="field-error" id={`err-${f}`} data-testid={`error-${f}`} role="alert">
        <code>{err.code}</code> {err.message}
      </span>
    ) : null;
  const invalid = (f: string) => (err?.field === f ? { "aria-invalid": true, "aria-describedby": `err-${f}` } : {});

  return (
    <section className="panel ticket" aria-label="Order ticket">
      <header>
        <h2>Order ticket · {symbol}</h2>
      </header>
      <form onSubmit={submit} noValidate>
        <fieldset className="sides" {...invalid("side")}>
          <legend>Side</legend>
          <label className={`side buy ${side === "BUY" ? "on" : ""}`}>
            <input type="radio" name="side" value="BUY" checked={side === "BUY"} onChange={() => setSide("BUY")} /> BUY ▲
          </label>
          <label className={`side sell ${side === "SELL" ? "on" : ""}`}>
            <input type="radio" name="side" value="SELL" checked={side === "SELL"} onChange={() => setSide("SELL")} /> SELL ▼
          </label>
          {errFor("side")}
        </fieldset>
        <div className="row">
          <label>
            Type
            <select name="orderType" value={type} onChange={(e) => setType(e.target.value as OrderType)} {...invalid("orderType")}>
              <option value="LIMIT">LIMIT</option>
              <option value="MARKET">MARKET</option>
            </select>
          </label>
          <label>
            Time in force
            <select
              name="timeInForce"
              value={type === "MARKET" ? "IOC" : tif}
              disabled={type === "MARKET"}
              onChange={(e) => setTif(e.target.value as Tif)}
              {...invalid("timeInForce")}
            >
              <option value="GTC">GTC</option>
              <option value="IOC">IOC</option>
              <option value="FOK">FOK</option>
            </select>
          </label>
        </div>
        {errFor("orderType")}
        {errFor("timeInForce")}
        <label>
          Price
          <input
            name="price"
            inputMode="decimal"
            autoComplete="off"
            value={type === "MARKET" ? "" : price}
            disabled={type === "MARKET"}
            placeholder={type === "MARKET" ? "market" : "limit price"}
            onChange={(e) => setPrice(e.target.value)}
            {...invalid("price")}
          />
        </label>
        {errFor("price")}
        <label>
          Quantity
          <input
            name="quantity"
            inputMode="decimal"
            autoComplete="off"
            value={qty}
            placeholder="quantity"
            onChange={(e) => setQty(e.target.value)}
            {...invalid("quantity")}
          />
        </label>
        {errFor("quantity")}
        <label className="check">
          <input
            type="checkbox"
            name="postOnly"
            checked={postOnly && type === "LIMIT"}
            disabled={type === "MARKET"}
            onChange={(e) => setPostOnly(e.target.checked)}
          />
          Post-only
        </label>
        {errFor("postOnly")}
        {errFor("symbol")}
        <button type="submit" className={`submit ${side === "BUY" ? "buy" : "sell"}`} disabled={busy}>
          {side === "BUY" ? "Place BUY ▲" : "Place SELL ▼"}
        </button>
        {errFor("form")}
        <p className="result" role="status" data-testid="ticket-result">
          {result}
        </p>
      </form>
    </section>
  );
}

// The single page: header (symbol, connection, account), chart, book and tape, ticket, and
// the account's orders, fills and positions.

import { useEffect, useState } from "react";
import { Session, api, getSession, saveSession, setSession } from "./api";
import { feed } from "./feed";
import { store, useSlice } from "./store";
import { Chart } from "./components/Chart";
import { Book, Tape } from "./components/Book";
import { Ticket } from "./components/Ticket";
import { Fills, Orders, Positions } from "./components/Blotter";
import { Login } from "./components/Login";

const CONN_TEXT = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", offline: "offline" };

function Status() {
  useSlice("conn");
  return (
    <p className={`conn ${store.conn}`} role="status" aria-live="polite" data-testid="conn" data-state={store.conn}>
      <span aria-hidden="true">●</span> {CONN_TEXT[store.conn]}
      {store.connDetail && <small> {store.connDetail}</small>}
    </p>
  );
}

export function App() {
  const [session, setS] = useState<Session | null>(getSession());
  const [symbol, setSymbol] = useState(store.symbol);
  const [interval, setIv] = useState(store.interval);
  const [price, setPrice] = useState("");
  useSlice("symbols");

  useEffect(() => {
    if (!session) return;
    api
      .symbols()
      .then((s) => {
        store.symbols = s;
        store.touch("symbols");
        store.flush();
      })
      .catch(() => undefined);
    feed.start();
    return () => feed.stop();
  }, [session]);

  function login(s: Session) {
    setSession(s);
    saveSession(s);
    setS(s);
  }
  function logout() {
    setSession(null);
    saveSession(null);
    setS(null);
  }
  function market(sym: string, iv: string) {
    setSymbol(sym);
    setIv(iv);
    setPrice("");
    feed.setMarket(sym, iv);
  }

  if (!session) return <Login onLogin={login} />;
  const symbols = store.symbols.length ? store.symbols.map((s) => s.symbol) : [symbol];
  return (
    <div className="app">
      <header className="top">
        <h1>oms</h1>
        <label>
          Symbol
          <select value={symbol} onChange={(e) => market(e.target.value, interval)} name="symbol">
            {symbols.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <Status />
        <span className="who">
          {session.mode === "dev" ? `account ${session.value}` : "JWT session"}{" "}
          <button type="button" onClick={logout}>
            Sign out
          </button>
        </span>
      </header>
      <main className="grid">
        <Chart interval={interval} onInterval={(i) => market(symbol, i)} />
        <Book onPrice={setPrice} />
        <Tape />
        <Ticket symbol={symbol} price={price} setPrice={setPrice} />
        <Orders />
        <Fills />
        <Positions />
      </main>
    </div>
  );
}

// Browser tests of the dashboard at `/` against the real `oms` binary (issue 15's
// acceptance): page load without console errors, ticket → open orders, a crossing REST sell
// → FILLED, fill, position and candle without reload, cancel, inline error codes, reconnect
// and resync with a consistent book, and a screenshot under perf-generator load.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EVENTUALLY, Oms, PERF_BIN, ROOT, closeBrowser, eventually, openDashboard, sleep } from "./harness.mjs";

const OUT = join(ROOT, "web", "tests", "out");
mkdirSync(OUT, { recursive: true });
const FIGURES = join(OUT, "figures.json");
function figure(name, value) {
  const all = existsSync(FIGURES) ? JSON.parse(readFileSync(FIGURES, "utf8")) : {};
  all[name] = value;
  writeFileSync(FIGURES, JSON.stringify(all, null, 2));
  console.log(`figure ${name}: ${JSON.stringify(value)}`);
}

const servers = [];
async function server() {
  const s = await Oms.start();
  servers.push(s);
  return s;
}
after(async () => {
  await closeBrowser();
  for (const s of servers) await s.kill();
});

const limit = (side, qty, price, symbol = "BTC/USD") => ({ symbol, side, quantity: qty, price, orderType: "LIMIT", timeInForce: "GTC" });

async function placeInTicket(page, { side = "BUY", price, qty }) {
  await page.getByLabel(side === "BUY" ? "BUY ▲" : "SELL ▼").check();
  await page.getByLabel("Price", { exact: true }).fill(price);
  await page.getByLabel("Quantity", { exact: true }).fill(qty);
  await page.getByRole("button", { name: side === "BUY" ? "Place BUY ▲" : "Place SELL ▼" }).click();
}

const openRows = (page) => page.locator('[data-testid="open-orders"] tbody tr');

/** The page's book (best first) as [price, quantity] pairs, read from the store it renders. */
const pageBook = (page) =>
  page.evaluate(() => {
    const s = window.__oms.store;
    const side = (n) => s.topLevels(n, 20).map((l) => [l.price, l.quantity]);
    return { bids: side("bids"), asks: side("asks") };
  });
async function restBook(s) {
  const r = await s.req("GET", "/api/book/BTC-USD?depth=20");
  const side = (ls) => ls.map((l) => [l.price, l.quantity]);
  return { bids: side(r.json.bids), asks: side(r.json.asks) };
}

describe("dashboard", () => {
  test("serves the page with content types and cache headers, loads without console errors", async () => {
    const s = await server();
    const index = await s.req("GET", "/");
    assert.equal(index.status, 200);
    assert.match(index.headers.get("content-type"), /^text\/html/);
    assert.equal(index.headers.get("cache-control"), "no-cache");
    const js = index.text.match(/\/assets\/app-[A-Z0-9]+\.js/)[0];
    const asset = await s.req("GET", js);
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get("content-type"), /^text\/javascript/);
    assert.match(asset.headers.get("cache-control"), /immutable/);

    const { page, context, errors } = await openDashboard(s, "alice");
    await page.locator("canvas").first().waitFor();
    assert.equal(await page.getByLabel("Symbol").inputValue(), "BTC/USD");
    // The session survives a reload (sessionStorage), which then paints the dashboard directly.
    await page.reload();
    await page.locator('[data-testid="conn"][data-state="live"]').waitFor({ timeout: EVENTUALLY });
    const paint = await page.evaluate(() => {
      const fcp = performance.getEntriesByName("first-contentful-paint")[0];
      const nav = performance.getEntriesByType("navigation")[0];
      return { firstContentfulPaintMs: Math.round(fcp?.startTime ?? -1), domContentLoadedMs: Math.round(nav.domContentLoadedEventEnd) };
    });
    figure("first_paint", paint);
    assert.ok(paint.firstContentfulPaintMs > 0, "the page painted");
    assert.ok(!page.url().includes("alice"), "no account or token in the URL");
    assert.deepEqual(errors, [], "console errors");
    await context.close();
  });

  test("a ticket order rests in open orders; a crossing REST sell fills it, adds a fill, moves position and candle", async () => {
    const s = await server();
    // An earlier trade at 45000 gives the chart a last candle to move.
    assert.equal((await s.place("carol", limit("BUY", "0.0100", "45000.00"))).status, 201);
    assert.equal((await s.place("dave", limit("SELL", "0.0100", "45000.00"))).status, 201);
    const { page, context, errors } = await openDashboard(s, "alice");
    const candle = page.getByTestId("last-candle");
    await eventually("a first candle", async () => (await candle.getAttribute("data-close")) === "45000");
    const volumeBefore = Number(await candle.getAttribute("data-volume"));

    await placeInTicket(page, { side: "BUY", price: "44000.00", qty: "0.1000" });
    const row = openRows(page).first();
    await row.waitFor();
    const orderId = await row.getAttribute("data-order-id");
    assert.match(await row.innerText(), /BUY/);
    assert.match(await row.innerText(), /44000\.00/);
    // It rests on the book the page shows.
    await eventually("the bid on the page's book", async () => (await pageBook(page)).bids.some(([p]) => p === "44000.00"));

    const sell = await s.place("bob", limit("SELL", "0.1000", "44000.00"));
    assert.equal(sell.status, 201, sell.text);

    const filled = page.locator(`[data-testid="order-history"] tr[data-order-id="${orderId}"]`);
    await eventually("FILLED in the blotter", async () => (await filled.getAttribute("data-status")) === "FILLED");
    assert.equal(await openRows(page).count(), 0, "no longer open");
    await page.locator(`[data-testid="fills"] tr[data-order-id="${orderId}"]`).waitFor({ timeout: EVENTUALLY });
    assert.match(await page.locator(`[data-testid="fills"] tr[data-order-id="${orderId}"]`).innerText(), /0\.1000/);
    await eventually("a long position", async () => /LONG 0\.1/.test(await page.locator('[data-testid="positions"] tr[data-symbol="BTC/USD"]').innerText()));
    await eventually("the last candle moved", async () => (await candle.getAttribute("data-close")) === "44000");
    assert.ok(Number(await candle.getAttribute("data-volume")) > volumeBefore, "volume grew");
    assert.deepEqual(errors, [], "console errors");
    await context.close();
  });

  test("cancel from the page removes a resting order; cancel-all removes the rest", async () => {
    const s = await server();
    const { page, context } = await openDashboard(s, "alice");
    await placeInTicket(page, { side: "BUY", price: "43000.00", qty: "0.0100" });
    await placeInTicket(page, { side: "SELL", price: "47000.00", qty: "0.0200" });
    await placeInTicket(page, { side: "SELL", price: "47500.00", qty: "0.0300" });
    await eventually("three open orders", async () => (await openRows(page).count()) === 3);
    const row = openRows(page).filter({ hasText: "43000.00" });
    const id = await row.getAttribute("data-order-id");
    await row.getByRole("button", { name: /Cancel/ }).click();
    await eventually("two open orders", async () => (await openRows(page).count()) === 2);
    assert.equal(await page.locator(`[data-testid="order-history"] tr[data-order-id="${id}"]`).getAttribute("data-status"), "CANCELED");
    const rest = await s.req("GET", `/api/orders/${id}`, { account: "alice" });
    assert.equal(rest.json.status, "CANCELED");
    await eventually("the bid left the page's book", async () => !(await pageBook(page)).bids.some(([p]) => p === "43000.00"));

    await page.getByRole("button", { name: "Cancel all" }).click();
    await eventually("no open orders", async () => (await openRows(page).count()) === 0);
    await eventually("an empty book", async () => {
      const b = await pageBook(page);
      return b.bids.length === 0 && b.asks.length === 0;
    });
    await context.close();
  });

  test("an invalid price shows the server's error code next to the price field", async () => {
    const s = await server();
    const { page, context } = await openDashboard(s, "alice");
    const body = limit("BUY", "0.0100", "45000.001");
    const rest = await s.place("alice", body);
    assert.equal(rest.status, 400);
    assert.equal(rest.json.error.field, "price");
    await placeInTicket(page, { side: "BUY", price: "45000.001", qty: "0.0100" });
    const err = page.getByTestId("error-price");
    await err.waitFor({ timeout: EVENTUALLY });
    assert.match(await err.innerText(), new RegExp(rest.json.error.code));
    assert.equal(await page.getByLabel("Price", { exact: true }).getAttribute("aria-invalid"), "true");
    // A risk rejection (outside the price band) is shown by the field it concerns too.
    await placeInTicket(page, { side: "BUY", price: "90000.00", qty: "0.0100" });
    await eventually("the band error", async () => /PRICE_OUT_OF_BAND/.test(await err.innerText()));
    await page.getByLabel("Price", { exact: true }).fill("44000.00");
    await page.getByLabel("Quantity", { exact: true }).fill("0.00001");
    await page.getByRole("button", { name: "Place BUY ▲" }).click();
    await page.getByTestId("error-quantity").waitFor({ timeout: EVENTUALLY });
    assert.equal(await openRows(page).count(), 0);
    await context.close();
  });

  test("a seq gap makes the page resync and keep the server's book", async () => {
    const s = await server();
    const { page, context, errors } = await openDashboard(s, "alice");
    assert.equal((await s.place("bob", limit("SELL", "0.0100", "45500.00"))).status, 201);
    await eventually("the ask on the page", async () => (await pageBook(page)).asks.length === 1);
    // Forget a few sequence numbers: the next update looks like a gap.
    await page.evaluate(() => window.__oms.feed.skewSeq("book", "BTC/USD", -3));
    assert.equal((await s.place("bob", limit("SELL", "0.0200", "45600.00"))).status, 201);
    await eventually("a resync", async () => (await page.evaluate(() => window.__oms.feed.resyncs)) >= 1);
    await eventually("the book equals REST", async () => JSON.stringify(await pageBook(page)) === JSON.stringify(await restBook(s)));
    assert.deepEqual(errors, [], "console errors");
    await context.close();
  });

  test("killing and restarting the server shows reconnecting, then recovers with a consistent book", async () => {
    const s = await server();
    const { page, context } = await openDashboard(s, "alice");
    await placeInTicket(page, { side: "BUY", price: "44500.00", qty: "0.0500" });
    assert.equal((await s.place("bob", limit("SELL", "0.0700", "45500.00"))).status, 201);
    assert.equal((await s.place("bob", limit("BUY", "0.0300", "44400.00"))).status, 201);
    await eventually("three levels on the page", async () => {
      const b = await pageBook(page);
      return b.bids.length === 2 && b.asks.length === 1;
    });
    await s.kill();
    await page.locator('[data-testid="conn"][data-state="reconnecting"]').waitFor({ timeout: EVENTUALLY });
    assert.match(await page.getByTestId("conn").innerText(), /reconnecting/);
    await sleep(500);
    await s.start();
    await page.locator('[data-testid="conn"][data-state="live"]').waitFor({ timeout: 30_000 });
    await eventually("the book equals REST after recovery", async () => JSON.stringify(await pageBook(page)) === JSON.stringify(await restBook(s)));
    assert.equal((await pageBook(page)).bids.length, 2);
    assert.equal(await openRows(page).count(), 1, "alice's order is still open");
    // And it is live again: a new order shows up without reload.
    assert.equal((await s.place("bob", limit("SELL", "0.0100", "45400.00"))).status, 201);
    await eventually("the new ask", async () => (await pageBook(page)).asks.some(([p]) => p === "45400.00"));
    await context.close();
  });

  test("under perf-generator load the page keeps up; screenshot for the README", { timeout: 120_000 }, async (t) => {
    if (!existsSync(PERF_BIN)) {
      t.skip(`no load generator at ${PERF_BIN} (cargo build -p oms-perf --bin oms-perf)`);
      return;
    }
    const s = await server();
    const { page, context, errors } = await openDashboard(s, "alice");
    await placeInTicket(page, { side: "BUY", price: "44800.00", qty: "0.0500" });
    await placeInTicket(page, { side: "SELL", price: "45300.00", qty: "0.0400" });
    const rate = Number(process.env.WEB_LOAD_RATE ?? 1000);
    const seconds = Number(process.env.WEB_LOAD_SECONDS ?? 12);
    const load = spawn(PERF_BIN, ["run", "--mode", "open", "--rate", String(rate), "--duration", String(seconds), "--connections", "16", "--target", s.base, "--quiet"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let loadOut = "";
    load.stdout.on("data", (d) => (loadOut += d));
    load.stderr.on("data", (d) => (loadOut += d));
    const loadDone = new Promise((r) => load.once("exit", r));
    await sleep(3000);
    const m = await page.evaluate(async (ms) => {
      const s = window.__oms.store;
      const m0 = s.messages;
      let frames = 0;
      let worst = 0;
      let prev = performance.now();
      const t0 = prev;
      await new Promise((done) => {
        const tick = (now) => {
          frames += 1;
          worst = Math.max(worst, now - prev);
          prev = now;
          if (now - t0 < ms) requestAnimationFrame(tick);
          else done();
        };
        requestAnimationFrame(tick);
      });
      const secs = (performance.now() - t0) / 1000;
      return { fps: +(frames / secs).toFixed(1), eventsPerSec: Math.round((s.messages - m0) / secs), worstFrameMs: Math.round(worst) };
    }, 5000);
    mkdirSync(join(ROOT, "docs", "img"), { recursive: true });
    await page.screenshot({ path: join(ROOT, "docs", "img", "dashboard.png") });
    await loadDone;
    figure("under_load", { ...m, generatorRate: rate, note: "headless chromium, software rendering, shared 2-core machine" });
    assert.ok(m.eventsPerSec > 0, `events reached the page (${loadOut.slice(-500)})`);
    assert.equal(await page.getByTestId("conn").getAttribute("data-state"), "live");
    assert.ok((await page.getByTestId("tape").locator("tbody tr").count()) > 0, "the tape shows trades");
    assert.deepEqual(errors, [], "console errors");
    await context.close();
  });
});

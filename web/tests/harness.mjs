// Shared harness of the browser tests: runs the real `oms` binary (fresh data dir, free
// port), drives Debian's chromium through playwright-core, and talks REST to the server.
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

export const ROOT = resolve(new URL("../..", import.meta.url).pathname);
const TARGET = process.env.CARGO_TARGET_DIR ?? join(ROOT, "target");
export const OMS_BIN = process.env.OMS_BIN ?? join(TARGET, "debug", "oms");
export const PERF_BIN = process.env.OMS_PERF_BIN ?? join(TARGET, "debug", "oms-perf");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
/** Generous: the machine is shared and busy. */
export const EVENTUALLY = 15_000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

/** A running `oms serve`; `kill()` is SIGKILL, `start()` again reuses port and data dir. */
export class Oms {
  constructor(port, dir, extra = []) {
    this.port = port;
    this.dir = dir;
    this.extra = extra;
    this.base = `http://127.0.0.1:${port}`;
    this.child = null;
  }

  static async start(extra = []) {
    if (!existsSync(OMS_BIN)) throw new Error(`no oms binary at ${OMS_BIN} (cargo build -p oms-ingress --bin oms)`);
    const dir = mkdtempSync(join(tmpdir(), "oms-web-"));
    const s = new Oms(await freePort(), dir, extra);
    await s.start();
    return s;
  }

  async start() {
    const log = openSync(join(this.dir, "server.log"), "a");
    this.child = spawn(
      OMS_BIN,
      ["serve", "--bind", `127.0.0.1:${this.port}`, "--data-dir", join(this.dir, "data"), ...this.extra],
      { stdio: ["ignore", log, log], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } },
    );
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) throw new Error(`oms exited: ${this.log().slice(-2000)}`);
      try {
        const r = await fetch(`${this.base}/ready`);
        if (r.status === 200) return;
      } catch {
        /* not listening yet */
      }
      await sleep(100);
    }
    throw new Error(`oms not ready in 30 s: ${this.log().slice(-2000)}`);
  }

  log() {
    try {
      return readFileSync(join(this.dir, "server.log"), "utf8");
    } catch {
      return "";
    }
  }

  async kill() {
    if (!this.child || this.child.exitCode !== null) return;
    const gone = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGKILL");
    await gone;
  }

  async req(method, path, { account, body, key } = {}) {
    const headers = { Accept: "application/json" };
    if (account) headers["X-Account-Id"] = account;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (key) headers["X-Idempotency-Key"] = key;
    const r = await fetch(`${this.base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: r.status, headers: r.headers, text, json };
  }

  async place(account, body) {
    return this.req("POST", "/api/orders", { account, body, key: `t-${Date.now()}-${Math.random()}` });
  }
}

let browser = null;
export async function launch() {
  if (!browser) {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    });
  }
  return browser;
}
export async function closeBrowser() {
  await browser?.close();
  browser = null;
}

/**
 * A page signed in as `account`, with every console error and page error collected in
 * `errors` (assertions on it are the test's choice: a killed server makes the browser log
 * failed WebSocket connections, which is expected there).
 */
export async function openDashboard(server, account, { viewport = { width: 1440, height: 900 } } = {}) {
  const b = await launch();
  const context = await b.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${server.base}/`);
  await page.getByLabel("Account", { exact: true }).fill(account);
  await page.getByRole("button", { name: "Open dashboard" }).click();
  await page.locator('[data-testid="conn"][data-state="live"]').waitFor({ timeout: EVENTUALLY });
  return { page, context, errors };
}

/** Polls `fn` until it returns a truthy value (or throws with `what`). */
export async function eventually(what, fn, timeout = EVENTUALLY) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

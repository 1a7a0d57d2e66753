// Sign-in: an account name when the server runs with auth off (sent as X-Account-Id and in
// the WS auth op), or a pasted JWT when it runs with --auth jwt. Kept in sessionStorage only.

import { FormEvent, useState } from "react";
import { Session } from "../api";

export function Login({ onLogin }: { onLogin: (s: Session) => void }) {
  const [mode, setMode] = useState<"dev" | "jwt">("dev");
  const [account, setAccount] = useState("demo");
  const [token, setToken] = useState("");
  function submit(e: FormEvent) {
    e.preventDefault();
    const value = (mode === "dev" ? account : token).trim();
    if (value) onLogin({ mode, value });
  }
  return (
    <main className="login">
      <h1>oms dashboard</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <fieldset>
          <legend>Server auth mode</legend>
          <label>
            <input type="radio" name="mode" checked={mode === "dev"} onChange={() => setMode("dev")} /> Dev mode (account name)
          </label>
          <label>
            <input type="radio" name="mode" checked={mode === "jwt"} onChange={() => setMode("jwt")} /> JWT (paste a token)
          </label>
        </fieldset>
        {mode === "dev" ? (
          <label>
            Account
            <input name="account" value={account} autoFocus onChange={(e) => setAccount(e.target.value)} autoComplete="username" />
          </label>
        ) : (
          <label>
            Token
            <textarea name="token" value={token} rows={4} onChange={(e) => setToken(e.target.value)} spellCheck={false} />
          </label>
        )}
        <button type="submit">Open dashboard</button>
      </form>
    </main>
  );
}

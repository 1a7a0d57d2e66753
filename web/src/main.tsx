// Entry point: restores the session (sessionStorage) and mounts the page.

import { createRoot } from "react-dom/client";
import { App } from "./App";
import { loadSession, setSession } from "./api";
import { feed } from "./feed";
import { store } from "./store";
import "./styles.css";

setSession(loadSession());
// Exposed for the browser tests and the perf figures (read-only use).
(window as unknown as { __oms: unknown }).__oms = { store, feed };
createRoot(document.getElementById("root")!).render(<App />);

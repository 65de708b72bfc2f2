// vfo-otel dashboard: a plain ES module, no build step, no framework, nothing from a CDN.
//
// It is the reference client of the snapshot contract and uses only the receiver's public
// HTTP API (docs/dashboard.md):
//   GET /v1/runs?state=&page_size=&page_token=            the runs list (polled every 5 s)
//   GET /v1/runs/{run_id}/snapshot?pipeline_id=&asset_id=&asset_page_token=  one snapshot (first load, diagnostics)
//   GET /v1/runs/{run_id}/snapshot:watch?...&after_revision=   Server-Sent Events, one
//       DashboardSnapshot per revision; EventSource resends Last-Event-ID when it reconnects.
// Auth: when the receiver requires a bearer token the page asks for it and trades it for a
// same-site HttpOnly session cookie (POST /v1/session); no token ever goes into a URL.
// JSON is the protobuf JSON mapping: camelCase names, enums as "STATE_FAILED", 64-bit
// integers as strings, Durations as "1.5s", fields at their default value omitted.

const STATES = ["queued", "running", "waiting", "complete", "failed", "skipped"];
const GLYPH = { queued: "○", running: "▶", waiting: "◔", complete: "✓", failed: "✗", skipped: "⤼", unspecified: "?" };
// The order in which a DAG node takes its colour from its per-state counts: activity first,
// then problems, then what is left to do, then what is done.
const NODE_PRIORITY = ["running", "waiting", "failed", "queued", "complete", "skipped"];
const SCHEMA_VERSION = 2;
const RUNS_POLL_MS = 5000;

// ---------------------------------------------------------------- small helpers

const raw = (s) => ({ __html: String(s) });
function render(v) {
  if (v === null || v === undefined || v === false) return "";
  if (Array.isArray(v)) return v.map(render).join("");
  if (typeof v === "object" && "__html" in v) return v.__html;
  return String(v).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
/** Tagged template: interpolated values are HTML-escaped unless wrapped in raw()/html``. */
function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => { out += render(v) + strings[i + 1]; });
  return raw(out);
}

const num = (v) => Number(v ?? 0) || 0;
const sameSelection = (a, b) => a.pipeline === b.pipeline && a.asset === b.asset && (a.page ?? "") === (b.page ?? "");
const big = (v) => { try { return BigInt(v ?? 0); } catch { return 0n; } };
const stateName = (s) => (s ? String(s).replace(/^STATE_/, "").toLowerCase() : "unspecified");

function badge(state, extra = "") {
  const s = stateName(state);
  return html`<span class="badge st-${s}" data-state="${s}"${raw(extra)}><span aria-hidden="true">${GLYPH[s] ?? "?"}</span> ${s}</span>`;
}

/** "1.5s" -> 1.5 (seconds); missing -> null. */
function seconds(d) {
  if (d === undefined || d === null || d === "") return null;
  const v = parseFloat(String(d));
  return Number.isFinite(v) ? v : null;
}
function fmtDuration(s) {
  if (s === null || s === undefined) return "—";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60), sec = Math.round(s % 60);
  if (m < 60) return `${m} min ${String(sec).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}
/** An entity's duration: its own, else (running or waiting) generatedTime - startTime. */
function entityDuration(e, generated) {
  const own = seconds(e?.duration);
  if (own !== null) return fmtDuration(own);
  const going = e?.state === undefined || ["running", "waiting"].includes(stateName(e.state));
  if (going && e?.startTime && !e?.endTime && generated) {
    const s = (Date.parse(generated) - Date.parse(e.startTime)) / 1000;
    if (Number.isFinite(s) && s >= 0) return `${fmtDuration(s)} so far`;
  }
  return "—";
}
function fmtTime(ts) {
  if (!ts) return html`<span class="muted">—</span>`;
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return ts;
  const p = (n) => String(n).padStart(2, "0");
  const text = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  return html`<time datetime="${ts}" title="${ts}">${text}</time>`;
}
function fmtBytes(v) {
  if (v === undefined || v === null) return "";
  let n = num(v), i = 0;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}
const runHref = (runId, sel = {}) => {
  const q = new URLSearchParams();
  if (sel.pipeline) q.set("pipeline", sel.pipeline);
  if (sel.asset) q.set("asset", sel.asset);
  if (sel.page) q.set("page", sel.page);
  const qs = q.toString();
  return `#/run/${encodeURIComponent(runId)}${qs ? `?${qs}` : ""}`;
};
// Auth: a receiver that requires a bearer token answers 401; the page then asks for the token
// once and trades it (POST /v1/session, Authorization header) for an HttpOnly same-site session
// cookie, which fetch and EventSource send by themselves. The token is never put in a URL.
const withToken = (q) => q;
async function signIn(token) {
  const resp = await fetch("/v1/session", {
    method: "POST", headers: { Authorization: `Bearer ${token}` }, cache: "no-store", credentials: "same-origin",
  });
  return resp.status === 204;
}
function showSignIn() {
  if (document.getElementById("signin")) return;
  const box = document.createElement("form");
  box.id = "signin";
  box.className = "signin";
  box.dataset.testid = "signin";
  box.innerHTML = `<p>This receiver requires a bearer token.</p>
    <label>Token <input type="password" name="token" autocomplete="current-password" data-testid="signin-token" required></label>
    <button type="submit" data-testid="signin-submit">Sign in</button> <span class="signin-error" role="alert"></span>`;
  box.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const ok = await signIn(box.elements.token.value).catch(() => false);
    if (!ok) { box.querySelector(".signin-error").textContent = "not accepted"; return; }
    box.remove();
    view?.stop(); view = null; route();
  });
  document.body.prepend(box);
  box.elements.token.focus();
}
const STALE = html` <span class="stale" data-testid="stale" title="no event (heartbeat included) for longer than the receiver's stale_after">(stale)</span>`;
const snapshotUrl = (runId, sel, watch, after) => {
  const q = withToken(new URLSearchParams());
  if (sel.pipeline && sel.asset) { q.set("pipeline_id", sel.pipeline); q.set("asset_id", sel.asset); }
  if (sel.page) q.set("asset_page_token", sel.page); // one page of a pipeline's assets (schema 2)
  if (watch && after) q.set("after_revision", String(after));
  const qs = q.toString();
  return `/v1/runs/${encodeURIComponent(runId)}/snapshot${watch ? ":watch" : ""}${qs ? `?${qs}` : ""}`;
};

/** fetch JSON; throws ApiError with the google.rpc.Status message of an error response. */
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
async function getJson(url, signal) {
  let resp;
  try {
    resp = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-cache", signal }); // revalidates: 304 when unchanged
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "the receiver cannot be reached");
  }
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : {}; } catch { /* not JSON */ }
  if (!resp.ok) {
    let msg = body?.message || text || resp.statusText;
    if (resp.status === 401) { msg += " — this receiver requires a bearer token: sign in above"; showSignIn(); }
    throw new ApiError(resp.status, `HTTP ${resp.status}: ${msg}`);
  }
  if (body === null) throw new ApiError(resp.status, "the receiver answered with something that is not JSON");
  return body;
}

// ---------------------------------------------------------------- page shell

const main = document.getElementById("main");
const connEl = document.getElementById("conn");

function setConn(state, text) {
  connEl.dataset.state = state;
  connEl.querySelector(".conn-text").textContent = text;
}

/** Replace the page content, keeping keyboard focus on the element with the same data-key. */
function patch(content) {
  const active = document.activeElement;
  const key = active && main.contains(active) ? active.dataset.key : undefined;
  const scroll = [...main.querySelectorAll("[data-scroll-key]")].map((el) => [el.dataset.scrollKey, el.scrollLeft, el.scrollTop]);
  main.innerHTML = render(content);
  for (const [k, left, top] of scroll) {
    const el = main.querySelector(`[data-scroll-key="${CSS.escape(k)}"]`);
    if (el) { el.scrollLeft = left; el.scrollTop = top; }
  }
  if (key) main.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus({ preventScroll: true });
}

// ---------------------------------------------------------------- routing

let view = null; // the current view object: {kind, stop(), ...}

function parseRoute() {
  const h = location.hash.replace(/^#/, "") || "/";
  const [path, qs = ""] = h.split("?");
  const q = new URLSearchParams(qs);
  if (path.startsWith("/run/")) {
    let runId;
    try { runId = decodeURIComponent(path.slice(5)); } catch { runId = path.slice(5); }
    return { kind: "run", runId, pipeline: q.get("pipeline") || "", asset: q.get("asset") || "", page: q.get("page") || "" };
  }
  return { kind: "runs", state: q.get("state") || "" };
}

function route() {
  const r = parseRoute();
  if (view && view.kind === "run" && r.kind === "run" && view.runId === r.runId) {
    view.select({ pipeline: r.pipeline, asset: r.asset, page: r.page });
    return;
  }
  view?.stop();
  view = r.kind === "run" ? new RunView(r) : new RunsView(r);
  view.start();
}

// ---------------------------------------------------------------- runs list

function countsText(c, { compact = false } = {}) {
  const parts = STATES.filter((s) => num(c?.[s]) > 0).map((s) =>
    html`<span class="cnt st-${s}"><span aria-hidden="true">${GLYPH[s]}</span> <span data-testid="count-${s}">${num(c[s])}</span>${compact ? html`<span class="sr-only"> ${s}</span>` : ` ${s}`}</span>`);
  return html`<span class="counts">${parts.length ? parts : html`<span class="muted">none</span>`}<span class="cnt-total">of <span data-testid="count-total">${num(c?.total)}</span></span></span>`;
}

class RunsView {
  kind = "runs";
  constructor(r) { this.state = r.state; this.runs = null; this.error = null; this.next = ""; this.timer = 0; this.abort = null; }

  start() {
    document.title = "Runs — vfo-otel";
    this.paint();
    this.load();
  }
  stop() { clearTimeout(this.timer); this.abort?.abort(); }

  async load() {
    clearTimeout(this.timer);
    this.abort?.abort();
    this.abort = new AbortController();
    const q = withToken(new URLSearchParams({ page_size: String(Math.max(100, this.runs?.length ?? 0)) }));
    if (this.state) q.set("state", this.state);
    try {
      const body = await getJson(`/v1/runs?${q}`, this.abort.signal);
      this.runs = body.runs ?? [];
      this.next = body.nextPageToken ?? "";
      this.error = null;
      setConn("polling", `runs updated ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      if (e.name === "AbortError") return;
      this.error = e.message;
      setConn("offline", "receiver unreachable — retrying");
    }
    this.paint();
    this.timer = setTimeout(() => this.load(), RUNS_POLL_MS);
  }

  async more() {
    const q = withToken(new URLSearchParams({ page_size: "100", page_token: this.next }));
    if (this.state) q.set("state", this.state);
    try {
      const body = await getJson(`/v1/runs?${q}`);
      this.runs = [...(this.runs ?? []), ...(body.runs ?? [])];
      this.next = body.nextPageToken ?? "";
    } catch (e) { this.error = e.message; }
    this.paint();
  }

  paint() {
    const options = ["", ...STATES].map((s) =>
      html`<option value="${s}"${raw(s === this.state ? " selected" : "")}>${s ? `${GLYPH[s]} ${s}` : "all states"}</option>`);
    const rows = (this.runs ?? []).map((item) => {
      const r = item.run ?? {};
      const s = item.summary ?? {};
      return html`<tr data-testid="run-row" data-run-id="${r.runId}">
        <th scope="row"><a href="${runHref(r.runId)}" data-key="run:${r.runId}" data-testid="run-link">${r.runId}</a></th>
        <td data-label="State">${badge(r.state)}</td>
        <td data-label="Start">${fmtTime(r.startTime)}</td>
        <td class="num" data-label="Duration">${entityDuration(r, r.lastUpdateTime)}</td>
        <td data-label="Pipelines" data-testid="run-pipelines">${countsText(s.pipelines)}</td>
        <td data-label="Assets" data-testid="run-assets">${countsText(s.assets)}</td>
        <td data-label="Nodes" data-testid="run-nodes">${countsText(s.nodes)}</td>
        <td data-label="Attempts" data-testid="run-attempts">${countsText(s.attempts)}</td>
        <td class="num" data-label="Revision">${item.revision ?? "0"}</td>
      </tr>`;
    });
    let body;
    if (this.runs === null && !this.error) body = html`<p>Loading runs…</p>`;
    else if (!rows.length) body = html`<p data-testid="no-runs">No runs${this.state ? ` in state ${this.state}` : ""} yet.</p>`;
    else {
      body = html`<div class="table-wrap" tabindex="0" role="region" aria-label="Runs table" data-scroll-key="runs">
        <table class="runs stack" data-testid="runs-table">
          <caption>Runs, newest first. Counts are by state; “of N” is the total.</caption>
          <thead><tr><th scope="col">Run</th><th scope="col">State</th><th scope="col">Start</th><th scope="col">Duration</th>
            <th scope="col">Pipelines</th><th scope="col">Assets</th><th scope="col">Nodes</th><th scope="col">Attempts</th><th scope="col">Revision</th></tr></thead>
          <tbody>${rows}</tbody>
        </table></div>
        ${this.next ? html`<p><button type="button" data-action="more-runs" data-key="more-runs">Load more runs</button></p>` : ""}`;
    }
    patch(html`<h1>Runs</h1>
      <form class="filters" data-testid="runs-filter">
        <label for="state-filter">State</label>
        <select id="state-filter" data-key="state-filter" data-testid="state-filter" data-action-change="filter-state">${options}</select>
        <button type="button" data-action="refresh" data-key="refresh">Refresh</button>
      </form>
      ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : ""}
      ${body}`);
  }

  action(name, el) {
    if (name === "filter-state") location.hash = el.value ? `#/?state=${encodeURIComponent(el.value)}` : "#/";
    else if (name === "refresh") this.load();
    else if (name === "more-runs") this.more();
  }
}

// ---------------------------------------------------------------- run page

class RunView {
  kind = "run";
  constructor(r) {
    this.runId = r.runId;
    this.sel = { pipeline: r.pipeline, asset: r.asset, page: r.page };
    this.snap = null;          // the newest DashboardSnapshot shown
    this.snapSel = null;       // the selection that snapshot was made for
    this.lastRevision = 0n;    // revision of this.snap: where a reconnect resumes
    this.es = null;
    this.gen = 0;              // bumps on every (re)subscription; stale callbacks check it
    this.retryTimer = 0;
    this.retryDelay = 1000;
    this.error = null;
    this.fatal = false;
    this.pending = 0;          // requestAnimationFrame handle
    this.onResize = () => { clearTimeout(this.resizeTimer); this.resizeTimer = setTimeout(() => this.paint(), 150); };
  }

  start() {
    document.title = `${this.runId} — vfo-otel`;
    window.addEventListener("resize", this.onResize);
    this.paint();
    this.subscribe(true);
  }

  stop() {
    this.gen += 1;
    this.es?.close();
    this.es = null;
    clearTimeout(this.retryTimer);
    cancelAnimationFrame(this.pending);
    window.removeEventListener("resize", this.onResize);
  }

  select(sel) {
    if (sameSelection(sel, this.sel)) return;
    this.sel = sel;
    this.schedulePaint();
    this.subscribe(true); // a new selection needs a snapshot with its node details at once
  }

  /**
   * Open the live stream. fresh: start from the current snapshot (after_revision=0), for a
   * first load or a new selection; otherwise resume after the last revision shown.
   * While the stream is open, EventSource reconnects by itself and sends Last-Event-ID, which
   * the receiver honours; when it gives up (HTTP error), we reopen with after_revision.
   */
  subscribe(fresh) {
    const gen = ++this.gen;
    this.es?.close();
    clearTimeout(this.retryTimer);
    const sel = { ...this.sel };
    const after = fresh ? 0n : this.lastRevision;
    if (fresh) setConn("connecting", "connecting…");
    const es = new EventSource(snapshotUrl(this.runId, sel, true, after));
    this.es = es;
    es.addEventListener("open", () => {
      if (gen !== this.gen) return;
      this.retryDelay = 1000;
      this.error = null;
      setConn("live", `live · revision ${this.lastRevision}`);
      this.schedulePaint();
    });
    es.addEventListener("snapshot", (e) => {
      if (gen !== this.gen) return;
      let snap;
      try { snap = JSON.parse(e.data); } catch { return; }
      const rev = big(snap.revision);
      const sameSel = this.snapSel && sameSelection(this.snapSel, sel);
      if (sameSel && rev < this.lastRevision) return; // never go back in time
      this.snap = snap;
      this.snapSel = sel;
      this.lastRevision = rev;
      this.error = null;
      setConn("live", `live · revision ${rev}`);
      this.schedulePaint();
    });
    es.addEventListener("error", () => {
      if (gen !== this.gen) return;
      if (es.readyState === EventSource.CONNECTING) {
        // The browser retries by itself (the receiver asks for 2 s) and resumes with Last-Event-ID.
        setConn("reconnecting", `reconnecting… (resumes after revision ${this.lastRevision})`);
        return;
      }
      es.close();
      this.diagnose(gen, sel);
    });
  }

  /** The stream was refused: ask the snapshot route why, then retry with backoff. */
  async diagnose(gen, sel) {
    try {
      const snap = await getJson(snapshotUrl(this.runId, sel, false));
      if (gen !== this.gen) return;
      if (!this.snap || big(snap.revision) >= this.lastRevision || !this.snapSel) {
        this.snap = snap; this.snapSel = sel; this.lastRevision = big(snap.revision);
      }
      this.error = null;
    } catch (e) {
      if (gen !== this.gen) return;
      this.error = e.message;
      if (e.status === 404 || e.status === 401 || e.status === 403 || e.status === 400) {
        this.fatal = true;
        setConn("error", "stopped — see the message on the page");
        this.schedulePaint();
        return;
      }
    }
    this.fatal = false;
    setConn("reconnecting", `reconnecting in ${Math.round(this.retryDelay / 1000)} s… (resumes after revision ${this.lastRevision})`);
    this.schedulePaint();
    this.retryTimer = setTimeout(() => { if (gen === this.gen) this.subscribe(!this.snap); }, this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, 15000);
  }

  schedulePaint() {
    cancelAnimationFrame(this.pending);
    this.pending = requestAnimationFrame(() => this.paint());
  }

  action(name, el) {
    const d = el.dataset;
    if (name === "select-asset") {
      const same = d.pipeline === this.sel.pipeline && d.asset === this.sel.asset;
      location.hash = runHref(this.runId, same ? { page: this.sel.page } : { pipeline: d.pipeline, asset: d.asset, page: this.sel.page });
    } else if (name === "clear-selection") {
      location.hash = runHref(this.runId, { page: this.sel.page });
    } else if (name === "asset-page") {
      location.hash = runHref(this.runId, { ...this.sel, page: d.token });
    } else if (name === "retry") {
      this.fatal = false; this.error = null; this.retryDelay = 1000; this.subscribe(!this.snap);
    } else if (name === "dag-node") {
      const target = main.querySelector(`[data-node-detail="${CSS.escape(d.node)}"]`);
      if (target && d.pipeline === this.snapSel?.pipeline) {
        target.scrollIntoView({ block: "nearest" });
        target.focus({ preventScroll: true });
      }
    }
  }

  paint() {
    cancelAnimationFrame(this.pending);
    const s = this.snap;
    const banner = this.error ? html`<div class="error" role="alert" data-testid="error">${this.error}
        <button type="button" data-action="retry" data-key="retry">Retry now</button></div>` : "";
    if (!s) {
      patch(html`<p><a href="#/" data-key="back">← All runs</a></p><h1>Run ${this.runId}</h1>${banner}
        ${this.error ? "" : html`<p>Loading the snapshot…</p>`}`);
      return;
    }
    const run = s.run ?? {};
    document.title = `${GLYPH[stateName(run.state)] ?? ""} ${this.runId} — vfo-otel`;
    const schema = num(s.schemaVersion) !== SCHEMA_VERSION
      ? html`<p class="warning" role="alert">This page understands snapshot schema ${SCHEMA_VERSION}; the receiver sent ${num(s.schemaVersion)}. Some fields may be missing.</p>` : "";
    this.layoutWidth = this.dagWidth();
    const pending = this.snapSel && (this.snapSel.pipeline !== this.sel.pipeline || this.snapSel.asset !== this.sel.asset);
    patch(html`
      <p><a href="#/" data-key="back">← All runs</a></p>
      ${banner}${schema}
      ${this.header(s)}
      <div class="overview">
        ${this.summary(s.summary ?? {})}
        ${this.stageTotals(s.stageTotals ?? [])}
      </div>
      <div class="run-body${this.sel.asset ? " has-selection" : ""}">
        <div class="pipelines">${(s.pipelines ?? []).map((p) => this.pipeline(p, s))}
          ${(s.pipelines ?? []).length ? "" : html`<p class="muted">No pipelines yet.</p>`}</div>
        ${this.sel.asset ? this.details(s, pending) : ""}
      </div>`);
    // The DAG was laid out for the width of the last paint: lay it out again if this one differs.
    if (Math.abs(this.dagWidth() - this.layoutWidth) > 8) this.schedulePaint();
  }

  /** Width available to a pipeline's DAG: measured from the last paint, else estimated from the grid. */
  dagWidth() {
    const measured = main.querySelector(".pipeline")?.clientWidth;
    if (measured) return measured - 30;
    let w = main.clientWidth - 32;
    if (this.sel.asset && window.innerWidth > 900) w = ((w - 14) * 1.6) / 2.6;
    return Math.max(200, w - 30);
  }

  header(s) {
    const run = s.run ?? {};
    const cmd = run.command?.commandLine || (run.command?.argv ?? []).join(" ") || run.command?.action || "";
    const attrs = Object.entries(run.attributes ?? {});
    return html`<section class="run-header" aria-labelledby="run-title">
      <h1 id="run-title">Run <span class="run-id" data-testid="run-id">${run.runId || this.runId}</span>
        ${badge(run.state, ' data-testid="run-state"')}</h1>
      <dl class="facts">
        <div><dt>Started</dt><dd>${fmtTime(run.startTime)}</dd></div>
        <div><dt>Ended</dt><dd>${fmtTime(run.endTime)}</dd></div>
        <div><dt>Duration</dt><dd data-testid="run-duration">${entityDuration(run, s.generatedTime)}</dd></div>
        <div><dt>Last update</dt><dd>${fmtTime(run.lastUpdateTime)}</dd></div>
        <div><dt>Revision</dt><dd data-testid="revision">${s.revision ?? "0"}</dd></div>
        ${run.serviceName ? html`<div><dt>Service</dt><dd>${run.serviceName} ${run.serviceVersion ?? ""}</dd></div>` : ""}
        ${run.hostName ? html`<div><dt>Host</dt><dd>${run.hostName}</dd></div>` : ""}
        ${cmd ? html`<div class="wide"><dt>Command</dt><dd><code>${cmd}</code></dd></div>` : ""}
        ${attrs.length ? html`<div class="wide"><dt>Attributes</dt><dd>${attrs.map(([k, v]) => html`<code class="attr">${k}=${v}</code> `)}</dd></div>` : ""}
        ${run.error ? html`<div class="wide"><dt>Error</dt><dd class="err-text" data-testid="run-error">${this.errorText(run.error)}</dd></div>` : ""}
        ${run.stateReported === false || run.stateReported === undefined ? html`<div class="wide"><dt>State source</dt><dd>derived from its pipelines (the run reported none)</dd></div>` : ""}
      </dl>
    </section>`;
  }

  errorText(err) {
    if (!err) return "";
    return html`<strong>${err.errorClass || "Error"}</strong>${err.detail ? html`: ${err.detail}` : ""}`;
  }

  summary(sum) {
    const kinds = [["pipelines", "Pipelines"], ["assets", "Assets"], ["nodes", "Nodes (latest attempt)"], ["attempts", "Attempts (retries included)"]];
    return html`<section class="card" aria-labelledby="summary-title" data-testid="summary">
      <h2 id="summary-title">Summary</h2>
      <div class="table-wrap" tabindex="0" role="region" aria-label="Summary counts" data-scroll-key="summary">
      <table class="summary stack">
        <thead><tr><th scope="col">Counted</th>${STATES.map((st) => html`<th scope="col" class="st-col st-${st}"><span aria-hidden="true">${GLYPH[st]}</span> ${st}</th>`)}<th scope="col">total</th></tr></thead>
        <tbody>${kinds.map(([k, label]) => html`<tr><th scope="row">${label}</th>
          ${STATES.map((st) => html`<td class="num${num(sum[k]?.[st]) ? ` hot st-${st}` : " zero"}" data-label="${GLYPH[st]} ${st}" data-testid="summary-${k}-${st}">${num(sum[k]?.[st])}</td>`)}
          <td class="num total" data-label="total" data-testid="summary-${k}-total">${num(sum[k]?.total)}</td></tr>`)}</tbody>
      </table></div>
      ${num(sum.staleNodes) ? html`<p data-testid="summary-stale"><span class="stale">${num(sum.staleNodes)} stale node(s)</span>: running or waiting with no event for longer than the receiver's stale_after.</p>` : ""}
    </section>`;
  }

  stageTotals(stages) {
    const max = Math.max(0, ...stages.map((st) => seconds(st.totalDuration) ?? 0));
    const rows = stages.map((st) => {
      const total = seconds(st.totalDuration) ?? 0;
      const pct = max > 0 && total > 0 ? Math.max(1, (total / max) * 100) : 0;
      return html`<tr data-testid="stage-row" data-stage="${st.stageId}">
        <th scope="row">${st.stageId || "(no stage)"}</th>
        <td class="bar-cell" data-label="Total duration"><span class="bar" style="width:${pct.toFixed(1)}%" aria-hidden="true"></span>
          <span class="bar-label" data-testid="stage-total">${fmtDuration(total)}</span></td>
        <td class="num" data-label="Longest">${fmtDuration(seconds(st.maxDuration))}</td>
        <td data-label="Nodes">${countsText(st.counts)}</td></tr>`;
    });
    return html`<section class="card" aria-labelledby="stages-title" data-testid="stage-totals">
      <h2 id="stages-title">Stages</h2>
      ${stages.length ? html`<div class="table-wrap" tabindex="0" role="region" aria-label="Stage totals" data-scroll-key="stages">
      <table class="stages stack"><caption>Total duration of finished attempts by stage (bar), longest attempt, and latest attempts by state.</caption>
        <thead><tr><th scope="col">Stage</th><th scope="col">Total duration</th><th scope="col">Longest</th><th scope="col">Nodes</th></tr></thead>
        <tbody>${rows}</tbody></table></div>` : html`<p class="muted">No stages yet.</p>`}
    </section>`;
  }

  pipeline(p, s) {
    const pid = p.pipelineId ?? "";
    // One page of the pipeline's assets (ordered by id), then the selected asset's row when it
    // is not on the page; the counts cover every asset.
    const assets = p.assets ?? [];
    const page = p.assetPage ?? {};
    const onPage = page.size === undefined ? assets.length : num(page.size);
    const offset = num(page.offset);
    const total = num(p.assetCounts?.total);
    const selAsset = this.sel.pipeline === pid ? this.sel.asset : "";
    const details = this.snapSel?.pipeline === pid && this.snapSel?.asset === selAsset ? (s.nodeDetails ?? []) : [];
    const rows = assets.map((a, i) => {
      const selected = a.assetId === selAsset;
      const offPage = i >= onPage;
      return html`<tr class="${selected ? "selected" : ""}${offPage ? " off-page" : ""}" data-testid="asset-row" data-asset-id="${a.assetId}"
          ${offPage ? raw('title="selected; not on this page"') : ""}>
        <th scope="row"><button type="button" class="link-button" data-action="select-asset" data-pipeline="${pid}" data-asset="${a.assetId}"
          data-key="asset:${pid}/${a.assetId}" aria-pressed="${selected ? "true" : "false"}" data-testid="asset-button">${a.assetId}</button></th>
        <td data-label="State">${badge(a.state)}${a.stale ? STALE : ""}</td>
        <td data-label="Current node">${a.currentNodeId ? html`${a.currentNodeId}${a.currentStageId ? html` <span class="muted">(${a.currentStageId})</span>` : ""}` : html`<span class="muted">—</span>`}</td>
        <td class="num" data-label="Attempts" data-testid="asset-attempts">${num(a.attempts)}</td>
        <td data-label="Nodes">${countsText(a.nodeCounts)}</td>
        <td class="num" data-label="Duration">${entityDuration(a, s.generatedTime)}</td>
        <td class="err-text${a.error ? "" : " empty"}" data-label="Error">${a.error ? this.errorText(a.error) : ""}</td></tr>`;
    });
    return html`<section class="card pipeline" aria-labelledby="pipe-${pid}" data-testid="pipeline" data-pipeline-id="${pid}">
      <h2 id="pipe-${pid}">Pipeline ${pid} ${badge(p.state)}</h2>
      <p class="pipe-facts">${entityDuration(p, s.generatedTime)} · assets ${countsText(p.assetCounts)} · nodes ${countsText(p.nodeCounts)}
        ${p.error ? html`<br><span class="err-text">${this.errorText(p.error)}</span>` : ""}</p>
      <h3>Workflow</h3>
      ${dag(p.workflow ?? {}, pid, details, selAsset, this.layoutWidth)}
      <h3>Assets</h3>
      <div class="table-wrap" tabindex="0" role="region" aria-label="Assets of ${pid}" data-scroll-key="assets:${pid}">
      <table class="assets stack" data-testid="asset-table">
        <caption>Choose an asset to see its nodes and attempts.</caption>
        <thead><tr><th scope="col">Asset</th><th scope="col">State</th><th scope="col">Current node</th><th scope="col">Attempts</th>
          <th scope="col">Nodes</th><th scope="col">Duration</th><th scope="col">Error</th></tr></thead>
        <tbody>${rows}</tbody></table></div>
      ${this.pager(pid, page, offset, onPage, total)}
    </section>`;
  }

  /** Page navigation for a pipeline's asset list ("" when everything fits on one page). */
  pager(pid, page, offset, onPage, total) {
    if (!page.nextPageToken && !page.previousPageToken) return "";
    const first = onPage ? offset + 1 : offset;
    return html`<nav class="pager" aria-label="Pages of the assets of ${pid}" data-testid="asset-pager">
      <button type="button" data-action="asset-page" data-token="${page.previousPageToken ?? ""}" data-key="prev:${pid}"
        data-testid="asset-prev" ${page.previousPageToken ? "" : raw("disabled")}>‹ Previous</button>
      <span data-testid="asset-range" aria-live="polite">Assets ${first.toLocaleString()}–${(offset + onPage).toLocaleString()} of ${total.toLocaleString()}</span>
      <button type="button" data-action="asset-page" data-token="${page.nextPageToken ?? ""}" data-key="next:${pid}"
        data-testid="asset-next" ${page.nextPageToken ? "" : raw("disabled")}>Next ›</button>
    </nav>`;
  }

  details(s, pending) {
    const nodes = pending ? [] : (s.nodeDetails ?? []);
    const title = `${this.sel.pipeline} / ${this.sel.asset}`;
    const body = pending ? html`<p>Loading…</p>` : !nodes.length ? html`<p class="muted">No node details for this asset.</p>` : nodes.map((n) => {
      const attempts = n.attempts ?? [];
      return html`<section class="node-detail" tabindex="-1" data-node-detail="${n.nodeId}" data-testid="node-detail" data-node-id="${n.nodeId}"
          aria-labelledby="nd-${n.nodeId}">
        <h3 id="nd-${n.nodeId}">${n.nodeId} ${badge(n.state, ' data-testid="node-state"')}</h3>
        <p class="muted">stage ${n.stageId || "—"}${(n.upstreamNodeIds ?? []).length ? ` · after ${n.upstreamNodeIds.join(", ")}` : ""} · ${attempts.length} attempt${attempts.length === 1 ? "" : "s"}</p>
        <ol class="attempts">${attempts.map((a) => this.attempt(a, s))}</ol>
      </section>`;
    });
    return html`<aside class="card details" aria-labelledby="details-title" data-testid="node-details">
      <h2 id="details-title">Nodes of <span data-testid="details-asset">${title}</span></h2>
      <p><button type="button" data-action="clear-selection" data-key="clear-selection">Close details</button></p>
      ${body}
    </aside>`;
  }

  attempt(a, s) {
    const cmd = a.command?.commandLine || (a.command?.argv ?? []).join(" ") || (a.command?.action ? `action ${a.command.action}` : "");
    const refs = (list) => list.map((r) => html`<li><code>${r.uri || r.assetId}</code>${r.role ? html` <span class="muted">${r.role}</span>` : ""}${r.sizeBytes !== undefined ? html` <span class="muted">${fmtBytes(r.sizeBytes)}</span>` : ""}${r.mediaType ? html` <span class="muted">${r.mediaType}</span>` : ""}</li>`);
    const attrs = Object.entries(a.attributes ?? {});
    return html`<li class="attempt" data-testid="attempt" data-attempt="${num(a.attemptId)}">
      <p class="attempt-head">Attempt ${num(a.attemptId)} ${badge(a.state)}${a.synthetic ? html` <span class="muted">(decided by vfo)</span>` : ""}${a.stale ? STALE : ""}</p>
      <dl class="facts compact">
        <div><dt>Started</dt><dd>${fmtTime(a.startTime)}</dd></div>
        <div><dt>Duration</dt><dd>${entityDuration(a, s.generatedTime)}</dd></div>
        <div><dt>Exit code</dt><dd data-testid="exit-code">${a.exitCode === undefined ? "—" : num(a.exitCode)}</dd></div>
        ${cmd ? html`<div class="wide"><dt>Command</dt><dd><code data-testid="command">${cmd}</code></dd></div>` : ""}
        ${(a.inputs ?? []).length ? html`<div class="wide"><dt>Inputs</dt><dd><ul class="refs" data-testid="inputs">${refs(a.inputs)}</ul></dd></div>` : ""}
        ${(a.outputs ?? []).length ? html`<div class="wide"><dt>Outputs</dt><dd><ul class="refs" data-testid="outputs">${refs(a.outputs)}</ul></dd></div>` : ""}
        ${a.error ? html`<div class="wide"><dt>Error</dt><dd class="err-text" data-testid="attempt-error">${this.errorText(a.error)}</dd></div>` : ""}
        ${attrs.length ? html`<div class="wide"><dt>Attributes</dt><dd>${attrs.map(([k, v]) => html`<code class="attr">${k}=${v}</code> `)}</dd></div>` : ""}
      </dl></li>`;
  }
}

// ---------------------------------------------------------------- the workflow DAG (inline SVG)

/** A node's colour: the first state of NODE_PRIORITY it has any asset in. */
function nodeState(counts) {
  for (const s of NODE_PRIORITY) if (num(counts?.[s]) > 0) return s;
  return "unspecified";
}

/**
 * Layered layout by WorkflowNode.depth (longest path from a root, computed by the receiver):
 * one layer per depth; inside a layer nodes are ordered by the mean position of their
 * upstream nodes (one barycenter pass, which removes the obvious crossings), then by id.
 * Wide containers lay layers left to right, narrow ones top to bottom.
 */
function dag(workflow, pid, details, selAsset, available) {
  const nodes = workflow.nodes ?? [];
  const edges = (workflow.edges ?? []).filter((e) => e.fromNodeId && e.toNodeId);
  if (!nodes.length) return html`<p class="muted">No workflow known for this pipeline.</p>`;
  const byId = new Map(nodes.map((n) => [n.nodeId, n]));
  const detailById = new Map(details.map((d) => [d.nodeId, d]));
  const layers = [];
  for (const n of nodes) (layers[num(n.depth)] ??= []).push(n);
  const pos = new Map();
  layers.forEach((layer, d) => {
    if (!layer) { layers[d] = []; return; }
    const key = (n) => {
      const ups = edges.filter((e) => e.toNodeId === n.nodeId && pos.has(e.fromNodeId)).map((e) => pos.get(e.fromNodeId));
      return ups.length ? ups.reduce((a, b) => a + b, 0) / ups.length : Number.MAX_SAFE_INTEGER;
    };
    layer.sort((a, b) => key(a) - key(b) || String(a.nodeId).localeCompare(String(b.nodeId)));
    layer.forEach((n, i) => pos.set(n.nodeId, i));
  });

  const depthCount = layers.length, breadth = Math.max(...layers.map((l) => l.length));
  const pad = 8, gapCross = 18;
  // Left to right on wide containers (scrolling sideways if the layers do not fit at 140 px a
  // box), top to bottom on narrow ones; boxes are 140..210 px wide.
  const fitW = (n, gap) => Math.floor((available - 2 * pad - (n - 1) * gap) / n);
  const horizontal = available >= 640 || fitW(depthCount, 40) >= 140;
  const gapMain = horizontal ? (fitW(depthCount, 56) >= 170 ? 56 : 40) : 36;
  const W = Math.max(140, Math.min(210, horizontal ? fitW(depthCount, gapMain) : fitW(breadth, gapCross)));
  const lineH = 15, perLine = W >= 190 ? 2 : 1;
  const countLines = (n) => {
    const parts = STATES.filter((s) => num(n.counts?.[s]) > 0).map((s) => `${GLYPH[s]} ${num(n.counts[s])} ${s}`);
    const lines = [];
    for (let i = 0; i < parts.length; i += perLine) lines.push(parts.slice(i, i + perLine).join("  "));
    return lines.length ? lines : ["no assets yet"];
  };
  const fit = (text, px) => { const max = Math.max(4, Math.floor(px / 7.4)); return text.length > max ? `${text.slice(0, max - 1)}…` : text; };
  const maxLines = Math.max(1, ...nodes.map((n) => countLines(n).length));
  const top = 68; // title, state and stage lines; then the count lines
  const H = top + 6 + maxLines * lineH + (selAsset ? lineH + 4 : 0);
  const xy = (n) => {
    const d = num(n.depth), i = pos.get(n.nodeId);
    const offset = (breadth - layers[d].length) / 2; // centre short layers
    return horizontal
      ? { x: pad + d * (W + gapMain), y: pad + (i + offset) * (H + gapCross) }
      : { x: pad + (i + offset) * (W + gapCross), y: pad + d * (H + gapMain) };
  };
  const width = horizontal ? pad * 2 + depthCount * W + (depthCount - 1) * gapMain : pad * 2 + breadth * W + (breadth - 1) * gapCross;
  const height = horizontal ? pad * 2 + breadth * H + (breadth - 1) * gapCross : pad * 2 + depthCount * H + (depthCount - 1) * gapMain;

  const paths = edges.filter((e) => byId.has(e.fromNodeId) && byId.has(e.toNodeId)).map((e) => {
    const a = xy(byId.get(e.fromNodeId)), b = xy(byId.get(e.toNodeId));
    let d;
    if (horizontal) {
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x - 4, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      d = `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
    } else {
      const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y - 4, my = (y1 + y2) / 2;
      d = `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`;
    }
    return html`<path class="edge" d="${d}" marker-end="url(#arrow-${pid})"><title>${e.fromNodeId} → ${e.toNodeId}</title></path>`;
  });

  const boxes = nodes.map((n) => {
    const { x, y } = xy(n);
    const st = nodeState(n.counts);
    const lines = countLines(n);
    const total = num(n.counts?.total);
    let bx = 0;
    const segs = total ? STATES.filter((s) => num(n.counts?.[s]) > 0).map((s) => {
      const w = ((W - 20) * num(n.counts[s])) / total;
      const r = html`<rect class="seg st-${s}" x="${(x + 10 + bx).toFixed(1)}" y="${y + H - 14}" width="${w.toFixed(1)}" height="6"></rect>`;
      bx += w; return r;
    }) : [];
    const det = detailById.get(n.nodeId);
    const mine = selAsset ? (det ? stateName(det.state) : "not started") : "";
    const label = `${n.nodeId}, stage ${n.stageId || "none"}, shown as ${st}: ${lines.join(", ")}${selAsset ? `; ${selAsset}: ${mine}` : ""}`;
    return html`<g class="node st-${st}" data-testid="dag-node" data-node-id="${n.nodeId}" data-state="${st}" tabindex="0" role="button"
        aria-label="${label}" data-action="dag-node" data-pipeline="${pid}" data-node="${n.nodeId}" data-key="dag:${pid}/${n.nodeId}">
      <title>${label}</title>
      <rect class="box" x="${x}" y="${y}" width="${W}" height="${H}" rx="8"></rect>
      <text class="node-title" x="${x + 10}" y="${y + 19}">${fit(String(n.nodeId), (W - 20) * 0.86)}</text>
      <text class="node-state" x="${x + 10}" y="${y + 36}">${GLYPH[st] ?? ""} ${st}</text>
      <text class="node-stage" x="${x + 10}" y="${y + 52}">${fit(`stage ${n.stageId || "—"}`, W - 20)}</text>
      ${lines.map((l, i) => html`<text class="node-counts" x="${x + 10}" y="${y + top + i * lineH}" data-testid="dag-counts">${l}</text>`)}
      ${selAsset ? html`<text class="node-mine st-text-${det ? stateName(det.state) : "none"}" x="${x + 10}" y="${y + top + maxLines * lineH + 2}"
          data-testid="dag-selected-state">▸ ${det ? `${GLYPH[stateName(det.state)] ?? ""} ${mine}` : mine}</text>` : ""}
      ${segs}
    </g>`;
  });

  const legend = STATES.map((s) => html`<li><span class="swatch st-${s}" aria-hidden="true"></span>${GLYPH[s]} ${s}</li>`);
  return html`<figure class="dag" data-testid="dag">
    <div class="dag-scroll" tabindex="-1" data-scroll-key="dag:${pid}">
    <svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="group"
        aria-label="Workflow of pipeline ${pid}: ${nodes.length} nodes, ${edges.length} edges">
      <defs><marker id="arrow-${pid}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
        <path d="M0,0 L10,5 L0,10 z" class="arrow"></path></marker></defs>
      ${paths}${boxes}
    </svg></div>
    <figcaption data-orientation="${horizontal ? "horizontal" : "vertical"}" data-testid="dag-caption">Layers by depth (longest path from a root), ${horizontal ? "left to right" : "top to bottom"}.
      A node takes the colour of the first state, in the order running, waiting, failed, queued, complete, skipped, that any asset has there;
      counts are the latest attempt per asset.${selAsset ? ` The line marked ▸ is the state of the selected asset, ${selAsset}.` : ""}
      <ul class="legend" aria-label="Legend">${legend}</ul></figcaption>
  </figure>`;
}

// ---------------------------------------------------------------- events

main.addEventListener("click", (e) => {
  const el = e.target.closest("[data-action]");
  if (el && main.contains(el)) view?.action?.(el.dataset.action, el);
});
main.addEventListener("keydown", (e) => {
  // SVG nodes are role=button: Enter and Space activate them like a button.
  const el = e.target.closest?.("g[data-action]");
  if (el && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); view?.action?.(el.dataset.action, el); }
});
main.addEventListener("change", (e) => {
  const el = e.target.closest("[data-action-change]");
  if (el) view?.action?.(el.dataset.actionChange, el);
});
window.addEventListener("hashchange", route);
route();

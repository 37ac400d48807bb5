// q4d transfers card: a q4d bridge's queue, live (custom:q4d-transfers-card).
//
// Served and loaded by the q4d integration itself (custom_components/q4d/card.py);
// plain ES module, no build step. Data: the integration's websocket subscription
// `q4d/transfers/subscribe` (a snapshot, then batched changes); actions: the q4d.*
// actions. Colours come from the Home Assistant theme, so light and dark both work.

const CARD = "q4d-transfers-card";
const FINISHED = new Set(["done", "failed", "cancelled"]);
const SPACE_ERRORS = new Set(["insufficient_space", "no_space"]);
// Unfinished items first by what they do, then in the bridge's own order; torrent
// requests (still downloading on a seedbox) after the queue.
const ORDER = {
  transferring: 0,
  verifying: 1,
  processing: 1,
  waiting: 2,
  queued: 3,
  downloading: 4,
  requested: 5,
};
// What the card says an item is doing while its post-processing steps run.
const STEP_NAMES = {
  extract: "Extracting",
  handoff: "Handing off to the home client",
  arr_import: "Importing",
  cleanup: "Removing from the seedbox",
};
const KEPT_FINISHED = 50; // finished items kept in memory (the history shows `history`)
const SPARK_SECONDS = 120;
const RETRY_SUBSCRIBE_MS = 5000;
const DEFAULTS = { title: "Transfers", max_items: 50, history: 10, sparkline: true };
const OPTION_TYPES = { entry_id: "string", title: "string", sparkline: "boolean" };
const ICONS = {
  pause: "mdi:pause",
  resume: "mdi:play",
  cancel: "mdi:close",
  retry: "mdi:restart",
  up: "mdi:arrow-up",
  down: "mdi:arrow-down",
  done: "mdi:check-circle",
  failed: "mdi:alert-circle",
  cancelled: "mdi:cancel",
};
const LABELS = {
  pause: "Pause",
  resume: "Resume",
  cancel: "Cancel",
  retry: "Retry",
  up: "Raise priority",
  down: "Lower priority",
};

const esc = (value) =>
  String(value ?? "").replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c],
  );

function bytes(value) {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let n = value;
  let unit = 0;
  while (n >= 1000 && unit < units.length - 1) {
    n /= 1000;
    unit += 1;
  }
  return `${n.toFixed(n < 10 && unit ? 1 : 0)} ${units[unit]}`;
}

const rate = (value) => `${bytes(value || 0)}/s`;

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// The buttons that apply to an item in its state (what the bridge accepts).
function actions(item) {
  if (item.request) return []; // not in the queue yet: no queue command applies
  const pauseOrResume = item.paused ? "resume" : "pause";
  switch (item.state) {
    case "queued":
      return [pauseOrResume, "up", "down", "cancel"];
    case "waiting":
      return [pauseOrResume, "retry", "up", "down", "cancel"];
    case "transferring":
      return ["pause", "cancel"];
    case "processing":
      return ["cancel"]; // stops its steps; what landed stays
    case "failed":
    case "cancelled":
      return ["retry"];
    default:
      return []; // verifying finishes in a moment; done is done
  }
}

// innerHTML, only when it changed: rewriting a button under the pointer loses its click.
function setHtml(element, html) {
  if (element._html !== html) {
    element.innerHTML = html;
    element._html = html;
  }
}

class Q4dTransfersCard extends HTMLElement {
  static getStubConfig() {
    return { title: DEFAULTS.title };
  }

  constructor() {
    super();
    this.attachShadow({ mode: "open" });
    this._config = { ...DEFAULTS };
    this._items = new Map();
    this._rows = new Map(); // item id -> its row, reused while the item is shown
    this._bridge = undefined; // undefined: no snapshot yet; null: the entry is not loaded
    this._samples = []; // [time, total rate], the last SPARK_SECONDS
    this._pending = new Set(); // buttons whose action is under way
  }

  setConfig(config) {
    if (!config || typeof config !== "object") throw new Error("Invalid configuration");
    for (const key of ["max_items", "history"]) {
      if (key in config && !(Number.isInteger(config[key]) && config[key] >= 0)) {
        throw new Error(`${key} must be a whole number, 0 or more`);
      }
    }
    for (const [key, type] of Object.entries(OPTION_TYPES)) {
      if (key in config && typeof config[key] !== type) throw new Error(`${key} must be a ${type}`);
    }
    const resubscribe = this._unsubscribe && config.entry_id !== this._config.entry_id;
    this._config = { ...DEFAULTS, ...config };
    if (resubscribe) {
      this._stop();
      this._start();
    }
    this._render();
  }

  set hass(hass) {
    const first = !this._hass;
    this._hass = hass;
    if (first && this.isConnected) this._start();
  }

  get hass() {
    return this._hass;
  }

  getCardSize() {
    const shown = Math.min(this._active().length, this._config.max_items);
    return 3 + Math.ceil(shown * 1.5) + Math.min(this._history().length, this._config.history);
  }

  getGridOptions() {
    return { columns: 12, rows: "auto", min_columns: 6 };
  }

  connectedCallback() {
    if (this._hass) this._start();
  }

  disconnectedCallback() {
    this._stop();
  }

  // --- the subscription ---------------------------------------------------------------

  _start() {
    // A sample a second as well: the sparkline moves on while the bridge is silent.
    this._ticker ??= setInterval(() => this._tick(), 1000);
    if (this._unsubscribe || this._subscribing) return;
    this._subscribing = true;
    const message = { type: "q4d/transfers/subscribe" };
    if (this._config.entry_id) message.entry_id = this._config.entry_id;
    this._hass.connection
      .subscribeMessage((event) => this._receive(event), message)
      .then(
        (unsubscribe) => {
          this._error = undefined;
          if (this.isConnected) this._unsubscribe = unsubscribe;
          else unsubscribe();
        },
        (err) => {
          this._error = err?.message || String(err);
          if (this.isConnected) this._retry = setTimeout(() => this._start(), RETRY_SUBSCRIBE_MS);
          this._render();
        },
      )
      .finally(() => {
        this._subscribing = false;
      });
  }

  _stop() {
    clearTimeout(this._retry);
    clearInterval(this._ticker);
    this._ticker = undefined;
    if (this._unsubscribe) {
      this._unsubscribe().catch(() => {}); // the connection may be gone already
      this._unsubscribe = undefined;
    }
  }

  _receive(event) {
    if (event.type === "snapshot") {
      this._entryId = event.entry_id;
      this._bridge = event.bridge;
      this._items = new Map(event.items.map((item) => [item.id, item]));
    } else {
      for (const item of event.items) this._items.set(item.id, item);
      for (const id of event.removed) this._items.delete(id);
      if (event.bridge) this._bridge = event.bridge;
    }
    if (event.bridge) this._sample(); // the sparkline shows a new rate at once
    for (const item of this._history().slice(KEPT_FINISHED)) this._items.delete(item.id);
    this._scheduleRender();
  }

  _tick() {
    this._sample();
    if (this._config.sparkline && this._bridge) this._renderSparkline();
  }

  _sample() {
    const now = Date.now() / 1000;
    this._samples.push([now, this._bridge?.online ? this._bridge.rate : 0]);
    while (this._samples[0][0] < now - SPARK_SECONDS) this._samples.shift();
  }

  // --- actions ------------------------------------------------------------------------

  async _act(action, id) {
    const data = { config_entry_id: this._entryId };
    let service = action;
    if (id) data.item_id = id;
    if (action === "up" || action === "down") {
      const priority = this._items.get(id).priority + (action === "up" ? 1 : -1);
      service = "set_priority";
      data.priority = Math.max(-100, Math.min(100, priority));
    }
    const key = `${action}:${id}`;
    this._pending.add(key);
    this._render();
    try {
      await this._hass.callService("q4d", service, data);
    } catch {
      // Home Assistant shows the bridge's refusal as a notification already.
    } finally {
      this._pending.delete(key);
      this._render();
    }
  }

  _onClick(event) {
    const button = event.target.closest("button[data-action]");
    if (button && !button.disabled) this._act(button.dataset.action, button.dataset.id);
  }

  // --- rendering ----------------------------------------------------------------------

  _active() {
    return [...this._items.values()]
      .filter((item) => !FINISHED.has(item.state))
      .sort(
        (a, b) =>
          ORDER[a.state] - ORDER[b.state] ||
          b.priority - a.priority ||
          (a.received_at || 0) - (b.received_at || 0),
      );
  }

  _history() {
    return [...this._items.values()]
      .filter((item) => FINISHED.has(item.state))
      .sort((a, b) => (b.finished_at || 0) - (a.finished_at || 0));
  }

  _scheduleRender() {
    this._frame ??= requestAnimationFrame(() => {
      this._frame = undefined;
      this._render();
    });
  }

  _skeleton() {
    this.shadowRoot.innerHTML = `<style>${STYLE}</style>
      <ha-card>
        <div class="header">
          <div class="card-header"></div>
          <div class="bridge"></div>
          <div class="queue-actions"></div>
        </div>
        <div class="banner" hidden></div>
        <div class="summary"></div>
        <div class="spark" hidden></div>
        <div class="list active" role="list"></div>
        <div class="more"></div>
        <div class="history-title">Recent</div>
        <div class="list history" role="list"></div>
      </ha-card>`;
    this.shadowRoot.addEventListener("click", (event) => this._onClick(event));
    const parts = ["card-header", "bridge", "queue-actions", "banner", "summary", "spark"];
    this._el = Object.fromEntries(
      [...parts, "active", "more", "history-title", "history"].map((name) => [
        name,
        this.shadowRoot.querySelector(`.${name}`),
      ]),
    );
  }

  _render() {
    if (!this._el) this._skeleton();
    const el = this._el;
    const bridge = this._bridge;
    el["card-header"].textContent = this._config.title;
    setHtml(el.bridge, this._bridgeLine(bridge));
    const pause = bridge && !bridge.paused;
    setHtml(el["queue-actions"], pause ? this._button("pause", "", "Pause queue") : "");
    const banner = this._banner(bridge);
    el.banner.hidden = !banner;
    setHtml(el.banner, banner);
    setHtml(el.summary, bridge ? this._summary(bridge) : "");
    el.spark.hidden = !(this._config.sparkline && bridge);
    if (!el.spark.hidden) this._renderSparkline();

    const active = this._active();
    const shown = active.slice(0, this._config.max_items);
    this._fill(el.active, shown, "row", (item) => this._activeRow(item, bridge));
    const more = active.length - shown.length;
    const idle = bridge && !active.length;
    el.more.textContent = more ? `and ${more} more` : idle ? "Nothing to transfer." : "";

    const history = this._history().slice(0, this._config.history);
    el["history-title"].hidden = !this._config.history;
    this._fill(el.history, history, "row finished", (item) => this._historyRow(item));
    if (this._config.history && bridge && !history.length) {
      el.history.innerHTML = `<div class="empty">No finished transfers yet.</div>`;
    }
  }

  // One row per item, kept while it is shown; its texts and its buttons are rewritten
  // only when they change.
  _fill(list, items, className, texts) {
    const rows = items.map((item) => {
      let row = this._rows.get(item.id);
      if (!row) {
        row = document.createElement("div");
        row.setAttribute("role", "listitem");
        row.innerHTML = `<div class="texts"></div><div class="buttons"></div>`;
        this._rows.set(item.id, row);
      }
      row.className = className;
      setHtml(row.firstChild, texts(item));
      setHtml(row.lastChild, actions(item).map((action) => this._button(action, item.id)).join(""));
      return row;
    });
    const current = [...list.children];
    if (current.length !== rows.length || rows.some((row, i) => current[i] !== row)) {
      list.replaceChildren(...rows);
    }
    for (const [id, row] of this._rows) {
      if (!row.isConnected && !this._items.has(id)) this._rows.delete(id);
    }
  }

  _bridgeLine(bridge) {
    if (this._error) return `<span class="bad">${esc(this._error)}</span>`;
    if (bridge === undefined) return "Connecting…";
    if (bridge === null) return `<span class="bad">The q4d bridge is not loaded</span>`;
    const status = bridge.online ? "online" : `<span class="bad">offline</span>`;
    return `${esc(bridge.name)} · ${status}`;
  }

  _banner(bridge) {
    if (!bridge) return "";
    if (!bridge.online) {
      return `<ha-icon icon="mdi:lan-disconnect"></ha-icon>
        <span>The bridge is offline: this is what it said last.</span>`;
    }
    if (!bridge.paused) return "";
    return `<ha-icon icon="mdi:pause-circle"></ha-icon>
      <span>Queue paused: no transfer starts until it is resumed.</span>
      ${this._button("resume", "", "Resume queue")}`;
  }

  _summary(bridge) {
    const counts = bridge.counts;
    const chips = [
      ["active", (counts.transferring || 0) + (counts.verifying || 0) + (counts.processing || 0)],
      ["queued", counts.queued || 0],
      ["waiting", counts.waiting || 0],
      ["failed", counts.failed || 0],
      ["done", counts.done || 0],
    ].map(([name, n]) => `<span class="chip ${n ? name : ""}"><b>${n}</b> ${name}</span>`);
    // Torrents added through q4d that are still downloading on a seedbox (only with some).
    const requests = (counts.requested || 0) + (counts.downloading || 0);
    if (requests) chips.unshift(`<span class="chip seedbox"><b>${requests}</b> on seedbox</span>`);
    const limit = ` <span class="dim">(${
      bridge.bandwidth_limit ? `limit ${rate(bridge.bandwidth_limit)}` : "unlimited"
    })</span>`;
    return `<div class="chips">${chips.join("")}</div>
      <div class="rate"><ha-icon icon="mdi:download-network"></ha-icon>
        <b>${rate(bridge.rate)}</b>${limit}</div>`;
  }

  _renderSparkline() {
    const now = Date.now() / 1000;
    const peak = Math.max(0, ...this._samples.map(([, value]) => value));
    const xy = this._samples.map(([t, value]) => [
      (SPARK_SECONDS - (now - t)).toFixed(1),
      (30 - (value / (peak || 1)) * 28).toFixed(1),
    ]);
    const line = xy.map(([x, y]) => `${x},${y}`).join(" ");
    const area = xy.length
      ? `M${xy[0][0]},30 L${line.replaceAll(" ", " L")} L${xy.at(-1)[0]},30 Z`
      : "";
    this._el.spark.innerHTML = `
      <svg viewBox="0 0 ${SPARK_SECONDS} 30" preserveAspectRatio="none" aria-hidden="true">
        <path d="${area}"></path><polyline points="${line}"></polyline>
      </svg>
      <div class="spark-label">
        <span>total rate, last 2 min</span><span>peak ${rate(peak)}</span>
      </div>`;
  }

  _stateText(item, bridge) {
    switch (item.state) {
      case "queued":
        if (item.paused) return ["Paused", "paused"];
        return bridge?.paused ? ["Paused (queue paused)", "paused"] : ["Queued", ""];
      case "transferring":
        return ["Transferring", "busy"];
      case "verifying":
        return ["Verifying", "busy"];
      case "processing": {
        const step = STEP_NAMES[item.step] || item.step || "post-processing";
        return item.error ? [`${step}: retrying (${item.error})`, "warn"] : [`${step}…`, "busy"];
      }
      case "waiting":
        if (item.paused) return ["Paused", "paused"];
        if (SPACE_ERRORS.has(item.error_code)) return ["Waiting for space", "warn"];
        if (!item.next_attempt_at) return ["Waiting to retry", "warn"];
        return [`Retrying at ${this._when(item.next_attempt_at, true)}`, "warn"];
      case "requested":
        return item.paused ? ["Requested (paused)", "paused"] : ["Requested", ""];
      case "downloading":
        return item.paused ? ["Paused on seedbox", "paused"] : ["Downloading on seedbox", "busy"];
      case "failed": {
        const failed = item.request ? "Request failed" : item.step ? "Home; failed" : "Failed";
        return [`${failed}${item.error ? `: ${item.error}` : ""}`, "bad"];
      }
      case "done":
        return ["Done", "good"];
      default:
        return ["Cancelled", ""];
    }
  }

  _activeRow(item, bridge) {
    const [state, tone] = this._stateText(item, bridge);
    const where = [this._bridge?.seedboxes?.[item.seedbox] || item.seedbox, item.destination];
    const priority = item.priority ? ` <span class="chip">priority ${item.priority}</span>` : "";
    const figures = [`${Math.floor(item.progress)} %`];
    if (item.state === "transferring" || item.state === "downloading") {
      figures.push(rate(item.rate));
      if (item.eta != null) figures.push(`${duration(item.eta)} left`);
    }
    if (item.size != null) figures.push(`${bytes(item.bytes_done || 0)} of ${bytes(item.size)}`);
    const width = Math.min(100, Math.max(0, item.progress));
    const error =
      item.state === "waiting" && item.error ? `<div class="error">${esc(item.error)}</div>` : "";
    return `<div class="name" title="${esc(item.name)}">${esc(item.name)}</div>
      <div class="meta"><span class="state ${tone}">${esc(state)}</span> ·
        ${where.filter(Boolean).map(esc).join(" → ")}${priority}</div>
      <div class="bar ${tone}"><div style="width:${width}%"></div></div>
      <div class="figures">${figures.map(esc).join(" · ")}</div>${error}`;
  }

  _historyRow(item) {
    const [state, tone] = this._stateText(item);
    const facts = [];
    if (item.finished_at) facts.push(this._when(item.finished_at));
    if (item.state === "done" && item.size != null) {
      facts.push(bytes(item.size));
      if (item.duration) {
        facts.push(`in ${duration(item.duration)}`, `${rate(item.size / item.duration)} average`);
      }
    }
    const path = item.state === "done" && item.local_path ? esc(item.local_path) : "";
    return `<ha-icon class="${tone}" icon="${ICONS[item.state]}"></ha-icon>
      <div class="name" title="${esc(item.name)}">${esc(item.name)}</div>
      <div class="meta"><span class="state ${tone}">${esc(state)}</span>${facts
        .map((fact) => ` · ${esc(fact)}`)
        .join("")}</div>${path ? `<div class="path">${path}</div>` : ""}`;
  }

  // A time of day, with the date unless it is today's.
  _when(timestamp, seconds = false) {
    const date = new Date(timestamp * 1000);
    const time = seconds ? "medium" : "short";
    const options = { timeStyle: time };
    if (date.toDateString() !== new Date().toDateString()) options.dateStyle = "short";
    return date.toLocaleString(this._hass?.locale?.language || this._hass?.language, options);
  }

  // An icon button for an item's action, or a labelled one for the queue's (no id).
  _button(action, id, label = LABELS[action]) {
    const busy = this._pending.has(`${action}:${id}`) ? " disabled" : "";
    const text = id ? "" : `<span>${label}</span>`;
    return `<button class="${id ? "icon" : "text"}" data-action="${action}" data-id="${id}"
      title="${label}" aria-label="${label}"${busy}>
      <ha-icon icon="${ICONS[action]}"></ha-icon>${text}</button>`;
  }
}

const STYLE = `
  :host { display: block; }
  ha-card { padding: 16px; container-type: inline-size; color: var(--primary-text-color); }
  .header { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 12px; }
  .card-header { font-size: var(--ha-card-header-font-size, 24px); line-height: 32px; }
  .bridge { color: var(--secondary-text-color); flex: 1 1 auto; }
  .queue-actions { margin-left: auto; }
  .bad { color: var(--error-color, #db4437); }
  .good { color: var(--success-color, #43a047); }
  .warn { color: var(--warning-color, #ffa600); }
  .busy, .paused { color: var(--primary-color); }
  .dim { color: var(--secondary-text-color); }
  .banner { display: flex; align-items: center; gap: 8px; margin-top: 12px; padding: 8px 12px;
    border-radius: var(--ha-card-border-radius, 12px);
    background: rgba(var(--rgb-warning-color, 255, 166, 0), 0.15); }
  .banner[hidden], .spark[hidden], .history-title[hidden] { display: none; }
  .banner span { flex: 1; }
  .summary { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: center;
    gap: 8px; margin-top: 12px; }
  .chips { display: flex; flex-wrap: wrap; gap: 6px; }
  .chip { padding: 2px 8px; border-radius: 12px; font-size: 0.85em; white-space: nowrap;
    background: var(--secondary-background-color); color: var(--secondary-text-color); }
  .chip.active, .chip.seedbox { color: var(--primary-color); }
  .chip.failed { color: var(--error-color, #db4437); }
  .chip.waiting { color: var(--warning-color, #ffa600); }
  .rate { display: flex; align-items: center; gap: 4px; white-space: nowrap; }
  .rate ha-icon { --mdc-icon-size: 20px; color: var(--primary-color); }
  .spark { margin-top: 8px; }
  .spark svg { width: 100%; height: 40px; display: block; }
  .spark polyline { fill: none; stroke: var(--primary-color); stroke-width: 1.5;
    vector-effect: non-scaling-stroke; }
  .spark path { fill: var(--primary-color); opacity: 0.15; }
  .spark-label { display: flex; justify-content: space-between; font-size: 0.75em;
    color: var(--secondary-text-color); }
  .list { margin-top: 8px; }
  /* A row: the texts in the first column, the buttons beside them. */
  .row { display: grid; grid-template-columns: minmax(0, 1fr) auto; column-gap: 8px;
    align-items: center; padding: 8px 0; border-top: 1px solid var(--divider-color); }
  .texts { display: contents; }
  .texts > * { grid-column: 1; }
  .row > .buttons { grid-column: 2; grid-row: 1 / span 4; display: flex; gap: 2px; }
  .row.finished { grid-template-columns: auto minmax(0, 1fr) auto; }
  .finished .texts > * { grid-column: 2; }
  .finished .texts > ha-icon { grid-column: 1; grid-row: 1 / span 3; }
  .finished > .buttons { grid-column: 3; grid-row: 1 / span 3; }
  .name { font-weight: 500; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .meta, .figures, .path { font-size: 0.85em; color: var(--secondary-text-color); }
  .path, .error, .state.bad { overflow-wrap: anywhere; }
  .error { font-size: 0.85em; color: var(--error-color, #db4437); }
  .bar { height: 6px; margin: 6px 0 4px; border-radius: 3px; overflow: hidden;
    background: var(--secondary-background-color); }
  .bar > div { height: 100%; background: var(--primary-color); transition: width 0.3s; }
  .bar.warn > div { background: var(--warning-color, #ffa600); }
  .bar.paused > div { background: var(--disabled-text-color, #bdbdbd); }
  button { font: inherit; color: var(--primary-text-color); background: none; cursor: pointer;
    border: none; border-radius: 18px; display: inline-flex; align-items: center; gap: 4px; }
  button:hover { background: var(--secondary-background-color); }
  button:disabled { opacity: 0.4; cursor: progress; }
  button.icon { width: 36px; height: 36px; justify-content: center; padding: 0; }
  button.text { padding: 6px 12px; color: var(--primary-color); }
  button ha-icon { --mdc-icon-size: 20px; }
  .more, .empty { padding: 8px 0; color: var(--secondary-text-color); }
  .history-title { margin-top: 12px; font-weight: 500; }
  /* Phone width: the texts take the whole row, the buttons go beside the figures. */
  @container (max-width: 480px) {
    .row:not(.finished) .texts > :is(.name, .meta, .bar, .error) { grid-column: 1 / -1; }
    .row:not(.finished) .figures, .row:not(.finished) > .buttons { grid-row: 4; }
    .bridge { flex-basis: 100%; order: 3; }
  }
`;

// Home Assistant's app replaces window.customElements with a scoped-registry polyfill,
// and it imports this module in parallel with that app: a definition made before the
// polyfill would be invisible to the dashboards. The app's root element is defined after.
customElements.whenDefined("home-assistant").then(() => {
  if (customElements.get(CARD)) return; // loaded twice (also added as a resource)
  customElements.define(CARD, Q4dTransfersCard);
  window.customCards = window.customCards || [];
  window.customCards.push({
    type: CARD,
    name: "q4d transfers",
    description: "The q4d bridge's queue, live: progress, rates, actions and recent history.",
    documentationURL: "https://github.com/q4d-project/q4d/blob/main/docs/home-assistant.md",
  });
});

// The rtcsignald dashboard: polls the admin API with the token kept in
// sessionStorage (this tab only) and draws what it gets.  Everything is
// written with textContent: nothing from the API becomes markup.
"use strict";
(function () {
  const POLL_MS = 2000;
  const HISTORY = 150; // points: 5 minutes at POLL_MS
  const KEY = "rtcsignald-admin-token";
  const $ = (id) => document.getElementById(id);
  const history = []; // {t, rate}
  let last = null; // the previous sample of messages received
  let timer = null;

  function token() { return sessionStorage.getItem(KEY); }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: "Bearer " + token() }, cache: "no-store" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch("/api/" + path, opts);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) {
      let msg = (data && data.error) || ("HTTP " + r.status);
      if (r.status === 401 && /expired/.test(msg)) msg = "The token has expired: sign in again with a new one.";
      else if (r.status === 401) msg = "The token was refused: it is not the admin token or a valid administrator's JWT.";
      else if (r.status === 403) msg = "Not allowed: " + msg;
      else if (r.status === 429) msg = "Too many requests from this address; retrying shortly.";
      throw new ApiError(r.status, msg);
    }
    return data;
  }

  function text(el, s) { el.textContent = s; return el; }
  function cell(row, s) { return text(row.insertCell(), s); }
  function clear(tbody) { while (tbody.firstChild) tbody.removeChild(tbody.firstChild); }

  function age(seconds) {
    if (seconds == null) return "";
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 120) return seconds + " s";
    if (seconds < 7200) return Math.round(seconds / 60) + " min";
    if (seconds < 172800) return Math.round(seconds / 3600) + " h";
    return Math.round(seconds / 86400) + " d";
  }

  function sum(family) {
    let n = 0;
    for (const k in family || {}) if (k !== "") n += family[k];
    return n;
  }

  function fillTable(id, family, skipEmpty) {
    const tbody = $(id).tBodies[0];
    clear(tbody);
    const keys = Object.keys(family || {}).filter((k) => k !== "" && !(skipEmpty && !family[k])).sort();
    if (!keys.length) { cell(tbody.insertRow(), "none"); return; }
    for (const k of keys) {
      const row = tbody.insertRow();
      cell(row, k);
      cell(row, String(family[k]));
    }
  }

  // /ready says why not (the room store, the issuers' key sets, ...).
  let readiness = "…";
  async function ready() {
    try {
      const r = await fetch("/ready", { cache: "no-store" });
      const j = await r.json();
      readiness = j.reason ? "not ready: " + j.reason : j.status;
    } catch (e) {
      readiness = "unknown";
    }
  }

  function summary(d, rate) {
    const m = d.metrics;
    const get = (f) => (m[f] && m[f][""] !== undefined ? m[f][""] : sum(m[f]));
    const items = [
      ["connections", get("rtcsignald_connections")],
      ["peers", get("rtcsignald_peers")],
      ["rooms", get("rtcsignald_rooms")],
      ["messages/s", rate == null ? "…" : rate.toFixed(1)],
      ["errors sent", sum(m.rtcsignald_errors_sent_total)],
      ["limit hits", sum(m.rtcsignald_limit_hits_total)],
      ["sessions refused", sum(m.rtcsignald_sessions_refused_total)],
      ["store", (get("rtcsignald_store_pending_writes") || 0) + " pending, " +
        (get("rtcsignald_store_queue_full_total") || 0) + " refused"],
      ["key sets", (m.rtcsignald_jwks_fetches_total ? (m.rtcsignald_jwks_fetches_total.error || 0) : 0) + " failed fetches"],
      ["state", d.draining ? "draining" : readiness],
      ["uptime", age(d.now - d.start_time)],
      ["version", d.version],
    ];
    const dl = $("summary");
    while (dl.firstChild) dl.removeChild(dl.firstChild);
    for (const [k, v] of items) {
      const div = document.createElement("div");
      div.appendChild(text(document.createElement("dt"), k));
      const dd = text(document.createElement("dd"), String(v));
      dd.dataset.name = k;
      div.appendChild(dd);
      dl.appendChild(div);
    }
    text($("version"), "version " + d.version);
  }

  function drawChart() {
    const c = $("chart"), g = c.getContext("2d");
    const w = c.width, h = c.height, pad = 24;
    c.dataset.points = String(history.length); // what is drawn, for tests
    g.clearRect(0, 0, w, h);
    let max = 1;
    for (const p of history) max = Math.max(max, p.rate);
    g.strokeStyle = "#ddd";
    g.fillStyle = "#666";
    g.font = "11px sans-serif";
    g.beginPath();
    g.moveTo(pad, h - pad); g.lineTo(w - 4, h - pad);
    g.moveTo(pad, 4); g.lineTo(pad, h - pad);
    g.stroke();
    g.fillText(max.toFixed(max < 10 ? 1 : 0), 2, 12);
    g.fillText("0", 2, h - pad);
    if (history.length < 2) return;
    g.strokeStyle = "#1565c0";
    g.lineWidth = 2;
    g.beginPath();
    history.forEach((p, i) => {
      const x = pad + (i * (w - pad - 4)) / (HISTORY - 1);
      const y = h - pad - (p.rate / max) * (h - pad - 8);
      if (i) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  }

  function rooms(d) {
    const tbody = $("rooms").tBodies[0];
    clear(tbody);
    text($("rooms-total"), "(" + d.rooms_total + (d.rooms_total > d.rooms.length ? ", first " + d.rooms.length + " shown" : "") + ")");
    for (const r of d.rooms) {
      const row = tbody.insertRow();
      const name = document.createElement("a");
      name.href = "#";
      text(name, r.room_id);
      name.addEventListener("click", (e) => { e.preventDefault(); showWorkers(r.room_id); });
      row.insertCell().appendChild(name);
      cell(row, String(r.peers));
      cell(row, Object.keys(r.peers_by_role).sort().map((k) => k + ": " + r.peers_by_role[k]).join(", "));
      cell(row, r.created_at ? age(d.now - r.created_at) : "");
      cell(row, r.expires_at ? "in " + age(r.expires_at - d.now) : r.created_at ? "never" : "");
      const del = text(document.createElement("button"), "Delete");
      del.addEventListener("click", () => deleteRoom(r.room_id));
      if (!r.created_at) del.hidden = true; // not a stored room: nothing to delete
      row.insertCell().appendChild(del);
    }
  }

  async function showWorkers(room) {
    text($("workers-room"), room);
    text($("workers-error"), "");
    const tbody = $("workers").tBodies[0];
    clear(tbody);
    try {
      const d = await api("GET", "rooms/" + encodeURIComponent(room) + "/peers");
      for (const p of d.peers) {
        const row = tbody.insertRow();
        cell(row, p.peer_id);
        cell(row, p.role);
        cell(row, age(Date.now() / 1000 - p.connected_at) + " ago");
      }
    } catch (e) {
      text($("workers-error"), e.message);
    }
  }

  async function deleteRoom(room) {
    if (!window.confirm("Delete room " + room + "? Its peers get room_closed.")) return;
    try {
      await api("DELETE", "rooms/" + encodeURIComponent(room));
      await refresh();
    } catch (e) { text($("status"), e.message); }
  }

  async function audit() {
    const d = await api("GET", "audit");
    const tbody = $("audit").tBodies[0];
    clear(tbody);
    if (!d.entries.length) { cell(tbody.insertRow(), "no admin actions yet"); return; }
    for (const e of d.entries) {
      const row = tbody.insertRow();
      cell(row, new Date(e.time * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z"));
      cell(row, e.action);
      cell(row, e.object);
      cell(row, e.actor);
    }
  }

  async function refresh() {
    const d = await api("GET", "dashboard");
    await ready();
    const m = d.metrics.rtcsignald_messages_received_total;
    const now = performance.now(), total = sum(m);
    let rate = null;
    if (last && now > last.t) rate = Math.max(0, ((total - last.total) * 1000) / (now - last.t));
    last = { t: now, total };
    if (rate != null) {
      history.push({ t: now, rate });
      while (history.length > HISTORY) history.shift();
    }
    summary(d, rate);
    fillTable("roles", Object.fromEntries(Object.entries(d.metrics.rtcsignald_peers || {}).filter(([k]) => k !== "")));
    fillTable("errors", d.metrics.rtcsignald_errors_sent_total, true);
    fillTable("limits", d.metrics.rtcsignald_limit_hits_total, true);
    fillTable("refused", d.metrics.rtcsignald_sessions_refused_total, true);
    rooms(d);
    drawChart();
    await audit();
    text($("status"), "");
  }

  async function tick() {
    try {
      await refresh();
    } catch (e) {
      if (e.status === 401 || e.status === 403) { signOut(e.message); return; }
      text($("status"), e.message);
    }
    timer = window.setTimeout(tick, POLL_MS);
  }

  function signedIn() {
    $("signin").hidden = true;
    $("main").hidden = false;
    $("signout").hidden = false;
    tick();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    if (timer) window.clearTimeout(timer);
    timer = null;
    last = null;
    history.length = 0;
    $("main").hidden = true;
    $("signout").hidden = true;
    $("signin").hidden = false;
    text($("signin-error"), message || "");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const t = $("token").value.trim();
      $("token").value = "";
      if (!t) { text($("signin-error"), "Enter the admin token."); return; }
      sessionStorage.setItem(KEY, t);
      try {
        await api("GET", "dashboard");
        text($("signin-error"), "");
        signedIn();
      } catch (err) {
        sessionStorage.removeItem(KEY);
        text($("signin-error"), err.message);
      }
    });
    $("signout").addEventListener("click", () => signOut(""));
    $("create-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const name = $("create-name").value.trim();
      try {
        // The room's token is in the answer; the page drops it unread:
        // it is given to clients through the API or rtcsignalctl.
        await api("POST", "rooms", name ? { name } : {});
        $("create-name").value = "";
        await refresh();
      } catch (err) { text($("status"), err.message); }
    });
    if (token()) signedIn();
  });
})();

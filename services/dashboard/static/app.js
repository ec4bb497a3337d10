// The dashboard page: fetches /api/overview (and /api/windows on its tab) and fills the
// tables. Every value goes in as text (textContent), never as HTML.
"use strict";

const state = { tab: "pipeline", sensor: "", refreshMs: 5000, timer: null };

function cell(row, value, numeric) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "" : String(value);
  if (numeric) td.className = "num";
  row.appendChild(td);
}

function fill(tableId, rows, columns, rowClass) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement("tr");
    for (const [pick, numeric] of columns) cell(tr, pick(item), numeric);
    if (rowClass) tr.className = rowClass(item);
    body.appendChild(tr);
  }
}

// "2026-11-21T10:05:00.000+00:00" -> "2026-11-21 10:05:00Z": short, still unambiguous.
function when(text) {
  if (typeof text !== "string") return text;
  return text.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z");
}

function number(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : "";
}

function showError(id, section) {
  const text = section && section.error ? section.error + (section.hint ? ` (${section.hint})` : "") : "";
  document.getElementById(id).textContent = text;
  return Boolean(text);
}

function renderScenario(section) {
  if (showError("scenario-error", section)) {
    document.getElementById("scenario-active").textContent = "unknown";
    fill("history", [], []);
    return;
  }
  const active = section.active;
  document.getElementById("scenario-active").textContent = active.scenario;
  document.getElementById("scenario-meta").textContent =
    `config version ${active.config_version}, set by ${active.updated_by} at ${when(active.updated_at)}` +
    (active.reason ? `: ${active.reason}` : "");
  fill("history", section.history, [
    [(r) => r.config_version, true], [(r) => r.scenario], [(r) => when(r.updated_at)],
    [(r) => r.updated_by], [(r) => r.reason],
  ]);
}

function renderQueues(section) {
  if (showError("queues-error", section)) return fill("queues", [], []);
  const held = section.dlq_messages;
  document.getElementById("dlq-summary").textContent =
    held > 0 ? `${held} message(s) in dead-letter queues` : "dead-letter queues: empty";
  fill("queues", section.queues, [
    [(q) => q.name], [(q) => q.role],
    [(q) => (q.exists ? q.visible : "missing"), true],
    [(q) => (q.exists ? q.in_flight : ""), true],
    [(q) => (q.exists ? q.delayed : ""), true],
  ], (q) => (q.role === "dlq" && q.total > 0 ? "alert" : ""));
}

function renderThroughput(section) {
  const note = document.getElementById("throughput-note");
  const shown = !showError("throughput-error", section) && section.configured;
  document.getElementById("throughput").hidden = !shown;
  document.getElementById("lag").hidden = !shown;
  if (!shown) {
    note.textContent = section && section.hint ? `not configured: ${section.hint}` : "";
    fill("throughput", [], []);
    fill("lag", [], []);
    return;
  }
  note.textContent = "from Prometheus, last minute";
  fill("throughput", section.records_per_second, [
    [(r) => r.service], [(r) => r.outcome], [(r) => number(r.value, 1), true],
  ]);
  fill("lag", section.lag_p95_seconds, [[(r) => r.service], [(r) => number(r.value, 3), true]]);
}

function renderRejected(section) {
  if (showError("rejected-error", section)) return fill("rejected", [], []);
  fill("rejected", section.records, [
    [(r) => r.sensor_id], [(r) => when(r.timestamp)], [(r) => r.location],
    [(r) => r.errors.join("; ")], [(r) => r.batch_id],
  ]);
}

function renderNotifications(section) {
  if (showError("notifications-error", section)) return fill("notifications", [], []);
  fill("notifications", section.notifications, [
    [(n) => n.location], [(n) => when(n.window_start)], [(n) => when(n.window_end)],
    [(n) => n.anomaly_count, true], [(n) => n.sensor_ids.join(", ")],
  ]);
}

function renderWindows(data) {
  if (showError("windows-error", data)) return fill("windows-table", [], []);
  const metric = (w, name, field, digits) =>
    number(w.metrics[name] ? w.metrics[name][field] : null, digits);
  fill("windows-table", data.windows, [
    [(w) => w.sensor_id], [(w) => w.location], [(w) => when(w.window_start)],
    [(w) => w.record_count, true], [(w) => w.anomaly_count, true],
    [(w) => metric(w, "temperature", "mean", 2), true],
    [(w) => metric(w, "temperature", "min", 2), true],
    [(w) => metric(w, "temperature", "max", 2), true],
    [(w) => metric(w, "temperature", "stddev", 3), true],
    [(w) => metric(w, "humidity", "mean", 2), true],
  ]);
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  const data = await response.json();
  if (!response.ok) return { error: data.error || `HTTP ${response.status}` };
  return data;
}

async function refresh() {
  try {
    if (state.tab === "pipeline") {
      const data = await getJson("/api/overview");
      document.getElementById("pipeline-name").textContent = data.pipeline || "";
      state.refreshMs = (data.refresh_seconds || 5) * 1000;
      renderScenario(data.scenario);
      renderQueues(data.queues);
      renderThroughput(data.throughput);
      renderRejected(data.rejected);
      renderNotifications(data.notifications);
    } else {
      const query = state.sensor ? `?sensor_id=${encodeURIComponent(state.sensor)}` : "";
      renderWindows(await getJson(`/api/windows${query}`));
    }
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
  } catch (err) {
    document.getElementById("updated").textContent = `failed: ${err}`;
  }
  clearTimeout(state.timer);
  state.timer = setTimeout(refresh, state.refreshMs);
}

function selectTab(name) {
  state.tab = name;
  for (const button of document.querySelectorAll(".tab")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== name;
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll(".tab")) {
    button.addEventListener("click", () => selectTab(button.dataset.tab));
  }
  document.getElementById("sensor-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.sensor = document.getElementById("sensor-filter").value.trim();
    refresh();
  });
  refresh();
});

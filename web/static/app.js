// trafficrisk dashboard: one WebSocket (/ws, the front end's protocol) for frames,
// verdicts and camera status; /stats and /keys polled for health. No build step.
"use strict";

const RISK_ORDER = { none: 0, low: 1, medium: 2, high: 3 };
const MAX_ALERTS = 200;
const POLL_MS = 5000;
const token = new URLSearchParams(location.search).get("token");
const cameras = new Map(); // cameraId -> {card, canvas, frames}
let alertCount = 0;

const $ = (id) => document.getElementById(id);
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const riskColour = (level) => css(`--risk-${RISK_ORDER[level] === undefined ? "none" : level}`);

// ---- cameras -------------------------------------------------------------

function cameraCard(cameraId) {
  let cam = cameras.get(cameraId);
  if (cam) return cam;
  const card = $("camera-template").content.firstElementChild.cloneNode(true);
  card.dataset.cameraId = cameraId;
  card.querySelector(".camera-name").textContent = cameraId;
  $("cameras").appendChild(card);
  cam = { card, canvas: card.querySelector("canvas"), frames: 0 };
  cameras.set(cameraId, cam);
  $("no-cameras").hidden = true;
  $("cameras").dataset.count = String(cameras.size);
  $("camera-count").textContent = String(cameras.size);
  return cam;
}

const STATUS_TEXT = { 0: "offline", 1: "online", 2: "fault" };

function setStatus(cameraId, status, message) {
  const cam = cameraCard(cameraId);
  cam.card.dataset.status = String(status);
  const pill = cam.card.querySelector(".camera-status");
  pill.textContent = STATUS_TEXT[status] || String(status);
  pill.title = message || "";
  // Why a camera is down matters more than its last frame's figures.
  if (status !== 1 && message) cam.card.querySelector(".camera-meta").textContent = message;
}

function groupRisks(result) {
  const risks = new Map();
  for (const r of result.dangerousDrivingResults || []) {
    const prev = risks.get(r.groupIndex);
    if (prev === undefined || RISK_ORDER[r.riskLevel] > RISK_ORDER[prev]) risks.set(r.groupIndex, r.riskLevel);
  }
  return risks;
}

function drawFrame(cam, result) {
  const img = new Image();
  img.onload = () => {
    const { canvas } = cam;
    const w = result.imageWidth || img.naturalWidth;
    const h = result.imageHeight || img.naturalHeight;
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d");
    // The frame may be a downscaled preview; boxes are in full-frame pixels.
    ctx.drawImage(img, 0, 0, w, h);
    const line = Math.max(2, Math.round(w / 320));
    ctx.font = `${8 * line}px sans-serif`;
    ctx.lineWidth = line;
    ctx.strokeStyle = ctx.fillStyle = "#e2e8f0";
    for (const obj of result.detectedObjects || []) {
      const [x1, y1, x2, y2] = obj.bbox;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      ctx.fillText(obj.className || "", x1 + line, Math.max(y1 - line, 8 * line));
    }
    const risks = groupRisks(result);
    ctx.lineWidth = line * 2;
    for (const group of result.trafficGroups || []) {
      const level = group.riskLevel || risks.get(group.groupIndex) || "none";
      const assessed = group.assessed ?? risks.has(group.groupIndex);
      const [x1, y1, x2, y2] = group.bbox;
      ctx.strokeStyle = riskColour(level);
      // Groups not sent for assessment are outlined dashed.
      ctx.setLineDash(assessed ? [] : [4 * line, 3 * line]);
      ctx.strokeRect(x1 - line, y1 - line, x2 - x1 + 2 * line, y2 - y1 + 2 * line);
    }
    ctx.setLineDash([]);
    cam.frames += 1;
    cam.card.dataset.frames = String(cam.frames);
    cam.card.dataset.annotated = "true";
  };
  img.src = result.frame;
}

function onDetection(result) {
  const cam = cameraCard(result.cameraId);
  // A card made from a status event knows only the id; frames carry the name.
  if (result.cameraName) cam.card.querySelector(".camera-name").textContent = result.cameraName;
  if (!cam.card.dataset.status) setStatus(result.cameraId, 1, "");
  const level = result.maxRiskLevel || "none";
  cam.card.dataset.riskLevel = level;
  const badge = cam.card.querySelector(".camera-risk");
  badge.dataset.riskLevel = level;
  badge.textContent = level;
  const when = new Date(result.timestamp || Date.now());
  const objects = (result.detectedObjects || []).length;
  const groups = (result.trafficGroups || []).length;
  cam.card.querySelector(".camera-meta").textContent =
    `${when.toLocaleTimeString()} · ${objects} objects · ${groups} groups`;
  if (result.frame) drawFrame(cam, result);
  for (const r of result.dangerousDrivingResults || []) {
    if (RISK_ORDER[r.riskLevel] > 0) addAlert(result, r, when);
  }
}

// ---- alerts --------------------------------------------------------------

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function assessorLabel(r) {
  const who = r.assessor === "heuristic" ? "heuristic" : (r.model || r.assessor || "");
  return r.keyName ? `${who} · ${r.keyName}` : who;
}

function addAlert(result, r, when) {
  const item = el("li", "alert");
  item.dataset.riskLevel = r.riskLevel;
  item.dataset.cameraId = result.cameraId;
  const line = el("div", "line");
  const time = el("time", "", when.toLocaleTimeString());
  time.dateTime = when.toISOString();
  line.append(time, el("strong", "alert-camera", result.cameraName || result.cameraId));
  const level = el("span", "risk", r.riskLevel);
  level.dataset.riskLevel = r.riskLevel;
  line.append(level, el("span", "types", r.type || ""), el("span", "assessor", assessorLabel(r)));
  item.append(line, el("p", "description", r.description || ""));
  const list = $("alerts");
  list.prepend(item);
  while (list.children.length > MAX_ALERTS) list.lastElementChild.remove();
  alertCount += 1;
  list.dataset.count = String(alertCount);
  $("alert-count").textContent = String(alertCount);
}

// ---- WebSocket with reconnect ---------------------------------------------

let backoffMs = 500;
let pingTimer = null;
let socket = null;

function setConnected(state, detail) {
  $("ws-state").dataset.state = state;
  $("ws-state").textContent = state === "open" ? "live" : state;
  $("ws-banner").hidden = state === "open";
  document.body.dataset.ws = state;
  if (detail) $("ws-banner-detail").textContent = detail;
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const url = `${proto}://${location.host}/ws${token ? `?token=${encodeURIComponent(token)}` : ""}`;
  const ws = new WebSocket(url);
  socket = ws;
  ws.onopen = () => {
    backoffMs = 500;
    setConnected("open");
    pingTimer = setInterval(() => ws.send(JSON.stringify({ type: "ping" })), 20000);
  };
  ws.onmessage = (event) => {
    let msg;
    try { msg = JSON.parse(event.data); } catch { return; }
    // The front end's protocol wraps payloads as {type, data}; accept flat ones too.
    const body = msg.data && typeof msg.data === "object" ? msg.data : msg;
    switch (msg.type) {
      case "detection_result": onDetection(body); break;
      case "camera_status": setStatus(body.cameraId, body.status, body.message); break;
      case "stream_stopped": setStatus(body.cameraId, 0, body.reason); break;
      case "error": if (body.cameraId) setStatus(body.cameraId, 2, body.message); break;
      default: break;
    }
  };
  ws.onclose = () => closed(ws);
}

function closed(ws) {
  if (ws !== socket) return; // already given up on
  socket = null;
  clearInterval(pingTimer);
  const wait = backoffMs + Math.random() * 250;
  backoffMs = Math.min(backoffMs * 2, 10000);
  setConnected("closed", `reconnecting in ${(wait / 1000).toFixed(1)} s`);
  setTimeout(connect, wait);
}

// ---- health polling ------------------------------------------------------

async function getJson(path) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(path, { headers });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function renderHealth(stats, problem) {
  const dl = $("health");
  dl.replaceChildren();
  dl.dataset.status = problem ? "unknown" : stats.status;
  for (const [label, value] of problem ? [["stats", problem]] : healthItems(stats)) {
    const row = el("div");
    row.append(el("dt", "", label), el("dd", "", String(value)));
    dl.append(row);
  }
}

function healthItems(stats) {
  const sum = (obj) => (obj ? Object.values(obj).reduce((a, b) => a + b, 0) : "?");
  const relay = stats.relay || {};
  return [
    ["worker", `${stats.worker_id} ${stats.status}`],
    ["partitions", (stats.assigned_partitions || []).length],
    ["consumer lag", sum(stats.consumer_lag)],
    ["DLQ", stats.dlq_messages ?? "?"],
    ["browsers", relay.clients ?? "?"],
    ["dropped", relay.dropped_messages ?? 0],
  ];
}

function renderKeys(body, problem) {
  const keys = Array.isArray(body) ? body : (body && body.keys) || [];
  const tbody = $("keys").querySelector("tbody");
  tbody.replaceChildren();
  for (const key of keys) {
    const row = el("tr");
    const state = String(key.state || "").toLowerCase();
    const stateCell = el("td", "", state);
    stateCell.dataset.state = state;
    row.append(el("td", "", key.name), stateCell,
      el("td", "", String(key.calls ?? key.total_calls ?? key.requests ?? "")),
      el("td", "", String(key.rate_limited ?? key.rate_limits ?? key["429s"] ?? "")));
    tbody.append(row);
  }
  $("keys-empty").hidden = keys.length > 0;
  $("keys-summary").textContent = body && body.mode === "llm"
    ? `${body.model}: ${body.status}, ${body.total_keys} keys` +
      (body.capacity_rps ? `, ${body.capacity_rps} req/s` : "") + (body.waiting ? `, ${body.waiting} waiting` : "")
    : "";
  $("keys-empty").textContent = problem
    ? `Key pool unavailable (${problem}).`
    : "No LLM keys configured: the local heuristic assesses.";
}

async function poll() {
  try {
    renderHealth(await getJson("/stats"));
  } catch (err) {
    renderHealth(null, err.message);
    // fetch rejects (TypeError) only when the worker refuses connections: it is going
    // away, even if its open socket has not been closed yet. Reconnect (or say so).
    // A closing handshake with a stopping server can take long: give up on it now.
    if (err instanceof TypeError && socket && socket.readyState === WebSocket.OPEN) {
      const ws = socket;
      closed(ws);
      ws.close();
    }
  }
  try { renderKeys(await getJson("/keys")); } catch (err) { renderKeys([], err.message); }
}

connect();
poll();
setInterval(poll, POLL_MS);

// The taskmesh cluster page: polls /api/cluster once a second and redraws.
// Plain DOM (textContent only: dead letters carry arbitrary text), no libraries.
"use strict";

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fill(tbody, rows, emptyText, columns) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: columns, class: "muted" }, emptyText))]));
}

function rate(value) {
  if (value >= 1000) return (value / 1000).toFixed(1) + "k";
  return value >= 10 ? value.toFixed(0) : value.toFixed(1);
}

function uptime(started, now) {
  if (!started) return "-";
  const s = Math.max(0, Math.round(now - started));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function sparkline(series, attrs) {
  const width = 120, height = 24;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  for (const [key, value] of Object.entries(attrs || {})) svg.setAttribute(key, value);
  const points = series.length ? series : [0];
  const top = Math.max(5, ...points); // a floor, so that a trickle stays a flat line
  const step = points.length > 1 ? width / (points.length - 1) : width;
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / top) * (height - 4)).toFixed(1)}`).join(" "));
  svg.append(line);
  return svg;
}

function last(series) {
  return series && series.length ? series[series.length - 1] : 0;
}

function render(data) {
  const now = data.time;
  $("cluster-name").textContent = data.cluster + (data.served_by ? " \u00b7 served by " + data.served_by : "");
  const totals = data.totals;
  const suspects = data.members.filter((m) => m.suspect).length;
  $("total-members").textContent = totals.members;
  $("total-suspect").textContent = suspects ? suspects + " suspect" : "";
  $("leader").textContent = data.leader || "none";
  $("total-actors").textContent = totals.actors;
  $("total-in").textContent = rate(totals.rate_in);
  $("total-out").textContent = rate(totals.rate_out);
  $("total-asks").textContent = totals.asks_pending;
  $("total-dead").textContent = totals.dead_letters_total;

  fill($("members").tBodies[0], data.members.map((m) => {
    const state = m.error ? el("span", { class: "state-error", title: m.error }, "no answer")
      : m.suspect ? el("span", { class: "state-suspect" }, "suspect")
      : el("span", { class: "state-ok" }, "ok");
    const name = el("td", {}, m.node, m.leader ? el("span", { class: "badge leader" }, "leader") : null);
    const rates = m.rates || { in: [], out: [] };
    return el("tr", { "data-node": m.node },
      name,
      el("td", {}, state),
      el("td", {}, el("code", {}, m.address)),
      el("td", {}, ...m.capabilities.map((c) => el("span", { class: "chip" }, c))),
      el("td", { class: "num" }, m.load.cpu_percent.toFixed(0)),
      el("td", { class: "num" }, m.load.memory_percent.toFixed(0)),
      el("td", { class: "num" }, m.load.mailbox),
      el("td", {}, el("div", { class: "spark" }, sparkline(rates.in, { "aria-label": "messages in per second" }),
        el("span", { "data-rate-in": m.node }, rate(last(rates.in))))),
      el("td", { class: "num", "data-rate-out": m.node }, rate(last(rates.out))),
      el("td", { class: "num" }, m.asks_pending),
      el("td", { class: "num" }, m.dead_letters.total),
      el("td", { class: "num" }, uptime(m.started, now)));
  }), "no members", 12);

  $("actors").replaceChildren(...data.members.map((m) => el("div", { class: "node-actors" },
    el("h3", {}, m.node, el("span", { class: "muted" }, ` \u00b7 ${m.actors.length} actor${m.actors.length === 1 ? "" : "s"}`)),
    m.actors.length ? el("table", {}, el("tbody", {}, ...m.actors.map((a) => el("tr", { "data-actor": a.name },
      el("td", {}, a.name),
      el("td", {}, ...a.capabilities.map((c) => el("span", { class: "chip" }, c))),
      el("td", { class: "num" }, a.mailbox + " queued"))))) : el("div", { class: "muted" }, m.error ? "no answer: " + m.error : "no actors"))));

  fill($("routes").tBodies[0], Object.entries(data.routes).map(([capability, holders]) =>
    el("tr", { "data-capability": capability },
      el("td", {}, el("span", { class: "chip" }, capability)),
      el("td", {}, holders.map((h) => `${h.actor} @ ${h.node}`).join(", ")))), "no routes", 2);

  fill($("dead-reasons").tBodies[0], Object.entries(totals.dead_letters)
    .filter(([, count]) => count > 0)
    .map(([reason, count]) => el("tr", { "data-reason": reason }, el("td", {}, reason), el("td", { class: "num" }, count))),
  "none: every message was delivered", 2);

  const recent = data.members.flatMap((m) => m.dead_letters.recent.map((d) => ({ node: m.node, ...d })))
    .sort((a, b) => b.at - a.at).slice(0, 20);
  fill($("dead-recent").tBodies[0], recent.map((d) => el("tr", {},
    el("td", {}, new Date(d.at * 1000).toLocaleTimeString([], { hour12: false })),
    el("td", {}, d.node),
    el("td", {}, d.recipient),
    el("td", { title: d.error || "" }, d.reason),
    el("td", {}, el("div", { class: "message", title: d.message }, d.message)))), "none", 5);
}

async function poll() {
  try {
    const response = await fetch("/api/cluster", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    $("live-dot").className = "dot live";
    $("status-text").textContent = "live \u00b7 " + new Date().toLocaleTimeString([], { hour12: false });
  } catch (error) {
    $("live-dot").className = "dot stale";
    $("status-text").textContent = "no answer from this node (" + error.message + "), retrying";
  }
  setTimeout(poll, POLL_MS);
}

poll();

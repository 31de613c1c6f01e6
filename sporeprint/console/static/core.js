// Shared helpers of the console: the API call through the same-origin proxy, DOM building, tables, formats.
"use strict";

export const $ = (selector, root = document) => root.querySelector(selector);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export async function api(service, path, options = {}) {
  const headers = {...(options.headers || {})};
  const token = document.getElementById("token").value;
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(`/api/${service}/${path}`, {...options, headers});
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : body;
    const error = new Error(`${service} answered ${response.status}: ${detail}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

export function num(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

export const pct = (value) => (value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`);

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

export function cell(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return num(value);
  if (typeof value === "object") return JSON.stringify(value).slice(0, 160);
  return String(value);
}

/** A table inside a card that scrolls sideways rather than overflowing the page.
 *  columns: [{key, label, render(row) -> Node|string, sort(row) -> value, numeric}] or key names. */
export function table(rows, {columns = null, actions = null, rowAttrs = null, sortable = false, caption = null} = {}) {
  if (!rows.length) return el("p", {class: "muted", text: "nothing yet"});
  const keys = columns || [...new Set(rows.slice(0, 50).flatMap((row) => Object.keys(row)))];
  const cols = keys.map((c) => (typeof c === "string" ? {key: c, label: c} : c));
  const t = el("table");
  if (caption) t.append(el("caption", {text: caption}));
  const headRow = el("tr");
  const body = el("tbody");
  const render = (ordered) => {
    body.replaceChildren(...ordered.map((row) => {
      const tr = el("tr", rowAttrs ? rowAttrs(row) : {});
      for (const col of cols) {
        const value = col.render ? col.render(row) : cell(row[col.key]);
        tr.append(el("td", {class: col.numeric ? "num" : null}, value));
      }
      if (actions) { const td = el("td", {class: "actions"}); actions(row, td); tr.append(td); }
      return tr;
    }));
  };
  for (const col of cols) {
    const th = el("th", {scope: "col", class: col.numeric ? "num" : null});
    if (sortable) {
      const button = el("button", {type: "button", class: "sort", text: col.label});
      let ascending = false;
      button.addEventListener("click", () => {
        ascending = !ascending;
        for (const other of headRow.children) other.removeAttribute("aria-sort");
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const value = col.sort || ((row) => row[col.key]);
        const ordered = [...rows].sort((a, b) => {
          const x = value(a), y = value(b);
          const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
          return ascending ? order : -order;
        });
        render(ordered);
      });
      th.append(button);
    } else {
      th.textContent = col.label;
    }
    headRow.append(th);
  }
  if (actions) headRow.append(el("th", {scope: "col"}, el("span", {class: "sr-only", text: "actions"})));
  t.append(el("thead", {}, headRow), body);
  render(rows);
  return el("div", {class: "scroll"}, t);
}

/** Label/value pairs as a definition list. */
export function facts(pairs, attrs = {}) {
  const dl = el("dl", {class: "facts", ...attrs});
  for (const [label, value] of pairs) {
    if (value === undefined) continue;
    dl.append(el("div", {}, el("dt", {text: label}), el("dd", {}, value === null ? "–" : value)));
  }
  return dl;
}

export function show(target, node) {
  const box = typeof target === "string" ? $(target) : target;
  box.replaceChildren(node);
  box.classList.remove("muted");
}

export function fail(target, error) {
  show(target, el("p", {class: "error", role: "alert", text: error.message || String(error)}));
}

export function rowsOf(body) {
  if (Array.isArray(body)) return body;
  if (body && typeof body === "object") {
    for (const value of Object.values(body)) if (Array.isArray(value)) return value;
    return [body];
  }
  return [];
}

/** One polling loop for the whole page: opening another view stops the previous one. */
let pollTimer = null;
let pollGeneration = 0;
export function poll(fn, ms) {
  stopPolling();
  pollTimer = setInterval(fn, ms);
  return ++pollGeneration;
}
/** Stop polling; with a handle from poll(), only if that loop is still the current one. */
export function stopPolling(handle = null) {
  if (handle !== null && handle !== pollGeneration) return;
  clearInterval(pollTimer);
  pollTimer = null;
}

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export function link(href, text, attrs = {}) { return el("a", {href, ...attrs}, text); }

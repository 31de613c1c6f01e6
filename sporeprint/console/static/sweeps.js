// Sweeps: the trainer's list of sweeps (newest first), and one sweep's comparison of its runs.
"use strict";
import {TERMINAL, api, el, fail, link, num, pct, poll, show, stopPolling, table, when} from "./core.js";
import {legend, lineChart} from "./charts.js";

/** A sweep job's id is "<sweep id>-NN". */
export function sweepOf(jobId) {
  const match = /^(s-.+)-\d{2}$/.exec(jobId || "");
  return match ? match[1] : null;
}

export async function sweepIndex(box) {
  const form = el("form", {id: "sweep-open"},
    el("label", {for: "sweep-id", text: "sweep id"}),
    el("input", {id: "sweep-id", name: "sweep", required: true, placeholder: "s-20260101-120000-abc123", size: 30}),
    el("button", {text: "Open"}));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = "#sweeps/" + encodeURIComponent(form.sweep.value.trim());
  });
  const list = el("div", {class: "card", id: "sweep-list"}, el("p", {class: "muted", text: "loading…"}));
  box.replaceChildren(list, form);
  try {
    const sweeps = await api("trainer", "sweeps");
    show(list, sweeps.length ? table(sweeps, {sortable: true, caption: "Sweeps, newest first", columns: [
      {key: "sweep_id", label: "sweep", render: (r) => link(`#sweeps/${r.sweep_id}`, r.sweep_id, {class: "sweep-link"})},
      {key: "name", label: "name", render: (r) => r.name || ""},
      {key: "created_at", label: "created", render: (r) => when(r.created_at)},
      {key: "jobs", label: "runs", numeric: true},
      {key: "states", label: "states", render: (r) => Object.entries(r.states).map(([s, n]) => `${n} ${s}`).join(", "),
        sort: (r) => r.states.completed || 0},
      {key: "best_job_id", label: "best run", render: (r) => (r.best_job_id ? link(`#jobs/${r.best_job_id}`, r.best_job_id) : "–")},
      {key: "best_val_accuracy", label: "best val acc", numeric: true, render: (r) => pct(r.best_val_accuracy),
        sort: (r) => r.best_val_accuracy ?? -1},
    ]}) : el("p", {class: "muted", text: "no sweeps yet: POST /sweeps or `sporeprint train sweep SWEEP_FILE`"}));
  } catch (error) { fail(list, error); }
}

function short(path) { return path.split(".").pop().replaceAll("_", " "); }

export function openSweep(id, box) {
  const head = el("div");
  const chartBox = el("div", {id: "sweep-curves"});
  const tableBox = el("div", {class: "card", id: "sweep-table"});
  const message = el("p", {class: "muted", role: "status"});
  box.replaceChildren(el("p", {}, link("#sweeps", "← sweeps")), head, tableBox, message,
    el("h3", {text: "Validation curves of the runs"}), chartBox);
  const promoted = new Set();

  async function refresh() {
    let sweep;
    try { sweep = await api("trainer", "sweeps/" + encodeURIComponent(id)); } catch (error) {
      fail(head, error); stopPolling(handle); return;
    }
    if (!head.isConnected) return;
    const jobs = await Promise.all(sweep.rows.map((row) => api("trainer", "jobs/" + row.job_id).catch(() => null)));
    const histories = await Promise.all(jobs.map(async (job, i) => {
      if (job && job.history && job.history.length) return job.history;
      if (sweep.rows[i].state !== "completed") return [];
      try { return (await api("trainer", "models/" + sweep.rows[i].job_id)).history || []; } catch { return []; }
    }));
    const models = await api("trainer", "models").catch(() => []);
    const modelOf = Object.fromEntries(models.map((m) => [m.model_id, m]));
    head.replaceChildren(el("h2", {}, `Sweep ${sweep.sweep_id}`, sweep.name ? el("span", {class: "muted", text: ` — ${sweep.name}`}) : null),
      el("p", {class: "muted", text: `created ${when(sweep.created_at)}; grid: ` +
        Object.entries(sweep.grid).map(([k, v]) => `${k} ∈ {${v.join(", ")}}`).join("; ")}));
    const params = Object.keys(sweep.grid);
    const rows = sweep.rows.map((row, i) => ({...row, val_top1: (modelOf[row.job_id] || {metrics: {}}).metrics.val_top1,
      promoted: (modelOf[row.job_id] || {}).promoted, epochs: (jobs[i] || {}).epochs}));
    show(tableBox, table(rows, {sortable: true, columns: [
      {key: "job_id", label: "run", render: (r) => el("span", {}, link(`#jobs/${r.job_id}`, r.job_id),
        r.job_id === sweep.best_job_id ? el("strong", {class: "best-mark", text: " ★ best"}) : null)},
      ...params.map((p) => ({key: p, label: short(p), sort: (r) => r.overrides[p], render: (r) => String(r.overrides[p]),
        numeric: typeof sweep.grid[p][0] === "number"})),
      {key: "state", label: "state"},
      {key: "epoch", label: "epochs", numeric: true, render: (r) => (r.epochs ? `${r.epoch}/${r.epochs}` : String(r.epoch))},
      {key: "best_val_accuracy", label: "best val acc", numeric: true, render: (r) => pct(r.best_val_accuracy)},
      {key: "val_top1", label: "val top-1", numeric: true, render: (r) => pct(r.val_top1)},
      {key: "test_top1", label: "test top-1", numeric: true, render: (r) => pct(r.test_top1)},
      {key: "macro_f1", label: "macro F1", numeric: true, render: (r) => num(r.macro_f1)},
    ], rowAttrs: (r) => ({class: r.job_id === sweep.best_job_id ? "best" : null, dataset: {job: r.job_id}}),
    actions: (r, td) => {
      if (r.state !== "completed") return;
      const done = r.promoted || promoted.has(r.job_id);
      const button = el("button", {type: "button", class: "promote", text: done ? "promoted" : "promote"});
      button.addEventListener("click", async () => {
        try {
          await api("trainer", `models/${r.job_id}/promote`, {method: "POST"});
          promoted.clear(); promoted.add(r.job_id);
          button.textContent = "promoted";
          message.textContent = `${r.job_id} is now the served model`;
        } catch (error) { message.textContent = error.message; }
      });
      td.append(button);
    }}));
    const charts = el("div", {class: "charts"});
    for (const metric of ["val_accuracy", "val_loss"]) {
      const series = sweep.rows.map((row, i) => ({name: row.label || row.job_id,
        points: histories[i].map((h) => ({x: h.epoch, y: h[metric]}))}));
      charts.append(el("figure", {class: "card chart-card"},
        lineChart({title: metric.replace("val_", "validation "), series, id: `sweep-${metric}`,
          ...(metric === "val_accuracy" ? {yMin: 0, yMax: 1} : {})}), legend(series)));
    }
    chartBox.replaceChildren(charts);
    box.dataset.state = sweep.rows.every((row) => TERMINAL.has(row.state)) ? "done" : "running";
    if (box.dataset.state === "done") stopPolling(handle);
  }
  const handle = poll(refresh, 2000);
  refresh();
}

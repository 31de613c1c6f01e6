// The job page: live curves, stage and ETA, the spec as fields, evaluation (confusion, per class, calibration),
// log tail, cancel and requeue.
"use strict";
import {TERMINAL, api, duration, el, facts, fail, link, num, pct, poll, show, stopPolling, table, when} from "./core.js";
import {heatmap, legend, lineChart, reliability} from "./charts.js";

/** The epoch after which fine-tuning starts (history rows carry phase "head" or "fine_tune"). */
export function fineTuneBoundary(history) {
  const first = history.find((row) => row.phase === "fine_tune");
  return first ? first.epoch - 0.5 : null;
}

/** Loss and accuracy charts (train vs validation) from a job's history. */
export function curves(history, idPrefix = "curve") {
  const boundary = fineTuneBoundary(history);
  const marker = boundary === null ? null : {x: boundary, label: "fine-tuning"};
  const box = el("div", {class: "charts"});
  for (const metric of ["loss", "accuracy"]) {
    const series = [
      {name: `train ${metric}`, points: history.map((r) => ({x: r.epoch, y: r[metric]}))},
      {name: `validation ${metric}`, points: history.map((r) => ({x: r.epoch, y: r[`val_${metric}`]})), dashed: true},
    ];
    box.append(el("figure", {class: "card chart-card"},
      lineChart({title: metric, series, marker, id: `${idPrefix}-${metric}`,
        ...(metric === "accuracy" ? {yMin: 0, yMax: 1} : {})}),
      legend(series)));
  }
  return box;
}

function specFields(spec) {
  // nested sections become groups of "field: value" rows; lists are joined
  const groups = [];
  const general = [];
  for (const [key, value] of Object.entries(spec || {})) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      const rows = [];
      const walk = (prefix, obj) => {
        for (const [k, v] of Object.entries(obj)) {
          if (v && typeof v === "object" && !Array.isArray(v)) walk(`${prefix}${k}.`, v);
          else rows.push([`${prefix}${k}`.replaceAll("_", " "), Array.isArray(v) ? v.join(", ") : v === null ? "–" : String(v)]);
        }
      };
      walk("", value);
      groups.push([key.replaceAll("_", " "), rows]);
    } else {
      general.push([key.replaceAll("_", " "), value === null ? "–" : String(value)]);
    }
  }
  const box = el("div", {class: "spec"});
  for (const [name, rows] of [["job", general], ...groups]) {
    if (!rows.length) continue;
    box.append(el("section", {class: "spec-group", dataset: {group: name}}, el("h4", {text: name}), facts(rows)));
  }
  return box;
}

function perClassTable(metrics, classes) {
  const rows = classes.map((c) => ({name: c.name, ...(metrics.per_class || {})[c.name]}));
  return table(rows, {sortable: true, columns: [
    {key: "name", label: "class"},
    {key: "precision", label: "precision", numeric: true, render: (r) => num(r.precision)},
    {key: "recall", label: "recall", numeric: true, render: (r) => num(r.recall)},
    {key: "f1", label: "F1", numeric: true, render: (r) => num(r.f1)},
    {key: "support", label: "support", numeric: true, render: (r) => num(r.support)},
  ], rowAttrs: (r) => ({dataset: {class: r.name}})});
}

async function evaluation(id, box) {
  let detail;
  try { detail = await api("trainer", "models/" + id); } catch (error) {
    if (error.status === 404) { show(box, el("p", {class: "muted", text: "no model yet"})); return null; }
    throw error;
  }
  const {card, metrics, artifact_urls: artifacts} = detail;
  const classes = [...card.classes].sort((a, b) => a.index - b.index);
  const out = el("div");
  out.append(el("h3", {text: "Evaluation"}),
    el("p", {class: "muted", text: "validation figures choose the model; test figures are only reported"}),
    facts([["validation top-1", pct(metrics.val_top1 ?? card.metrics.val_top1)], ["test top-1", pct(metrics.top1)],
      ["test top-3", pct(metrics.top3)], ["macro F1", num(metrics.macro_f1)], ["test images", num(metrics.test_images)],
      ["test ECE", num(metrics.test_ece)], ["promoted", detail.promoted ? "yes" : "no"]], {id: "eval-facts"}));
  if (Array.isArray(metrics.confusion)) {
    out.append(el("div", {class: "grid2"},
      el("figure", {class: "card", id: "confusion"}, el("figcaption", {text: "Confusion matrix (test split)"}),
        el("div", {class: "scroll"}, heatmap({matrix: metrics.confusion, labels: classes.map((c) => c.name)}))),
      el("div", {class: "card", id: "per-class"}, el("h4", {text: "Per class (test split) — click a heading to sort"}),
        perClassTable(metrics, classes))));
  } else if (artifacts["confusion.png"]) {
    out.append(el("figure", {class: "card"}, el("img", {src: "/api/trainer" + artifacts["confusion.png"], alt: "confusion matrix", class: "figure"})));
  }
  if (card.openset) {
    const o = card.openset;
    const calib = el("div", {class: "card", id: "calibration"}, el("h4", {text: "Calibration and open set (fitted on validation)"}),
      facts([["temperature", num(o.temperature, 2)], ["ECE before → after", `${num(o.ece_before)} → ${num(o.ece_after)}`],
        ["uncertain below", num(o.uncertain_below, 2)], ["novelty method", o.method], ["OOD threshold", num(o.threshold)],
        ["validation kept", pct(o.id_validation_retained)], ["fitted on", o.fitted_on]]));
    if (artifacts["calibration.json"]) {
      try {
        const c = await api("trainer", `models/${id}/artifacts/calibration.json`);
        calib.append(el("div", {class: "charts"},
          el("figure", {class: "chart-card", id: "reliability-before"}, reliability({bins: c.before, title: `before: ECE ${num(c.ece_before)}`})),
          el("figure", {class: "chart-card", id: "reliability-after"}, reliability({bins: c.after, title: `after T=${num(c.temperature, 2)}: ECE ${num(c.ece_after)}`}))));
      } catch (error) { calib.append(el("p", {class: "error", text: error.message})); }
    }
    const comparison = Object.entries(o.comparison || {}).map(([method, f]) => ({method, ...f}));
    if (comparison.length) calib.append(el("h4", {text: "OOD methods on validation"}), table(comparison));
    out.append(calib);
  }
  const files = Object.entries(artifacts).filter(([name]) => /\.(png|json)$/.test(name));
  if (files.length) {
    out.append(el("p", {class: "artifacts"}, "Artifacts: ",
      ...files.flatMap(([name, url], i) => [i ? " · " : "", link("/api/trainer" + url, name, {target: "_blank", rel: "noopener"})])));
  }
  show(box, out);
  return detail;
}

/** Render the job page into `box` and keep it live until the job ends. */
export function openJob(id, box) {
  const head = el("div", {class: "job-head"});
  const buttons = el("div", {class: "buttons"});
  const cancel = el("button", {type: "button", id: "job-cancel", text: "Cancel job"});
  const requeue = el("button", {type: "button", id: "job-requeue", text: "Resume (requeue)"});
  const message = el("p", {class: "muted", role: "status"});
  buttons.append(cancel, requeue, link(`#lineage/${id}`, "lineage"), message);
  const chartsBox = el("div", {id: "job-curves"});
  const specBox = el("div", {class: "card", id: "job-spec"});
  const evalBox = el("div", {id: "job-eval"});
  const log = el("pre", {class: "log", id: "job-log", tabindex: "0"});
  box.replaceChildren(
    el("p", {}, link("#jobs", "← all jobs")), head, buttons,
    el("h3", {text: "Curves"}), chartsBox,
    el("h3", {text: "Spec"}), specBox, evalBox,
    el("h3", {text: "Log tail"}), log);
  let evaluated = false, specShown = false, lastEpochs = -1, lastState = null;

  async function act(method, path, verb) {
    try {
      await api("trainer", path, {method});
      message.textContent = `${verb} asked`;
      handle = poll(refresh, 1500);
      refresh();
    } catch (error) { message.textContent = error.message; }
  }
  cancel.addEventListener("click", () => act("DELETE", `jobs/${id}`, "cancel"));
  requeue.addEventListener("click", () => act("POST", `jobs/${id}/requeue`, "resume"));

  async function refresh() {
    let job;
    try { job = await api("trainer", "jobs/" + id); } catch (error) { fail(head, error); return; }
    if (!head.isConnected) return;  // another view replaced this page meanwhile
    const terminal = TERMINAL.has(job.state);
    head.replaceChildren(
      el("h2", {}, `Job ${job.job_id}`, job.spec && job.spec.name ? el("span", {class: "muted", text: ` — ${job.spec.name}`}) : null),
      facts([["state", el("span", {class: `badge state-${job.state}`, text: job.state})], ["stage", job.stage || "–"],
        ["epoch", job.epochs ? `${job.epoch} / ${job.epochs}` : String(job.epoch)],
        ["ETA", job.state === "running" ? duration(job.eta_seconds) : "–"],
        ["best validation accuracy", pct(job.best_val_accuracy)],
        ["resumed after epoch", job.resumed_from_epoch ?? undefined],
        ["enqueued", when(job.enqueued_at)], ["started", when(job.started_at)], ["ended", when(job.ended_at)],
        ["error", job.error ? el("span", {class: "error", text: job.error}) : undefined]], {id: "job-facts"}));
    cancel.hidden = terminal;
    requeue.hidden = job.state !== "failed";
    let history = job.history || [];
    if (!history.length && terminal) {
      try { history = (await api("trainer", "models/" + id)).history || []; } catch { history = []; }
    }
    if (history.length !== lastEpochs || job.state !== lastState) {
      chartsBox.replaceChildren(curves(history), el("p", {class: "muted", text: fineTuneBoundary(history) === null
        ? "no fine-tuning phase in this run" : `fine-tuning starts after epoch ${Math.floor(fineTuneBoundary(history))}`}));
      lastEpochs = history.length;
    }
    if (!specShown && job.spec && Object.keys(job.spec).length) { show(specBox, specFields(job.spec)); specShown = true; }
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = (job.log_tail || []).join("\n") || "(no log lines yet)";
    if (atBottom) log.scrollTop = log.scrollHeight;
    if (job.state === "completed" && !evaluated) {
      evaluated = true;
      try { await evaluation(id, evalBox); } catch (error) { fail(evalBox, error); }
    }
    lastState = job.state;
    box.dataset.state = job.state;
    if (terminal) stopPolling(handle);
  }
  let handle = poll(refresh, 1500);
  refresh();
}

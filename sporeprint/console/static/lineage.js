// Lineage: model -> job spec -> training split -> manifest versions (curation, harvest, import), each a link;
// and back from a dataset version to the models trained on it.
"use strict";
import {api, el, facts, fail, link, num, pct, show, table, when} from "./core.js";

const OPERATION_STEP = {curation: "curation", harvest: "harvest", import: "import"};

/** Whether a spec has a fine-tuning phase: "auto" means only when the backbone is pretrained. */
function fineTunes(spec) {
  const enabled = spec.fine_tune && spec.fine_tune.enabled;
  if (enabled === "auto") return ((spec.backbone && spec.backbone.weights) || "imagenet").toLowerCase() !== "none";
  return enabled === true;
}

/** Where the producing job of a manifest version can be looked at, from its `source` field. */
function sourceLink(info) {
  const source = info.source || "";
  let match = /^harvest:(.+)$/.exec(source);
  if (match) return link(`/api/downloader/harvests/${encodeURIComponent(match[1])}`, `harvest ${match[1]}`, {target: "_blank", rel: "noopener"});
  match = /^curation (.+)$/.exec(source);
  if (match) return link(`/api/curator/curations/${encodeURIComponent(match[1])}`, `curation ${match[1]}`, {target: "_blank", rel: "noopener"});
  return source ? el("code", {text: source}) : "–";
}

function statsText(stats) {
  const entries = Object.entries(stats || {});
  return entries.length ? entries.slice(0, 8).map(([k, v]) => `${k.replaceAll("_", " ")} ${v}`).join(" · ") : "";
}

/** The chain of versions from `version` back to its import, newest first. */
async function chain(dataset, version) {
  const versions = await api("downloader", "manifests/" + encodeURIComponent(dataset));
  const byVersion = Object.fromEntries(versions.map((v) => [v.version, v]));
  const out = [];
  for (let v = version; v !== null && v !== undefined && byVersion[v] && out.length < 50; v = byVersion[v].parent) out.push(byVersion[v]);
  return {out, versions};
}

function versionStep(info) {
  const step = OPERATION_STEP[info.operation] || info.operation;
  return el("li", {class: "step", dataset: {step, version: info.version}},
    el("span", {class: `op op-${step}`, text: info.operation}),
    el("div", {},
      el("strong", {}, link(`#lineage/dataset/${encodeURIComponent(info.dataset)}/${info.version}`, `${info.dataset} v${info.version}`)),
      ` — ${info.rows} rows`, info.parent ? ` (from v${info.parent})` : "",
      el("div", {class: "muted"}, "produced by ", sourceLink(info), `, ${when(info.created_at)}`),
      statsText(info.stats) ? el("div", {class: "muted small", text: statsText(info.stats)}) : null,
      el("div", {class: "small"}, link(`/api/downloader/manifests/${encodeURIComponent(info.dataset)}/${info.version}`, "summary (JSON)", {target: "_blank", rel: "noopener"}))));
}

export async function modelLineage(modelId, box) {
  box.replaceChildren(el("p", {class: "muted", text: "loading…"}));
  try {
    const detail = await api("trainer", "models/" + encodeURIComponent(modelId));
    const {card, artifact_urls: artifacts} = detail;
    const spec = card.spec || {};
    const steps = el("ol", {class: "lineage", id: "lineage-steps"});
    steps.append(el("li", {class: "step", dataset: {step: "model"}}, el("span", {class: "op op-model", text: "model"}),
      el("div", {}, el("strong", {text: card.model_id}), ` — ${card.status}${detail.promoted ? ", promoted" : ""}, ` +
        `${card.backbone}, ${card.classes.length} ${card.taxon_level} classes, test top-1 ${pct(card.metrics.top1)}`,
        el("div", {class: "small"}, link(`#jobs/${card.job_id || card.model_id}`, "job page"), " · ",
          link(`#models`, "all models")))));
    steps.append(el("li", {class: "step", dataset: {step: "spec"}}, el("span", {class: "op op-spec", text: "job spec"}),
      el("div", {}, `${spec.name || "(unnamed)"}: ${spec.epochs ?? "?"} epochs` +
        `${fineTunes(spec) ? ` + ${spec.fine_tune.epochs} fine-tuning` : ""}, ` +
        `lr ${spec.optimizer ? spec.optimizer.learning_rate : "?"}, batch ${spec.batch_size ?? "?"}, image ${card.image_size} px`,
        el("div", {class: "small"}, artifacts["spec.json"]
          ? link("/api/trainer" + artifacts["spec.json"], "spec.json", {target: "_blank", rel: "noopener"}) : "no spec.json artifact"))));
    const split = el("li", {class: "step", dataset: {step: "split"}}, el("span", {class: "op op-split", text: "split"}));
    const splitBody = el("div", {}, `test split ${card.test_split_hash ? card.test_split_hash.slice(0, 12) : "–"}`);
    split.append(splitBody);
    if (artifacts["splits.json"]) {
      try {
        const splits = await api("trainer", `models/${encodeURIComponent(modelId)}/artifacts/splits.json`);
        const total = (counts) => Object.values(counts).reduce((a, b) => a + b, 0);
        splitBody.append(": ", Object.entries(splits.counts || {}).map(([name, counts]) => `${name} ${total(counts)}`).join(" · "),
          el("div", {class: "small"}, link("/api/trainer" + artifacts["splits.json"], "splits.json", {target: "_blank", rel: "noopener"})));
      } catch (error) { splitBody.append(el("span", {class: "error", text: ` ${error.message}`})); }
    }
    steps.append(split);
    const {out} = await chain(card.dataset, card.manifest_version);
    for (const info of out) steps.append(versionStep(info));
    box.replaceChildren(el("h2", {text: `Lineage of ${card.model_id}`}),
      el("p", {class: "muted", text: "newest first: each step was made from the one below it"}), steps);
  } catch (error) { fail(box, error); }
}

export async function datasetLineage(dataset, version, box) {
  box.replaceChildren(el("p", {class: "muted", text: "loading…"}));
  try {
    const {out, versions} = await chain(dataset, version);
    if (!out.length) throw new Error(`no version ${version} of ${dataset}`);
    const models = (await api("trainer", "models")).filter((m) => m.dataset === dataset && m.manifest_version === version);
    const children = versions.filter((v) => v.parent === version);
    const steps = el("ol", {class: "lineage", id: "lineage-steps"}, out.map(versionStep));
    box.replaceChildren(
      el("h2", {text: `${dataset} v${version}`}),
      facts([["operation", out[0].operation], ["rows", num(out[0].rows)], ["content hash", el("code", {text: out[0].content_hash.slice(0, 16)})],
        ["derived versions", children.length ? el("span", {}, children.map((c, i) => [i ? ", " : "",
          link(`#lineage/dataset/${encodeURIComponent(dataset)}/${c.version}`, `v${c.version} (${c.operation})`)]).flat()) : "none"]]),
      el("h3", {text: `Models trained on ${dataset} v${version}`}),
      el("div", {class: "card", id: "lineage-models"}, table(models, {columns: [
        {key: "model_id", label: "model", render: (m) => link(`#lineage/${m.model_id}`, m.model_id)},
        {key: "status", label: "status"}, {key: "promoted", label: "promoted", render: (m) => (m.promoted ? "yes" : "")},
        {key: "backbone", label: "backbone"}, {key: "classes", label: "classes", numeric: true},
        {key: "top1", label: "test top-1", numeric: true, render: (m) => pct(m.metrics.top1)},
        {key: "created_at", label: "created", render: (m) => when(m.created_at)}]})),
      el("h3", {text: "How this version was made"}), steps);
  } catch (error) { fail(box, error); }
}

export function lineageIndex(box, models) {
  box.replaceChildren(el("p", {text: "Pick a model to follow it back to its data, or a dataset version (Datasets tab) to see the models trained on it."}),
    table(models, {columns: [{key: "model_id", label: "model", render: (m) => link(`#lineage/${m.model_id}`, m.model_id)},
      {key: "dataset", label: "dataset", render: (m) => link(`#lineage/dataset/${encodeURIComponent(m.dataset)}/${m.manifest_version}`, `${m.dataset} v${m.manifest_version}`)},
      {key: "status", label: "status"}]}));
}

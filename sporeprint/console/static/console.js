// The console's entry point: tabs and hash routes, and the list views (datasets, domains, blacklist, jobs, models).
"use strict";
import {$, api, el, fail, link, poll, rowsOf, show, stopPolling, table} from "./core.js";
import {openJob} from "./job.js";
import {datasetLineage, lineageIndex, modelLineage} from "./lineage.js";
import {setUpPredict} from "./predict.js";
import {openSweep, sweepIndex, sweepOf} from "./sweeps.js";

const token = $("#token");
token.value = localStorage.getItem("sporeprint-token") || "";
token.addEventListener("change", () => localStorage.setItem("sporeprint-token", token.value));

const DOMAIN_COLUMNS = ["domain", "images", "share", "failure_rate", "human_relevant", "human_irrelevant",
  "irrelevant_share", "wilson_low", "wilson_high", "duplicates", "blacklisted", "recommendation", "why"];
const MODEL_COLUMNS = ["model_id", "status", "promoted", "dataset", "manifest_version", "backbone", "image_size",
  "classes", "val_top1", "top1", "top3", "macro_f1", "temperature", "ece", "ood_threshold", "uncertain_below",
  "created_at"];

async function loadDatasets() {
  try {
    const body = await api("downloader", "manifests");
    show("#datasets-out", table(rowsOf(body), {actions: (row, td) => {
      if (!row.dataset) return;
      td.append(link(`#lineage/dataset/${encodeURIComponent(row.dataset)}/${row.latest_version}`, "versions & models"), " ");
      td.append(el("button", {type: "button", text: "domains", onclick: () => {
        $("#domains-form [name=dataset]").value = row.dataset;
        $("#domains-form [name=version]").value = row.latest_version || "";
        location.hash = "#domains";
      }}));
    }}));
  } catch (error) { fail("#datasets-out", error); }
}

$("#domains-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const query = new URLSearchParams({dataset: form.get("dataset")});
  if (form.get("version")) query.set("version", form.get("version"));
  try {
    const body = await api("curator", "domains?" + query);
    show("#domains-out", table(rowsOf(body), {columns: DOMAIN_COLUMNS.filter((c) => rowsOf(body).some((r) => c in r)),
      actions: (row, td) => td.append(el("button", {type: "button", text: "review", onclick: () => review(row.domain, query)}))}));
  } catch (error) { fail("#domains-out", error); }
});

function review(domain, query) {
  const params = new URLSearchParams(query); params.set("n", "24");
  const pageParams = new URLSearchParams(params); pageParams.set("format", "html");
  params.set("format", "png");
  const path = `/api/curator/domains/${encodeURIComponent(domain)}/sample`;
  show("#sample-out", el("div", {}, el("h3", {text: domain}),
    el("p", {}, link(`${path}?${pageParams}`, "label these images", {target: "_blank", rel: "noopener"})),
    el("img", {class: "sheet", alt: `contact sheet of ${domain}`, src: `${path}?${params}`})));
}

async function loadBlacklist() {
  try {
    const body = await api("curator", "blacklist");
    show("#blacklist-out", table(rowsOf(body), {actions: (row, td) => td.append(el("button", {type: "button", text: "remove",
      onclick: async () => {
        try { await api("curator", "blacklist/" + row.entry, {method: "DELETE"}); loadBlacklist(); }
        catch (error) { fail("#blacklist-out", error); }
      }}))}));
  } catch (error) { fail("#blacklist-out", error); }
}

$("#blacklist-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    await api("curator", "blacklist/" + form.get("entry"), {method: "PUT",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({reason: form.get("reason")})});
    event.target.reset(); loadBlacklist();
  } catch (error) { fail("#blacklist-out", error); }
});

async function loadJobs() {
  try {
    const jobs = rowsOf(await api("trainer", "jobs"));
    show("#jobs-out", table(jobs, {columns: [
      {key: "job_id", label: "job", render: (r) => link(`#jobs/${r.job_id}`, r.job_id, {class: "job-link"})},
      "name", "state", "stage",
      {key: "epoch", label: "epoch", render: (r) => (r.epochs ? `${r.epoch}/${r.epochs}` : String(r.epoch))},
      {key: "sweep", label: "sweep", render: (r) => (sweepOf(r.job_id) ? link(`#sweeps/${sweepOf(r.job_id)}`, sweepOf(r.job_id)) : "")},
      "enqueued_at"],
    actions: (r, td) => td.append(link(`#jobs/${r.job_id}`, "details", {class: "details"}))}));
  } catch (error) { fail("#jobs-out", error); }
}

async function loadModels() {
  try {
    const body = await api("trainer", "models");
    const openset = (o) => o ? {temperature: o.temperature.toFixed(2), ece: `${o.ece_before.toFixed(3)} → ${o.ece_after.toFixed(3)}`,
      ood_threshold: o.threshold.toFixed(3), uncertain_below: o.uncertain_below.toFixed(2)} : {};
    const rows = rowsOf(body).map((row) => ({...row, ...(row.metrics || {}), ...openset(row.openset)}));
    const seen = new Set(rows.flatMap((r) => Object.keys(r)));
    show("#models-out", table(rows, {columns: MODEL_COLUMNS.filter((c) => seen.has(c)), actions: (row, td) => {
      const b = el("button", {type: "button", class: "promote", text: row.promoted ? "promoted" : "promote"});
      b.onclick = async () => {
        try { await api("trainer", `models/${row.model_id}/promote`, {method: "POST"}); b.textContent = "promoted"; }
        catch (error) { fail("#models-out", error); }
      };
      td.append(b, " ", link(`#jobs/${row.model_id}`, "job"), " ", link(`#lineage/${row.model_id}`, "lineage"));
    }}));
  } catch (error) { fail("#models-out", error); }
}

async function loadLineage(parts) {
  const box = $("#lineage-out");
  if (parts[0] === "dataset" && parts.length >= 3) return datasetLineage(decodeURIComponent(parts[1]), Number(parts[2]), box);
  if (parts[0]) return modelLineage(decodeURIComponent(parts[0]), box);
  try { lineageIndex(box, await api("trainer", "models")); } catch (error) { fail(box, error); }
}

const TABS = ["datasets", "domains", "blacklist", "jobs", "models", "sweeps", "lineage", "predict"];

function route() {
  const [tab, ...parts] = (location.hash.replace(/^#/, "") || "datasets").split("/");
  const current = TABS.includes(tab) ? tab : "datasets";
  for (const button of document.querySelectorAll("#tabs button")) {
    const active = button.dataset.tab === current;
    button.classList.toggle("active", active);
    if (active) button.setAttribute("aria-current", "page"); else button.removeAttribute("aria-current");
  }
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== current;
  stopPolling();
  if (current === "datasets") loadDatasets();
  else if (current === "blacklist") loadBlacklist();
  else if (current === "models") loadModels();
  else if (current === "lineage") loadLineage(parts);
  else if (current === "jobs") {
    const id = parts[0] ? decodeURIComponent(parts[0]) : null;
    $("#jobs-out").hidden = Boolean(id);
    if (id) openJob(id, $("#job-detail"));
    else { $("#job-detail").replaceChildren(); loadJobs(); poll(loadJobs, 2000); }
  } else if (current === "sweeps") {
    if (parts[0]) openSweep(decodeURIComponent(parts[0]), $("#sweeps-out"));
    else sweepIndex($("#sweeps-out"));
  }
}

for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => {
    const target = "#" + button.dataset.tab;
    if (location.hash === target) route(); else location.hash = target;
  });
}
window.addEventListener("hashchange", route);
// the skip link focuses the content without changing the route
$(".skip").addEventListener("click", (event) => { event.preventDefault(); $("#main").focus(); });
setUpPredict();
route();

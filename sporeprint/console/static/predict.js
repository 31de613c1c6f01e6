// Predict: drop, choose or link photos; the verdict in words, top-k bars with taxa, the genus fallback,
// the Grad-CAM overlay (toggle) and the safety notice. Several photos go through /predict/batch.
"use strict";
import {api, el, fail, pct, show} from "./core.js";

const VERDICT_WORDS = {
  confident: "Confident about the species",
  uncertain: "Not sure of the species — the genus is the safer answer",
  unknown_species: "A mushroom, but not one of the species this model knows",
  not_a_mushroom: "Not a photo of a mushroom",
};

function topK(predictions) {
  const list = el("ol", {class: "topk"});
  for (const p of predictions) {
    const taxa = [p.genus && `genus ${p.genus}`, p.family && `family ${p.family}`].filter(Boolean).join(", ");
    list.append(el("li", {dataset: {label: p.label, probability: p.probability}},
      el("div", {class: "topk-label"}, el("i", {text: p.species || p.label}), taxa ? el("span", {class: "muted", text: ` — ${taxa}`}) : null),
      el("div", {class: "bar wide", role: "meter", "aria-valuemin": 0, "aria-valuemax": 1, "aria-valuenow": p.probability.toFixed(3),
        "aria-label": `${p.label} probability`}, el("span", {style: `width:${(p.probability * 100).toFixed(1)}%`})),
      el("span", {class: "prob", text: pct(p.probability)})));
  }
  return list;
}

/** One answer as a card: the photo (with the Grad-CAM toggle), the verdict, top-k and the genus. */
export function answerCard(answer, photoUrl, title) {
  const card = el("article", {class: "card answer", dataset: {verdict: answer.verdict}});
  const figure = el("figure", {class: "photo"});
  const img = el("img", {alt: title ? `photo ${title}` : "the photo", src: photoUrl || (answer.heatmap_png ? `data:image/png;base64,${answer.heatmap_png}` : "")});
  figure.append(img);
  if (answer.heatmap_png) {
    const overlay = `data:image/png;base64,${answer.heatmap_png}`;
    const toggle = el("button", {type: "button", class: "cam-toggle", "aria-pressed": "false", text: "Show Grad-CAM"});
    const showing = (on) => {
      img.src = on || !photoUrl ? overlay : photoUrl;
      img.classList.toggle("cam", on);
      toggle.setAttribute("aria-pressed", String(on));
      toggle.textContent = on ? "Show the photo" : "Show Grad-CAM";
    };
    toggle.addEventListener("click", () => showing(toggle.getAttribute("aria-pressed") !== "true"));
    figure.append(el("figcaption", {}, toggle, el("span", {class: "muted small", text: " where the model looked (model input, 224 px)"})));
    if (!photoUrl) showing(true);
  }
  const verdict = el("p", {class: "verdict"}, el("b", {text: answer.verdict}), ": ",
    `${answer.message} (model ${answer.model_id}, ${answer.elapsed_ms.toFixed(0)} ms)`);
  const body = el("div", {class: "answer-body"},
    title ? el("h3", {text: title}) : null,
    el("p", {class: `verdict-words verdict-${answer.verdict}`, text: VERDICT_WORDS[answer.verdict] || answer.verdict}),
    verdict);
  if (answer.genus) {
    body.append(el("p", {class: "genus"}, "Genus: ", el("i", {text: answer.genus.name}), ` (${pct(answer.genus.probability)}` +
      `${answer.genus.family ? `, family ${answer.genus.family}` : ""})`));
  }
  const judged = [];
  if (answer.relevance_score != null) judged.push(`photo of a fungus: ${(answer.relevance_score * 100).toFixed(0)}%`);
  if (answer.ood_score != null) judged.push(`distance to its training photos: ${answer.ood_score.toFixed(2)} × threshold`);
  if (judged.length) body.append(el("p", {class: "muted judgement", text: judged.join("; ")}));
  if (answer.predictions && answer.predictions.length) body.append(el("h4", {text: `Top ${answer.predictions.length}`}), topK(answer.predictions));
  card.append(figure, body);
  return card;
}

function notice(text) { return el("p", {class: "safety", role: "note"}, el("strong", {text: "Safety: "}), text); }

export function setUpPredict() {
  const form = document.getElementById("predict-form");
  const files = form.querySelector("input[type=file]");
  const url = form.querySelector("input[name=url]");
  const drop = document.getElementById("drop-zone");
  const out = document.getElementById("predict-out");
  let dropped = null;
  const chosen = () => (dropped && dropped.length ? dropped : [...files.files]);
  const describe = () => {
    const list = chosen();
    drop.querySelector(".chosen").textContent = list.length ? list.map((f) => f.name).join(", ") : "no photo chosen";
  };
  files.addEventListener("change", () => { dropped = null; describe(); });
  for (const type of ["dragenter", "dragover"]) drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", (e) => {
    dropped = [...e.dataTransfer.files].filter((f) => f.type.startsWith("image/"));
    describe();
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); files.click(); } });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const photos = chosen();
    const link = url.value.trim();
    const explain = form.querySelector("input[name=explain]").checked;
    const query = `explain=${explain}&top_k=5`;
    out.replaceChildren(el("p", {class: "muted", text: "identifying…"}));
    try {
      if (!photos.length && !link) throw new Error("choose or drop a photo, or paste a URL");
      if (!photos.length) {
        const answer = await api("inference", "predict?" + query, {method: "POST",
          headers: {"Content-Type": "application/json"}, body: JSON.stringify({url: link})});
        show(out, el("div", {}, answerCard(answer, null, link), notice(answer.safety_notice)));
      } else if (photos.length === 1) {
        const body = new FormData();
        body.append("file", photos[0]);
        const answer = await api("inference", "predict?" + query, {method: "POST", body});
        show(out, el("div", {}, answerCard(answer, URL.createObjectURL(photos[0]), null), notice(answer.safety_notice)));
      } else {
        const body = new FormData();
        for (const photo of photos) body.append("files", photo);
        const batch = await api("inference", "predict/batch?" + query, {method: "POST", body});
        const cards = batch.results.map((item) => item.prediction
          ? answerCard(item.prediction, URL.createObjectURL(photos[item.index]), item.filename || `photo ${item.index + 1}`)
          : el("article", {class: "card answer failed"}, el("h3", {text: item.filename || `photo ${item.index + 1}`}),
            el("p", {class: "error", text: `HTTP ${item.status_code}: ${item.error}`})));
        show(out, el("div", {}, el("p", {class: "muted", text: `${batch.results.length} photos in ${batch.elapsed_ms.toFixed(0)} ms`}),
          el("div", {class: "answers"}, cards), notice(batch.safety_notice)));
      }
    } catch (error) { fail(out, error); }
  });
}

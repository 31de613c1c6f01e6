// Small SVG charts (no library): line charts per epoch, a heatmap, a reliability diagram.
// Every plotted value is also an attribute (data-series, data-x, data-value) so tests and people can read it.
"use strict";

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#1f77b4", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#666666"];

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) if (value !== null && value !== undefined) node.setAttribute(name, value);
  if (text !== null) node.textContent = text;
  return node;
}

function ticks(min, max, count = 5) {
  if (max === min) return [min];
  const step = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(step));
  const nice = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((m) => m >= step) || step;
  const out = [];
  for (let v = Math.ceil(min / nice) * nice; v <= max + nice * 1e-6; v += nice) out.push(+v.toFixed(10));
  return out;
}

const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2).replace(/\.?0+$/, "") : v.toFixed(2));

/**
 * series: [{name, points: [{x, y}], dashed}]; marker: {x, label} draws a vertical line (e.g. fine-tuning starts).
 * Points carry data-series, data-x and data-value.
 */
export function lineChart({title, series, xLabel = "epoch", yMin = null, yMax = null, marker = null, id = null}) {
  const width = 420, height = 240, left = 46, right = 12, top = 26, bottom = 38;
  const all = series.flatMap((s) => s.points).filter((p) => p.y !== null && p.y !== undefined && Number.isFinite(p.y));
  const root = svg("svg", {viewBox: `0 0 ${width} ${height}`, class: "chart line-chart", role: "img", id,
    "aria-label": `${title}: ${series.map((s) => s.name).join(", ")}`});
  root.append(svg("title", {}, title));
  root.append(svg("text", {x: left, y: 16, class: "chart-title"}, title));
  if (!all.length) {
    root.append(svg("text", {x: width / 2, y: height / 2, class: "muted-text", "text-anchor": "middle"}, "no epochs yet"));
    return root;
  }
  const xs = all.map((p) => p.x);
  const x0 = Math.min(...xs, marker ? marker.x : Infinity), x1 = Math.max(...xs, marker ? marker.x : -Infinity);
  let y0 = yMin ?? Math.min(...all.map((p) => p.y)), y1 = yMax ?? Math.max(...all.map((p) => p.y));
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05;
  if (yMin === null) y0 -= pad;
  if (yMax === null) y1 += pad;
  const sx = (x) => left + (x1 === x0 ? (width - left - right) / 2 : ((x - x0) / (x1 - x0)) * (width - left - right));
  const sy = (y) => top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom);
  const axis = svg("g", {class: "axis"});
  for (const t of ticks(y0, y1)) {
    axis.append(svg("line", {x1: left, x2: width - right, y1: sy(t), y2: sy(t), class: "grid"}));
    axis.append(svg("text", {x: left - 4, y: sy(t) + 3, "text-anchor": "end"}, fmt(t)));
  }
  const xt = ticks(x0, x1, Math.min(8, Math.max(1, x1 - x0))).filter((t) => Number.isInteger(t));
  for (const t of xt) axis.append(svg("text", {x: sx(t), y: height - bottom + 14, "text-anchor": "middle"}, String(t)));
  axis.append(svg("text", {x: (left + width - right) / 2, y: height - 6, "text-anchor": "middle"}, xLabel));
  axis.append(svg("line", {x1: left, x2: left, y1: top, y2: height - bottom, class: "frame"}));
  axis.append(svg("line", {x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, class: "frame"}));
  root.append(axis);
  if (marker) {
    const mx = sx(marker.x);
    root.append(svg("line", {x1: mx, x2: mx, y1: top, y2: height - bottom, class: "marker", "data-x": marker.x}));
    root.append(svg("text", {x: mx + 3, y: top + 10, class: "marker-label"}, marker.label));
  }
  series.forEach((s, index) => {
    const color = s.color || PALETTE[index % PALETTE.length];
    const points = s.points.filter((p) => p.y !== null && p.y !== undefined && Number.isFinite(p.y));
    const group = svg("g", {class: "series", "data-series": s.name});
    group.append(svg("polyline", {points: points.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" "), fill: "none",
      stroke: color, "stroke-width": 2, "stroke-dasharray": s.dashed ? "5 3" : null}));
    for (const p of points) {
      const dot = svg("circle", {cx: sx(p.x), cy: sy(p.y), r: 3, fill: color, class: "point",
        "data-series": s.name, "data-x": p.x, "data-value": p.y});
      dot.append(svg("title", {}, `${s.name}, ${xLabel} ${p.x}: ${p.y.toFixed(4)}`));
      group.append(dot);
    }
    root.append(group);
  });
  return root;
}

/** A legend as HTML (it wraps at phone width, which SVG text does not). */
export function legend(series) {
  const box = document.createElement("div");
  box.className = "legend";
  series.forEach((s, index) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = s.color || PALETTE[index % PALETTE.length];
    if (s.dashed) swatch.className = "dashed";
    item.append(swatch, document.createTextNode(s.name));
    box.append(item);
  });
  return box;
}

/** Confusion matrix: rows are true classes, columns predictions; colour is the row share (recall). */
export function heatmap({matrix, labels, title = "confusion matrix (rows: true class, columns: predicted)"}) {
  const n = labels.length;
  const cellSize = n > 20 ? 18 : 34;
  const labelWidth = Math.min(170, 8 + 6.5 * Math.max(...labels.map((l) => l.length)));
  // rotated column labels lean right past the last column
  const width = labelWidth + n * cellSize + labelWidth * 0.55, height = labelWidth + n * cellSize + 8;
  const root = svg("svg", {viewBox: `0 0 ${width} ${height}`, class: "chart heatmap", role: "img", "aria-label": title,
    style: `max-width:${width}px`});
  root.append(svg("title", {}, title));
  const short = (label) => (label.length > 24 ? label.slice(0, 23) + "…" : label);
  labels.forEach((label, i) => {
    root.append(svg("text", {x: labelWidth - 4, y: labelWidth + i * cellSize + cellSize / 2 + 4, "text-anchor": "end",
      class: "row-label"}, short(label)));
    const x = labelWidth + i * cellSize + cellSize / 2 + 4;
    root.append(svg("text", {x, y: labelWidth - 4, transform: `rotate(-60 ${x} ${labelWidth - 4})`, class: "col-label"}, short(label)));
  });
  matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((value, j) => {
      const share = total ? value / total : 0;
      const light = Math.round(97 - share * 62);
      const rect = svg("rect", {x: labelWidth + j * cellSize, y: labelWidth + i * cellSize, width: cellSize - 1,
        height: cellSize - 1, fill: `hsl(${i === j ? 210 : 12} 70% ${light}%)`, class: "cell",
        "data-true": labels[i], "data-predicted": labels[j], "data-value": value});
      rect.append(svg("title", {}, `true ${labels[i]}, predicted ${labels[j]}: ${value} (${(share * 100).toFixed(0)}% of the row)`));
      root.append(rect);
      if (n <= 20) {
        root.append(svg("text", {x: labelWidth + j * cellSize + cellSize / 2, y: labelWidth + i * cellSize + cellSize / 2 + 4,
          "text-anchor": "middle", class: share > 0.55 ? "cell-text dark" : "cell-text"}, String(value)));
      }
    });
  });
  return root;
}

/** Reliability diagram: accuracy per confidence bin against the diagonal; bins from calibration.json. */
export function reliability({bins, title}) {
  const size = 220, pad = 34;
  const root = svg("svg", {viewBox: `0 0 ${size + pad + 8} ${size + pad + 24}`, class: "chart reliability", role: "img",
    "aria-label": title});
  root.append(svg("title", {}, title));
  root.append(svg("text", {x: pad, y: 14, class: "chart-title"}, title));
  const top = 22;
  const sx = (v) => pad + v * size, sy = (v) => top + (1 - v) * size;
  root.append(svg("rect", {x: pad, y: top, width: size, height: size, class: "plot-area"}));
  root.append(svg("line", {x1: sx(0), y1: sy(0), x2: sx(1), y2: sy(1), class: "diagonal"}));
  for (const b of bins) {
    if (!b.count) continue;
    const rect = svg("rect", {x: sx(b.lower), y: sy(b.accuracy), width: (b.upper - b.lower) * size - 1,
      height: b.accuracy * size, class: "bin", "data-lower": b.lower, "data-value": b.accuracy, "data-count": b.count});
    rect.append(svg("title", {}, `confidence ${b.lower.toFixed(2)}–${b.upper.toFixed(2)}: accuracy ${b.accuracy.toFixed(2)} over ${b.count} images (mean confidence ${b.confidence.toFixed(2)})`));
    root.append(rect);
    root.append(svg("circle", {cx: sx(b.confidence), cy: sy(b.accuracy), r: 2.5, class: "bin-confidence"}));
  }
  for (const t of [0, 0.5, 1]) {
    root.append(svg("text", {x: pad - 4, y: sy(t) + 3, "text-anchor": "end", class: "tick"}, String(t)));
    root.append(svg("text", {x: sx(t), y: top + size + 12, "text-anchor": "middle", class: "tick"}, String(t)));
  }
  root.append(svg("text", {x: pad + size / 2, y: top + size + 24, "text-anchor": "middle", class: "tick"}, "confidence → accuracy"));
  return root;
}

// autorad viewer: open a CT, scroll axial slices, click a nodule, show the outline and the prediction.
// Plain JS + canvas, no framework. The server sends the volume once as int16 HU; windowing happens here.
"use strict";

const $ = (id) => document.getElementById(id);
const CLASSES = ["benign", "unsure", "malignant"];
const DOWNLOAD_LABELS = {"report.html": "Report (HTML)", "mask.nii.gz": "Mask (NIfTI)",
                         "seg.dcm": "DICOM SEG", "sr.dcm": "DICOM SR"};
const view = {info: null, voxels: null, z: 0, center: -600, width: 1500, mask: null, click: null, request: 0,
              lastClickMs: null};
window.autoradViewer = view;

function setState(state, message) {
  document.body.dataset.state = state;
  if (message !== undefined) $("status").textContent = message;
}

async function errorText(response) {
  try { return (await response.json()).error || response.statusText; } catch (e) { return response.statusText; }
}

function maskAt(z, y, x) {
  const m = view.mask;
  if (!m) return false;
  const zz = z - m.z0, yy = y - m.y0, xx = x - m.x0;
  if (zz < 0 || yy < 0 || xx < 0 || zz >= m.depth || yy >= m.height || xx >= m.width) return false;
  const k = (zz * m.height + yy) * m.width + xx;
  return ((m.bits[k >> 3] >> (7 - (k & 7))) & 1) === 1;
}

function render() {
  if (!view.info) return;
  const [, H, W] = view.info.shape;
  const canvas = $("slice");
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(W, H);
  const base = view.z * H * W;
  const lo = view.center - view.width / 2, scale = 255 / view.width;
  const px = img.data;
  for (let i = 0; i < H * W; i++) {
    let g = (view.voxels[base + i] - lo) * scale;
    g = g < 0 ? 0 : g > 255 ? 255 : g;
    px[4 * i] = px[4 * i + 1] = px[4 * i + 2] = g;
    px[4 * i + 3] = 255;
  }
  const m = view.mask;
  if (m && view.z >= m.z0 && view.z < m.z0 + m.depth) {  // outline: mask pixels with a 4-neighbour outside
    for (let y = m.y0; y < m.y0 + m.height; y++) {
      for (let x = m.x0; x < m.x0 + m.width; x++) {
        if (!maskAt(view.z, y, x)) continue;
        if (maskAt(view.z, y - 1, x) && maskAt(view.z, y + 1, x) && maskAt(view.z, y, x - 1) &&
            maskAt(view.z, y, x + 1)) continue;
        const i = 4 * (y * W + x);
        px[i] = 255; px[i + 1] = 140; px[i + 2] = 0;
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  if (view.click && view.click.z === view.z) {  // the seed
    ctx.strokeStyle = "#00e5ff";
    ctx.lineWidth = 1;
    const {x, y} = view.click;
    ctx.beginPath();
    ctx.moveTo(x - 6, y + 0.5); ctx.lineTo(x - 2, y + 0.5); ctx.moveTo(x + 3, y + 0.5); ctx.lineTo(x + 7, y + 0.5);
    ctx.moveTo(x + 0.5, y - 6); ctx.lineTo(x + 0.5, y - 2); ctx.moveTo(x + 0.5, y + 3); ctx.lineTo(x + 0.5, y + 7);
    ctx.stroke();
  }
  const zmm = view.info.z_mm[view.z];
  $("slice-label").textContent = `slice ${view.z} / ${view.info.shape[0] - 1}  ·  z = ${zmm.toFixed(1)} mm`;
  $("slider").value = view.z;
}

function goto(z) {
  if (!view.info) return;
  view.z = Math.max(0, Math.min(view.info.shape[0] - 1, z));
  render();
}
view.goto = goto;

function setWindow(button) {
  document.querySelectorAll("button.win").forEach((b) => b.classList.toggle("active", b === button));
  view.center = Number(button.dataset.center);
  view.width = Number(button.dataset.width);
  render();
}

function resetResult(text) {
  $("result").textContent = text;
  $("result").className = "empty";
  for (const c of CLASSES) {
    $(`prob-${c}`).textContent = "–";
    document.querySelector(`.prob[data-class=${c}] .bar i`).style.width = "0";
    document.querySelector(`.prob[data-class=${c}]`).classList.remove("top");
  }
  $("warnings").replaceChildren();
  $("details").textContent = "";
  $("downloads").replaceChildren();
}

async function openFiles(files) {
  if (!files.length) return;
  view.info = null; view.voxels = null; view.mask = null; view.click = null;
  resetResult("Open a CT and click a nodule.");
  setState("loading", `Reading ${files.length} file(s)…`);
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  try {
    const r = await fetch("/api/volumes", {method: "POST", body: form});
    if (!r.ok) { setState("error", `Cannot open: ${await errorText(r)}`); return; }
    const info = await r.json();
    const v = await fetch(`/api/volumes/${info.id}/voxels`);
    if (!v.ok) { setState("error", `Cannot read the volume: ${await errorText(v)}`); return; }
    view.voxels = new Int16Array(await v.arrayBuffer());
    view.info = info;
  } catch (e) {
    setState("error", `Cannot reach the server: ${e}`); return;
  }
  const [D, H, W] = view.info.shape;
  const [, rowMm, colMm] = view.info.spacing_mm;
  const canvas = $("slice");
  canvas.width = W; canvas.height = H;
  const s = 512 / Math.max(W, H * rowMm / colMm);
  canvas.style.width = `${Math.round(W * s)}px`;
  canvas.style.height = `${Math.round(H * s * rowMm / colMm)}px`;
  $("slider").max = D - 1; $("slider").disabled = false;
  const gaps = view.info.gaps_mm.length ? ` Missing slices between ${view.info.gaps_mm.map((g) => g.join("–")).join(", ")} mm.` : "";
  setState("loaded", `${D} slices of ${W}×${H}, ${colMm.toFixed(2)}×${rowMm.toFixed(2)}×` +
           `${view.info.spacing_mm[0].toFixed(2)} mm.${gaps} Scroll to the nodule and click it.`);
  goto(Math.floor(D / 2));
  $("slice").focus();
}

function showPrediction(answer, clickMs) {
  const p = answer.prediction;
  $("result").className = "";
  $("result").textContent = `Predicted: ${p.predicted_class}`;
  for (const c of CLASSES) {
    const v = p.probabilities[c];
    $(`prob-${c}`).textContent = v.toFixed(3);
    document.querySelector(`.prob[data-class=${c}] .bar i`).style.width = `${(100 * v).toFixed(1)}%`;
    document.querySelector(`.prob[data-class=${c}]`).classList.toggle("top", c === p.predicted_class);
  }
  $("warnings").replaceChildren(...(p.warnings || []).map((w) => {
    const li = document.createElement("li"); li.textContent = w; return li;
  }));
  const parts = [`slice ${p.slice_index} (z = ${p.slice_z_mm} mm)`];
  if (p.mask) parts.push(`mask: ${p.mask.description} (${p.mask.detail}), ${p.mask.volume_mm3} mm³`);
  if (p.equivalent_diameter_mm !== undefined) parts.push(`equivalent diameter ${p.equivalent_diameter_mm} mm`);
  if (p.radiomics_status) parts.push(`radiomics: ${p.radiomics_status}`);
  parts.push(`answered in ${(clickMs / 1000).toFixed(2)} s (model ${p.seconds} s)`);
  $("details").textContent = parts.join(" · ");
  $("downloads").replaceChildren(...Object.entries(answer.downloads).map(([name, url]) => {
    const a = document.createElement("a");
    a.href = url; a.className = "button"; a.textContent = DOWNLOAD_LABELS[name] || name;
    a.setAttribute("download", `autorad-${name}`);
    return a;
  }));
}

async function predictAt(x, y, z) {
  const id = ++view.request;
  view.click = {x, y, z};
  view.mask = null;
  render();
  resetResult("Predicting…");
  setState("predicting", `Predicting the nodule at X=${x}, Y=${y}, Z=${z}…`);
  const t0 = performance.now();
  const form = new FormData();
  form.append("center", `${x},${y},${z}`);
  if ($("diameter").value.trim()) form.append("diameter_mm", $("diameter").value.trim());
  let answer;
  try {
    const r = await fetch(`/api/volumes/${view.info.id}/predict`, {method: "POST", body: form});
    if (id !== view.request) return;  // a newer click won
    if (!r.ok) {
      resetResult("No prediction.");
      setState("error", `Prediction refused: ${await errorText(r)}`);
      return;
    }
    answer = await r.json();
  } catch (e) {
    setState("error", `Cannot reach the server: ${e}`); return;
  }
  if (id !== view.request) return;
  const m = answer.mask;
  view.mask = {...m, bits: Uint8Array.from(atob(m.bits), (ch) => ch.charCodeAt(0))};
  render();
  view.lastClickMs = performance.now() - t0;
  showPrediction(answer, view.lastClickMs);
  const where = m.depth > 1 ? `slices ${m.z0}–${m.z0 + m.depth - 1}` : `slice ${m.z0}`;
  setState("done", `Nodule at X=${x}, Y=${y}, Z=${z}: outline on ${where}.`);
}

function fmt(v, std) {
  if (v === null || v === undefined) return "n/a";
  return std === null || std === undefined ? v.toFixed(3) : `${v.toFixed(3)} (folds ± ${std.toFixed(3)})`;
}

async function loadHealth() {
  try {
    const h = await (await fetch("/api/health")).json();
    const m = h.model;
    const enc = [m.vision_encoder && `vision ${m.vision_encoder}`, m.text_encoder && `text ${m.text_encoder}`]
      .filter(Boolean).join(", ");
    $("model-line").textContent = `model: ${m.kind}${enc ? `, ${enc}` : ""}, ` +
      `trained on ${m.trained_on} · autorad ${h.autorad_version}`;
    $("model-words").textContent = m.in_words ? `${m.in_words}.` : "";
    $("sim-banner").hidden = !m.simulated_training_data;
    const cv = m.cross_validation || {};
    const rows = [["nodules", cv.n === null || cv.n === undefined ? "n/a" : `${cv.n} (${cv.n_folds} folds)`],
                  ["accuracy", fmt(cv.accuracy, cv.accuracy_fold_std)],
                  ["macro AUC", fmt(cv.macro_auc, cv.macro_auc_fold_std)],
                  ["unsure F1", fmt(cv.unsure_f1)], ["calibration error (ECE)", fmt(cv.ece)]];
    $("quality").tBodies[0].replaceChildren(...rows.map(([k, v]) => {
      const tr = document.createElement("tr");
      for (const t of [k, v]) { const td = document.createElement("td"); td.textContent = t; tr.append(td); }
      return tr;
    }));
  } catch (e) {
    $("model-line").textContent = `cannot reach the server: ${e}`;
  }
}

function init() {
  loadHealth();
  $("file").addEventListener("change", (e) => openFiles([...e.target.files]));
  $("slider").addEventListener("input", (e) => goto(Number(e.target.value)));
  document.querySelectorAll("button.win").forEach((b) => b.addEventListener("click", () => setWindow(b)));
  const stage = $("stage");  // drag and drop files (a dropped folder arrives empty: zip it, or select its files)
  stage.addEventListener("dragover", (e) => e.preventDefault());
  stage.addEventListener("drop", (e) => { e.preventDefault(); openFiles([...e.dataTransfer.files]); });
  const canvas = $("slice");
  canvas.tabIndex = 0;
  canvas.addEventListener("wheel", (e) => { e.preventDefault(); goto(view.z + (e.deltaY > 0 ? 1 : -1)); },
                          {passive: false});
  canvas.addEventListener("click", (e) => {
    if (!view.info) return;
    const r = canvas.getBoundingClientRect();
    const [, H, W] = view.info.shape;
    const x = Math.floor((e.clientX - r.left) / r.width * W), y = Math.floor((e.clientY - r.top) / r.height * H);
    if (x >= 0 && y >= 0 && x < W && y < H) predictAt(x, y, view.z);
  });
  document.addEventListener("keydown", (e) => {
    if (!view.info || e.target.tagName === "INPUT") return;
    const steps = {ArrowUp: 1, ArrowDown: -1, PageUp: 10, PageDown: -10};
    if (e.key in steps) { e.preventDefault(); goto(view.z + steps[e.key]); }
    else if (e.key === "Home") goto(0);
    else if (e.key === "End") goto(view.info.shape[0] - 1);
    else if (e.key === "l" || e.key === "L") setWindow($("win-lung"));
    else if (e.key === "s" || e.key === "S") setWindow($("win-soft"));
  });
}

document.addEventListener("DOMContentLoaded", init);

// autorad viewer: open a CT, scroll axial slices, zoom / pan / window it, read HU under the cursor, click nodules,
// keep them in a list with their outline and prediction. Plain JS + canvas, no framework, nothing downloaded.
// The server sends the volume once as int16 HU; windowing, zoom and pan happen here.
"use strict";

const $ = (id) => document.getElementById(id);
const CLASSES = ["benign", "unsure", "malignant"];
const DOWNLOAD_LABELS = {"report.html": "Report (HTML)", "mask.nii.gz": "Mask (NIfTI)",
                         "seg.dcm": "DICOM SEG", "sr.dcm": "DICOM SR"};
const SELECTED_RGB = [255, 140, 0];  // the selected nodule's outline (tests look for this exact colour)
const OTHER_RGB = [255, 221, 87];    // the other nodules' outlines
const ZOOM_MIN = 0.5, ZOOM_MAX = 16, DRAG_PX = 4;
const NOT_MEASURED = "not measured";
const view = {info: null, voxels: null, z: 0, center: -600, width: 1500, zoom: 1, panX: 0, panY: 0, dir: 1,
              mode: "nodule", nodules: [], selected: null, pending: null, request: 0, lastClickMs: null,
              reading: null, model: null, frame: null};
window.autoradViewer = view;

function setState(state, message) {
  document.body.dataset.state = state;
  if (message !== undefined) $("status").textContent = message;
}

async function errorText(response) {
  try { return (await response.json()).error || response.statusText; } catch (e) { return response.statusText; }
}

// ------------------------------------------------------------------------------------------- slice numbers
// view.z is the 0-based index in ascending position (what the API and `autorad predict --center` count);
// what the page shows is the 1-based number in the series' own order (the server's slice_numbers).
function sliceNumber(z) { return view.info.slice_numbers[z]; }
function sliceOf(z) { return `slice ${sliceNumber(z)} of ${view.info.shape[0]}`; }
function indexOfNumber(k) { return view.info.slice_numbers.indexOf(k); }
function slicesText(z0, z1) {  // a range of indices as series numbers, low to high
  const a = sliceNumber(z0), b = sliceNumber(z1);
  return a === b ? `slice ${a}` : `slices ${Math.min(a, b)}–${Math.max(a, b)}`;
}

// ------------------------------------------------------------------------------------------- geometry
function geometry() {  // CSS px of the displayed image: scale per voxel column (sx) and row (sy), top-left (ox, oy)
  const [, H, W] = view.info.shape;
  const [, rowMm, colMm] = view.info.spacing_mm;
  const canvas = $("slice"), cw = canvas.clientWidth, ch = canvas.clientHeight;
  const aspect = rowMm / colMm;
  const fit = Math.min(cw / W, ch / (H * aspect));
  const sx = fit * view.zoom, sy = fit * aspect * view.zoom;
  return {sx, sy, ox: cw / 2 - (W * sx) / 2 + view.panX, oy: ch / 2 - (H * sy) / 2 + view.panY, cw, ch, W, H};
}

function voxelAt(clientX, clientY) {  // the (column, row) under a mouse position, or null outside the image
  if (!view.info) return null;
  const r = $("slice").getBoundingClientRect(), g = geometry();
  const x = Math.floor((clientX - r.left - g.ox) / g.sx), y = Math.floor((clientY - r.top - g.oy) / g.sy);
  return x >= 0 && y >= 0 && x < g.W && y < g.H ? {x, y} : null;
}

view.toScreen = (x, y) => {  // the page position of voxel (x, y)'s centre (used by the browser test)
  const r = $("slice").getBoundingClientRect(), g = geometry();
  return {x: r.left + g.ox + (x + 0.5) * g.sx, y: r.top + g.oy + (y + 0.5) * g.sy};
};

// ------------------------------------------------------------------------------------------- drawing
function maskAt(m, z, y, x) {
  const zz = z - m.z0, yy = y - m.y0, xx = x - m.x0;
  if (zz < 0 || yy < 0 || xx < 0 || zz >= m.depth || yy >= m.height || xx >= m.width) return false;
  const k = (zz * m.height + yy) * m.width + xx;
  return ((m.bits[k >> 3] >> (7 - (k & 7))) & 1) === 1;
}

function outline(px, W, m, z, rgb) {  // mask pixels with a 4-neighbour outside, in the image's own pixels
  if (z < m.z0 || z >= m.z0 + m.depth) return;
  for (let y = m.y0; y < m.y0 + m.height; y++) {
    for (let x = m.x0; x < m.x0 + m.width; x++) {
      if (!maskAt(m, z, y, x)) continue;
      if (maskAt(m, z, y - 1, x) && maskAt(m, z, y + 1, x) && maskAt(m, z, y, x - 1) && maskAt(m, z, y, x + 1))
        continue;
      const i = 4 * (y * W + x);
      px[i] = rgb[0]; px[i + 1] = rgb[1]; px[i + 2] = rgb[2];
    }
  }
}

function drawSlice() {  // the windowed slice and the outlines into the offscreen image (one pixel per voxel)
  const [, H, W] = view.info.shape;
  const off = view.offscreen;
  const octx = off.getContext("2d");
  const img = octx.createImageData(W, H);
  const base = view.z * H * W, lo = view.center - view.width / 2, scale = 255 / view.width, px = img.data;
  for (let i = 0; i < H * W; i++) {
    let g = (view.voxels[base + i] - lo) * scale;
    g = g < 0 ? 0 : g > 255 ? 255 : g;
    px[4 * i] = px[4 * i + 1] = px[4 * i + 2] = g;
    px[4 * i + 3] = 255;
  }
  for (const n of view.nodules) if (n.n !== view.selected) outline(px, W, n.mask, view.z, OTHER_RGB);
  const sel = selectedNodule();
  if (sel) outline(px, W, sel.mask, view.z, SELECTED_RGB);
  octx.putImageData(img, 0, 0);
}

function cross(ctx, cx, cy, colour) {
  ctx.strokeStyle = colour;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(cx - 7, cy); ctx.lineTo(cx - 2, cy); ctx.moveTo(cx + 2, cy); ctx.lineTo(cx + 7, cy);
  ctx.moveTo(cx, cy - 7); ctx.lineTo(cx, cy - 2); ctx.moveTo(cx, cy + 2); ctx.lineTo(cx, cy + 7);
  ctx.stroke();
}

function compose() {  // the offscreen image zoomed and panned onto the visible canvas, then clicks and numbers
  const canvas = $("slice"), ctx = canvas.getContext("2d"), dpr = window.devicePixelRatio || 1;
  const g = geometry();
  if (canvas.width !== Math.round(g.cw * dpr) || canvas.height !== Math.round(g.ch * dpr)) {
    canvas.width = Math.round(g.cw * dpr); canvas.height = Math.round(g.ch * dpr);
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, g.cw, g.ch);
  ctx.imageSmoothingEnabled = false;  // nearest neighbour: every screen pixel shows one voxel's value
  ctx.drawImage(view.offscreen, g.ox, g.oy, g.W * g.sx, g.H * g.sy);
  ctx.font = "bold 13px system-ui, sans-serif";
  for (const n of [...view.nodules, ...(view.pending ? [view.pending] : [])]) {
    if (n.z === view.z) cross(ctx, Math.round(g.ox + (n.x + 0.5) * g.sx) + 0.5,
                              Math.round(g.oy + (n.y + 0.5) * g.sy) + 0.5, "#00e5ff");
    const m = n.mask;
    if (m && view.z >= m.z0 && view.z < m.z0 + m.depth) {
      const [r, gr, b] = n.n === view.selected ? SELECTED_RGB : OTHER_RGB;
      ctx.fillStyle = `rgb(${r},${gr},${b})`;
      ctx.fillText(String(n.n), g.ox + (m.x0 + m.width) * g.sx + 3, g.oy + m.y0 * g.sy + 10);
    }
  }
}

function render() {
  if (!view.info) return;
  drawSlice();
  compose();
  const z = view.z;
  $("slice-label").textContent = `${sliceOf(z)}  ·  z = ${view.info.z_mm[z].toFixed(1)} mm`;
  $("slice-index").textContent = `0-based index ${z} (--center Z)`;
  $("slider").value = z;
  $("wl-readout").textContent = `W ${Math.round(view.width)} / L ${Math.round(view.center)} HU`;
  $("zoom-readout").textContent = `${Math.round(view.zoom * 100)}%`;
}

function scheduleRender() {  // at most one redraw per animation frame while dragging
  if (view.frame !== null) return;
  view.frame = requestAnimationFrame(() => { view.frame = null; render(); });
}

// ------------------------------------------------------------------------------------------- navigation
function goto(z) {
  if (!view.info) return;
  view.z = Math.max(0, Math.min(view.info.shape[0] - 1, z));
  render();
}
view.goto = goto;

function step(d) { goto(view.z + d * view.dir); }  // d > 0: the next slice number in the series' order

function setZoom(zoom, cx, cy) {  // zoom about the canvas point (cx, cy) in CSS px (default: the centre)
  if (!view.info) return;
  const g = geometry();
  const z1 = Math.max(ZOOM_MIN, Math.min(ZOOM_MAX, zoom));
  cx = cx === undefined ? g.cw / 2 : cx; cy = cy === undefined ? g.ch / 2 : cy;
  const k = z1 / view.zoom;  // keep the point under (cx, cy) where it is
  view.panX = cx - g.cw / 2 - (cx - g.cw / 2 - view.panX) * k;
  view.panY = cy - g.ch / 2 - (cy - g.ch / 2 - view.panY) * k;
  view.zoom = z1;
  render();
}
view.setZoom = setZoom;

function resetView() { view.zoom = 1; view.panX = 0; view.panY = 0; render(); }

function setWindow(width, center, button) {
  view.width = Math.max(1, width);
  view.center = center;
  document.querySelectorAll("button.win").forEach((b) => b.classList.toggle("active", b === button));
  render();
}

function setPreset(button) { setWindow(Number(button.dataset.width), Number(button.dataset.center), button); }

function setMode(mode) {
  view.mode = mode;
  document.querySelectorAll("button.mode").forEach((b) => b.classList.toggle("active", b.dataset.mode === mode));
  document.body.dataset.mode = mode;
}

function showHu(e) {
  const v = voxelAt(e.clientX, e.clientY);
  if (!v) { $("hu-readout").textContent = view.info ? "outside the image" : ""; return; }
  const [, H, W] = view.info.shape;
  const hu = view.voxels[view.z * H * W + v.y * W + v.x];
  $("hu-readout").textContent = `${hu} HU at column ${v.x}, row ${v.y}, ${sliceOf(view.z)}`;
}

// ------------------------------------------------------------------------------------------- result panel
function metric(cv, key) {
  const v = cv ? cv[key] : undefined;
  return typeof v === "number" && Number.isFinite(v) ? v.toFixed(3) : NOT_MEASURED;
}

function calibrationWords(p) {
  const flag = p.calibrated !== undefined ? p.calibrated : (p.model || {}).calibrated;
  return flag === true ? "calibrated" : flag === false ? "not calibrated" : "calibration not stated";
}

function resetResult(text) {
  $("result").textContent = text;
  $("result").className = "empty";
  $("result-quality").textContent = "";
  for (const c of CLASSES) {
    $(`prob-${c}`).textContent = "–";
    document.querySelector(`.prob[data-class=${c}] .bar i`).style.width = "0";
    document.querySelector(`.prob[data-class=${c}]`).classList.remove("top");
  }
  $("warnings").replaceChildren();
  $("details").textContent = "";
  $("downloads").replaceChildren();
}

function showPrediction(item) {
  const p = item.answer.prediction;
  const top = p.probabilities[p.predicted_class];
  $("result").className = "";
  const cls = document.createElement("span");
  cls.className = "class"; cls.textContent = p.predicted_class;
  const conf = document.createElement("span");
  conf.className = "confidence";
  conf.textContent = `model confidence ${(100 * top).toFixed(1)}% (${calibrationWords(p)})`;
  $("result").replaceChildren(cls, " ", conf);
  const cv = (p.model || {}).cross_validation;
  const n = cv && Number.isInteger(cv.n) ? ` on ${cv.n} nodules` : "";
  // the ECE after temperature scaling belongs beside calibrated probabilities (autorad.reading.ece_key)
  const eceKey = p.calibrated === true && cv && typeof cv.ece_calibrated === "number" ? "ece_calibrated" : "ece";
  $("result-quality").textContent = `Beside it, this model's cross-validated calibration error (ECE) ` +
    `${metric(cv, eceKey)} and accuracy ${metric(cv, "accuracy")}${n}: a confidence is only as good as that ` +
    `calibration.`;
  for (const c of CLASSES) {
    const v = p.probabilities[c];
    $(`prob-${c}`).textContent = v.toFixed(3);
    document.querySelector(`.prob[data-class=${c}] .bar i`).style.width = `${(100 * v).toFixed(1)}%`;
    document.querySelector(`.prob[data-class=${c}]`).classList.toggle("top", c === p.predicted_class);
  }
  $("warnings").replaceChildren(...(p.warnings || []).map((w) => {
    const li = document.createElement("li"); li.textContent = w; return li;
  }));
  const parts = [`nodule ${item.n}, clicked at column ${item.x}, row ${item.y} on ${sliceOf(item.z)}`,
                 `predicted from ${sliceOf(p.slice_index)} (z = ${p.slice_z_mm} mm)`];
  if (p.mask) parts.push(`mask: ${p.mask.description} (${p.mask.detail}), ${p.mask.volume_mm3} mm³`);
  if (p.equivalent_diameter_mm !== undefined) parts.push(`equivalent diameter ${p.equivalent_diameter_mm} mm`);
  if (p.radiomics_status) parts.push(`radiomics: ${p.radiomics_status}`);
  parts.push(`answered in ${(item.ms / 1000).toFixed(2)} s (model ${p.seconds} s)`);
  $("details").textContent = parts.join(" · ");
  $("downloads").replaceChildren(...Object.entries(item.answer.downloads).map(([name, url]) => {
    const a = document.createElement("a");
    a.href = url; a.className = "button"; a.textContent = DOWNLOAD_LABELS[name] || name;
    a.setAttribute("download", `autorad-nodule${item.n}-${name}`);
    return a;
  }));
}

// ------------------------------------------------------------------------------------------- nodule list
function selectedNodule() { return view.nodules.find((n) => n.n === view.selected) || null; }

function renderList() {
  const list = $("nodules");
  $("nodule-count").textContent = view.nodules.length ? `(${view.nodules.length})` : "";
  if (!view.nodules.length) {
    const li = document.createElement("li");
    li.className = "none"; li.textContent = "None yet: click a nodule on the image.";
    list.replaceChildren(li);
    return;
  }
  list.replaceChildren(...view.nodules.map((item) => {
    const p = item.answer.prediction;
    const li = document.createElement("li");
    li.dataset.nodule = item.n;
    li.classList.toggle("selected", item.n === view.selected);
    const go = document.createElement("button");
    go.className = "go";
    go.title = "show this nodule: its slice, outline and result";
    go.textContent = `${item.n}. ${p.predicted_class} ${(100 * p.probabilities[p.predicted_class]).toFixed(0)}%` +
      ` · ${sliceOf(item.z)} · column ${item.x}, row ${item.y}`;
    go.addEventListener("click", () => selectNodule(item.n));
    const rm = document.createElement("button");
    rm.className = "remove"; rm.title = `remove nodule ${item.n}`; rm.textContent = "×";
    rm.setAttribute("aria-label", `remove nodule ${item.n}`);
    rm.addEventListener("click", () => removeNodule(item.n));
    li.append(go, rm);
    return li;
  }));
}

function selectNodule(n) {
  const item = view.nodules.find((it) => it.n === n);
  if (!item) return;
  view.selected = n;
  renderList();
  showPrediction(item);
  goto(item.z);
  setState("done", `Nodule ${n} at column ${item.x}, row ${item.y}, ${sliceOf(item.z)}: outline on ` +
           `${slicesText(item.mask.z0, item.mask.z0 + item.mask.depth - 1)} of ${view.info.shape[0]}.`);
}
view.selectNodule = selectNodule;

async function removeNodule(n) {
  const i = view.nodules.findIndex((it) => it.n === n);
  if (i < 0) return;
  view.nodules.splice(i, 1);
  try { await fetch(`/api/volumes/${view.info.id}/nodules/${n}`, {method: "DELETE"}); } catch (e) { /* gone */ }
  if (view.selected === n) {
    const next = view.nodules[Math.min(i, view.nodules.length - 1)];
    if (next) { selectNodule(next.n); return; }
    view.selected = null;
    resetResult("Click a nodule.");
  }
  renderList();
  render();
}

// ------------------------------------------------------------------------------------------- open and predict
async function openFiles(files) {
  if (!files.length) return;
  view.info = null; view.voxels = null; view.nodules = []; view.selected = null; view.pending = null;
  resetResult("Open a CT and click a nodule.");
  renderList();
  setState("loading", `Reading ${files.length} file(s)…`);
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  let info;
  try {
    const r = await fetch("/api/volumes", {method: "POST", body: form});
    if (!r.ok) { setState("error", `Cannot open: ${await errorText(r)}`); return; }
    info = await r.json();
    const v = await fetch(`/api/volumes/${info.id}/voxels`);
    if (!v.ok) { setState("error", `Cannot read the volume: ${await errorText(v)}`); return; }
    view.voxels = new Int16Array(await v.arrayBuffer());
  } catch (e) {
    setState("error", `Cannot reach the server: ${e}`); return;
  }
  view.info = info;
  const [D, H, W] = info.shape;
  const [, rowMm, colMm] = info.spacing_mm;
  view.offscreen = document.createElement("canvas");
  view.offscreen.width = W; view.offscreen.height = H;
  view.dir = D > 1 && info.slice_numbers[D - 1] < info.slice_numbers[0] ? -1 : 1;
  const slider = $("slider");
  slider.max = D - 1; slider.disabled = false;
  slider.style.direction = view.dir < 0 ? "rtl" : "ltr";  // slice 1 at the left end either way
  $("slider-last").textContent = String(D);
  $("slice-order").textContent = info.slice_order === "instance number"
    ? "Slices are numbered as in the series (DICOM instance number)."
    : "Slices are numbered from the lowest position.";
  view.zoom = 1; view.panX = 0; view.panY = 0;
  const gaps = info.gaps_mm.length ? ` Missing slices between ${info.gaps_mm.map((g) => g.join("–")).join(", ")} mm.` : "";
  setState("loaded", `${D} slices of ${W}×${H}, ${colMm.toFixed(2)}×${rowMm.toFixed(2)}×` +
           `${info.spacing_mm[0].toFixed(2)} mm.${gaps} Scroll to a nodule and click it.`);
  goto(indexOfNumber(Math.ceil(D / 2)));
  $("slice").focus();
}

async function predictAt(x, y, z) {
  const id = ++view.request;
  view.pending = {x, y, z, n: null, mask: null};
  render();
  resetResult("Predicting…");
  setState("predicting", `Predicting the nodule at column ${x}, row ${y}, ${sliceOf(z)}…`);
  const t0 = performance.now();
  const form = new FormData();
  form.append("center", `${x},${y},${z}`);
  if ($("diameter").value.trim()) form.append("diameter_mm", $("diameter").value.trim());
  const volumeId = view.info.id;
  let answer;
  try {
    const r = await fetch(`/api/volumes/${volumeId}/predict`, {method: "POST", body: form});
    if (!view.info || view.info.id !== volumeId) return;  // another CT was opened meanwhile
    if (!r.ok) {
      if (id === view.request) {
        view.pending = null;
        resetResult("No prediction.");
        setState("error", `Prediction refused: ${await errorText(r)}`);
        render();
      }
      return;
    }
    answer = await r.json();
  } catch (e) {
    setState("error", `Cannot reach the server: ${e}`); return;
  }
  if (!view.info || view.info.id !== volumeId) return;
  const m = answer.mask;
  const item = {n: answer.nodule, x, y, z, answer, ms: performance.now() - t0,
                mask: {...m, bits: Uint8Array.from(atob(m.bits), (ch) => ch.charCodeAt(0))}};
  view.nodules.push(item);  // every answered click is a nodule of the list, even one overtaken by a newer click
  if (id !== view.request) { renderList(); render(); return; }
  view.pending = null;
  view.lastClickMs = item.ms;
  selectNodule(item.n);
}

// ------------------------------------------------------------------------------------------- the model
async function loadHealth() {
  try {
    const h = await (await fetch("/api/health")).json();
    const m = h.model;
    view.model = m; view.reading = h.reading || null;
    const enc = [m.vision_encoder && `vision ${m.vision_encoder}`, m.text_encoder && `text ${m.text_encoder}`]
      .filter(Boolean).join(", ");
    $("model-line").textContent = `model: ${m.kind}${enc ? `, ${enc}` : ""}, ` +
      `trained on ${m.trained_on} · autorad ${h.autorad_version}`;
    $("model-words").textContent = m.in_words ? `${m.in_words}.` : "";
    $("sim-banner").hidden = !m.simulated_training_data;
    if (view.reading) $("class-context").textContent = view.reading.context;
    const cv = m.cross_validation || {};
    const sd = (k) => (typeof cv[`${k}_fold_std`] === "number" ? ` (folds ± ${cv[`${k}_fold_std`].toFixed(3)})` : "");
    const rows = [["nodules", Number.isInteger(cv.n) ? `${cv.n} (${cv.n_folds} folds)` : NOT_MEASURED],
                  ["accuracy", metric(cv, "accuracy") + (cv.accuracy === undefined ? "" : sd("accuracy"))],
                  ["macro AUC", metric(cv, "macro_auc") + (cv.macro_auc === undefined ? "" : sd("macro_auc"))],
                  ["unsure F1", metric(cv, "unsure_f1")], ["calibration error (ECE)", metric(cv, "ece")],
                  ...(typeof cv.ece_calibrated === "number"
                    ? [["ECE after temperature scaling", metric(cv, "ece_calibrated")]] : [])];
    $("quality").tBodies[0].replaceChildren(...rows.map(([k, v]) => {
      const tr = document.createElement("tr");
      for (const t of [k, v]) { const td = document.createElement("td"); td.textContent = t; tr.append(td); }
      return tr;
    }));
  } catch (e) {
    $("model-line").textContent = `cannot reach the server: ${e}`;
  }
}

// ------------------------------------------------------------------------------------------- mouse and keys
function dragKind(e) {  // what a drag with this button does: right = window, middle = pan, left = the mode's
  if (e.button === 2) return "window";
  if (e.button === 1) return "pan";
  if (e.button === 0) return view.mode === "pan" ? "pan" : view.mode === "window" ? "window" : "click";
  return null;
}

function initPointer(canvas) {
  let drag = null;
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("pointerdown", (e) => {
    if (!view.info) return;
    const kind = dragKind(e);
    if (!kind) return;
    e.preventDefault();  // no middle-button autoscroll, no text selection
    canvas.focus();
    canvas.setPointerCapture(e.pointerId);
    drag = {kind, x0: e.clientX, y0: e.clientY, x: e.clientX, y: e.clientY, moved: false,
            width: view.width, center: view.center, button: e.button};
  });
  canvas.addEventListener("pointermove", (e) => {
    showHu(e);
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    drag.x = e.clientX; drag.y = e.clientY;
    if (Math.abs(e.clientX - drag.x0) + Math.abs(e.clientY - drag.y0) > DRAG_PX) drag.moved = true;
    if (!drag.moved) return;
    if (drag.kind === "pan") {
      view.panX += dx; view.panY += dy; scheduleRender();
    } else if (drag.kind === "window") {  // right: wider window; down: higher level (a darker image)
      const k = Math.max(drag.width, 100) / 256;
      view.width = Math.max(1, view.width + dx * 2 * k);
      view.center += dy * k;
      document.querySelectorAll("button.win").forEach((b) => b.classList.remove("active"));
      scheduleRender();
    }
  });
  const end = (e) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    if (canvas.hasPointerCapture(e.pointerId)) canvas.releasePointerCapture(e.pointerId);
    if (e.type === "pointerup" && d.kind === "click" && !d.moved && d.button === 0) {
      const v = voxelAt(e.clientX, e.clientY);
      if (v) predictAt(v.x, v.y, view.z);
    }
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("pointerleave", () => { if (!drag) $("hu-readout").textContent = ""; });
  canvas.addEventListener("auxclick", (e) => e.preventDefault());
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (!view.info) return;
    if (e.ctrlKey || e.metaKey) {  // Ctrl + wheel (and a touchpad pinch): zoom about the cursor
      const r = canvas.getBoundingClientRect();
      setZoom(view.zoom * Math.exp(-e.deltaY * 0.002), e.clientX - r.left, e.clientY - r.top);
    } else {
      step(e.deltaY > 0 ? 1 : -1);
      showHu(e);
    }
  }, {passive: false});
}

const KEYS = {
  ArrowDown: () => step(1), ArrowUp: () => step(-1), PageDown: () => step(10), PageUp: () => step(-10),
  Home: () => goto(indexOfNumber(1)), End: () => goto(indexOfNumber(view.info.shape[0])),
  "+": () => setZoom(view.zoom * 1.25), "=": () => setZoom(view.zoom * 1.25), "-": () => setZoom(view.zoom / 1.25),
  "0": resetView, l: () => setPreset($("win-lung")), m: () => setPreset($("win-med")),
  b: () => setPreset($("win-bone")), s: () => setPreset($("win-soft")), n: () => setMode("nodule"),
  p: () => setMode("pan"), w: () => setMode("window"),
};

function init() {
  loadHealth();
  renderList();
  $("file").addEventListener("change", (e) => openFiles([...e.target.files]));
  $("slider").addEventListener("input", (e) => goto(Number(e.target.value)));
  document.querySelectorAll("button.win").forEach((b) => b.addEventListener("click", () => setPreset(b)));
  document.querySelectorAll("button.mode").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
  $("zoom-in").addEventListener("click", () => setZoom(view.zoom * 1.25));
  $("zoom-out").addEventListener("click", () => setZoom(view.zoom / 1.25));
  $("zoom-fit").addEventListener("click", resetView);
  const stage = $("stage");  // drag and drop files (a dropped folder arrives empty: zip it, or select its files)
  stage.addEventListener("dragover", (e) => e.preventDefault());
  stage.addEventListener("drop", (e) => { e.preventDefault(); openFiles([...e.dataTransfer.files]); });
  const canvas = $("slice");
  canvas.tabIndex = 0;
  initPointer(canvas);
  document.addEventListener("keydown", (e) => {
    if (!view.info || e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
    const act = KEYS[e.key.length === 1 ? e.key.toLowerCase() : e.key];
    if (act) { e.preventDefault(); act(); }
  });
  setMode("nodule");
}

document.addEventListener("DOMContentLoaded", init);

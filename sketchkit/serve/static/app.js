// sketchkit's page: draw or open a sketch, segment it with the server's model, correct stroke labels, save.
// No build step, no dependencies. The HTTP API it calls is documented in docs/serve.md.
"use strict";

// The label palette of sketchkit.render (class_color): PALETTE[index % 18], grey for "background" and no label.
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
  "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5"];
const GREY = "#7f7f7f";
const BACKGROUND = "background";
const SVG_NS = "http://www.w3.org/2000/svg";
const NEW_CANVAS = [1100, 770]; // a FrISS canvas

const $ = (id) => document.getElementById(id);

const state = {
  canvas: NEW_CANVAS.slice(),
  // each stroke: {points: [[x, y], ...], label: string|null, manual: bool, info: {confidence, top}|null}
  strokes: [],
  source: { kind: "drawn", name: null },   // or {kind: "file", name, base64} or {kind: "index", index, name}
  labels: [],                              // the label list (legend order = colour order)
  current: 0,                              // legend index that clicks assign
  mode: "draw",
  undo: [],
  redo: [],
  segmented: false,
  health: null,
  folder: null,                            // {index, total, done} in folder mode
  busy: 0,
};

// ---- API ---------------------------------------------------------------------------------------------------------

async function api(method, path, body, as = "json") {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const error = await response.json();
      message = error.error + (error.hint ? ` (${error.hint})` : "");
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return as === "json" ? response.json() : response.blob();
}

function status(text, isError = false) {
  const footer = $("status");
  footer.textContent = text;
  footer.classList.toggle("error", isError);
}

async function busy(label, work) {
  state.busy += 1;
  status(label + "…");
  try {
    return await work();
  } catch (error) {
    status(error.message, true);
    return undefined;
  } finally {
    state.busy -= 1;
  }
}

// ---- the sketch a request names -----------------------------------------------------------------------------------

function round(value) { return Math.round(value * 100) / 100; }

function stroke3() {
  // the strokes on the page as a FrISS stroke-3 scene: [dx, dy, pen_lift] rows, the first row absolute
  const rows = [];
  let x = 0, y = 0;
  for (const stroke of state.strokes) {
    stroke.points.forEach(([px, py], k) => {
      rows.push([round(px - x), round(py - y), k === stroke.points.length - 1 ? 1 : 0]);
      x = px; y = py;
    });
  }
  return { img_w: state.canvas[0], img_h: state.canvas[1], scene_strokes: rows };
}

function sketchFields() {
  const source = state.source;
  if (source.kind === "index") return { index: source.index };
  if (source.kind === "file") return { sketch_base64: source.base64, filename: source.name };
  return { sketch: stroke3(), filename: source.name || "drawing.json" };
}

function labelFields() {
  const typed = $("labels").value.trim();
  if (typed) return { labels: typed };
  const caption = $("caption").value.trim();
  if (caption) return { caption };
  return {};
}

function stem() {
  const name = state.source.name || "drawing";
  return name.replace(/^.*\//, "").replace(/\.[^.]*$/, "") || "drawing";
}

// ---- labels and colours -------------------------------------------------------------------------------------------

function labelList() {
  // the legend: the label list, then any other label a stroke has ("background" last)
  const names = state.labels.slice();
  for (const stroke of state.strokes) {
    if (stroke.label !== null && !names.includes(stroke.label)) names.push(stroke.label);
  }
  const background = names.indexOf(BACKGROUND);
  if (background >= 0) names.splice(background, 1);
  if (background >= 0 || $("use-threshold").checked) names.push(BACKGROUND);
  return names;
}

function colour(label) {
  if (label === null || label === BACKGROUND) return GREY;
  const index = labelList().indexOf(label);
  return PALETTE[index % PALETTE.length];
}

function setLabelsFromInput() {
  const typed = $("labels").value.split(",").map((s) => s.trim()).filter((s) => s);
  state.labels = [...new Set(typed)];
}

// ---- drawing the strokes ------------------------------------------------------------------------------------------

function pathData(points) {
  if (points.length === 1) points = [points[0], points[0]];
  return "M" + points.map(([x, y]) => `${x} ${y}`).join(" L");
}

function render() {
  const svg = $("canvas");
  const [w, h] = state.canvas;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  $("paper").setAttribute("width", w);
  $("paper").setAttribute("height", h);
  const group = $("strokes");
  group.replaceChildren();
  state.strokes.forEach((stroke, i) => {
    const g = document.createElementNS(SVG_NS, "g");
    g.dataset.stroke = String(i);
    if (stroke.label !== null) g.dataset.label = stroke.label;
    const d = pathData(stroke.points);
    const line = document.createElementNS(SVG_NS, "path");
    line.setAttribute("d", d);
    line.setAttribute("class", "stroke" + (stroke.label === null ? " unlabelled" : ""));
    if (stroke.label !== null) line.setAttribute("stroke", colour(stroke.label));
    const hit = document.createElementNS(SVG_NS, "path");
    hit.setAttribute("d", d);
    hit.setAttribute("class", "hit");
    g.append(line, hit);
    group.append(g);
  });
  renderLegend();
  $("undo").disabled = state.undo.length === 0;
  $("redo").disabled = state.redo.length === 0;
}

function renderLegend() {
  const names = labelList();
  if (state.current >= names.length) state.current = Math.max(0, names.length - 1);
  const counts = {};
  for (const stroke of state.strokes) if (stroke.label !== null) counts[stroke.label] = (counts[stroke.label] || 0) + 1;
  const list = $("legend");
  list.replaceChildren();
  names.forEach((name, i) => {
    const item = document.createElement("li");
    item.dataset.label = name;
    item.classList.toggle("current", i === state.current);
    const key = document.createElement("span");
    key.className = "key";
    key.textContent = i < 9 ? String(i + 1) : "";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour(name);
    const text = document.createElement("span");
    text.textContent = name;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = String(counts[name] || 0);
    item.append(key, swatch, text, count);
    item.addEventListener("click", () => pickLabel(i));
    list.append(item);
  });
  const unlabelled = state.strokes.filter((s) => s.label === null).length;
  if (unlabelled && state.strokes.length) {
    const item = document.createElement("li");
    item.className = "muted";
    item.textContent = `${unlabelled} stroke(s) without a label`;
    list.append(item);
  }
}

function pickLabel(index) {
  if (index < 0 || index >= labelList().length) return;
  state.current = index;
  setMode("label");
  renderLegend();
  status(`clicks and lassos now give "${labelList()[index]}"`);
}

function setMode(mode) {
  state.mode = mode;
  $("canvas").setAttribute("class", mode);
  $("mode-draw").setAttribute("aria-pressed", String(mode === "draw"));
  $("mode-label").setAttribute("aria-pressed", String(mode === "label"));
}

// ---- undo / redo --------------------------------------------------------------------------------------------------

function perform(action) {
  apply(action, "after");
  state.undo.push(action);
  state.redo = [];
  render();
}

function apply(action, side) {
  if (action.type === "label") {
    for (const change of action.changes) Object.assign(state.strokes[change.index], change[side]);
  } else if (action.type === "add") {
    if (side === "after") state.strokes.push(action.stroke); else state.strokes.pop();
    markDrawn();
  }
}

function undo() {
  const action = state.undo.pop();
  if (!action) return;
  apply(action, "before");
  state.redo.push(action);
  render();
}

function redo() {
  const action = state.redo.pop();
  if (!action) return;
  apply(action, "after");
  state.undo.push(action);
  render();
}

function relabel(indices) {
  const label = labelList()[state.current];
  if (label === undefined) {
    status("type labels (or a caption) first, then pick one with its number key", true);
    return;
  }
  const changes = indices
    .filter((i) => state.strokes[i].label !== label || !state.strokes[i].manual)
    .map((i) => ({ index: i, before: { label: state.strokes[i].label, manual: state.strokes[i].manual },
      after: { label, manual: true } }));
  if (!changes.length) return;
  perform({ type: "label", changes });
  status(`${changes.length} stroke(s) -> ${label}`);
}

function markDrawn() {
  // strokes drawn on an opened or folder sketch: the page's strokes become the sketch
  if (state.source.kind === "file") state.source = { kind: "drawn", name: state.source.name };
}

// ---- pointer input: drawing, clicking, lasso ----------------------------------------------------------------------

function toCanvas(event) {
  const svg = $("canvas");
  const point = svg.createSVGPoint();
  point.x = event.clientX;
  point.y = event.clientY;
  const p = point.matrixTransform(svg.getScreenCTM().inverse());
  return [round(p.x), round(p.y)];
}

let gesture = null; // {kind: "draw"|"lasso"|"click", points, stroke}

function strokeIndexOf(target) {
  const g = target && target.closest ? target.closest("g[data-stroke]") : null;
  return g ? Number(g.dataset.stroke) : -1;
}

function onPointerDown(event) {
  if (event.button !== 0 && event.pointerType === "mouse") return;
  if (state.source.kind === "index" && state.mode === "draw") setMode("label"); // folder sketches are not drawn on
  const svg = $("canvas");
  svg.setPointerCapture(event.pointerId);
  const point = toCanvas(event);
  if (state.mode === "draw") {
    const stroke = { points: [point], label: null, manual: false, info: null };
    gesture = { kind: "draw", stroke, element: null };
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("class", "stroke unlabelled");
    path.setAttribute("d", pathData(stroke.points));
    $("strokes").append(path);
    gesture.element = path;
  } else {
    gesture = { kind: "lasso", points: [point], start: strokeIndexOf(event.target), moved: false };
  }
  event.preventDefault();
}

function onPointerMove(event) {
  if (!gesture) {
    showTooltip(event);
    return;
  }
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const point = toCanvas(e);
    if (gesture.kind === "draw") {
      const last = gesture.stroke.points[gesture.stroke.points.length - 1];
      if (point[0] !== last[0] || point[1] !== last[1]) gesture.stroke.points.push(point);
    } else {
      gesture.points.push(point);
      const [x0, y0] = gesture.points[0];
      if (Math.hypot(point[0] - x0, point[1] - y0) > 4) gesture.moved = true;
    }
  }
  if (gesture.kind === "draw") {
    gesture.element.setAttribute("d", pathData(gesture.stroke.points));
  } else if (gesture.moved) {
    const lasso = $("lasso");
    lasso.hidden = false;
    lasso.setAttribute("points", gesture.points.map((p) => p.join(",")).join(" "));
  }
}

function onPointerUp(event) {
  if (!gesture) return;
  const done = gesture;
  gesture = null;
  $("lasso").hidden = true;
  if (done.kind === "draw") {
    done.element.remove();
    perform({ type: "add", stroke: done.stroke });
    status(`${state.strokes.length} stroke(s) drawn`);
  } else if (done.moved) {
    const inside = state.strokes.map((s, i) => (inLasso(s.points, done.points) ? i : -1)).filter((i) => i >= 0);
    if (inside.length) relabel(inside); else status("the lasso holds no stroke");
  } else if (done.start >= 0) {
    relabel([done.start]);
  }
}

function inLasso(points, polygon) {
  // a stroke is inside when at least half of its points are
  let inside = 0;
  for (const [x, y] of points) {
    let hit = false;
    for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
      const [xi, yi] = polygon[i], [xj, yj] = polygon[j];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
    }
    if (hit) inside += 1;
  }
  return inside * 2 >= points.length;
}

function showTooltip(event) {
  const tip = $("tooltip");
  const index = strokeIndexOf(event.target);
  if (index < 0) {
    tip.hidden = true;
    return;
  }
  const stroke = state.strokes[index];
  const lines = [`stroke ${index}: ${stroke.label === null ? "no label" : stroke.label}` +
    (stroke.manual ? " (corrected)" : "")];
  if (stroke.info) {
    const confidence = stroke.info.confidence === null ? "" : `confidence ${(stroke.info.confidence * 100).toFixed(0)}%`;
    const changed = stroke.manual && stroke.info.label !== stroke.label;
    if (changed) lines.push(`model: ${stroke.info.label}` + (confidence ? `, ${confidence}` : ""));
    else if (confidence) lines.push(confidence);
    const top = stroke.info.top.map((t) => t.label + (t.votes_share !== undefined ? ` ${(t.votes_share * 100).toFixed(0)}%` : ""));
    if (top.length) lines.push(`top-${top.length}: ${top.join(", ")}`);
  }
  tip.replaceChildren(...lines.map((line) => Object.assign(document.createElement("div"), { textContent: line })));
  const stage = $("stage").getBoundingClientRect();
  tip.style.left = `${event.clientX - stage.left + 14}px`;
  tip.style.top = `${event.clientY - stage.top + 14}px`;
  tip.hidden = false;
}

// ---- segment, open, save ------------------------------------------------------------------------------------------

function thresholdValue() {
  return $("use-threshold").checked ? Number($("threshold").value) : null;
}

async function segment() {
  if (!state.strokes.length) {
    status("draw or open a sketch first", true);
    return;
  }
  const result = await busy("segmenting", () =>
    api("POST", "/segment", { ...sketchFields(), ...labelFields(), threshold: thresholdValue() }));
  if (!result) return;
  applyResult(result);
  setMode("label");
  const counts = Object.entries(result.label_counts).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ");
  status(`segmented ${result.strokes.length} strokes: ${counts}`);
}

function applyResult(result) {
  const model = result.labels.filter((name) => name !== BACKGROUND);
  state.labels = model;
  if (!$("labels").value.trim()) $("labels").value = model.join(", ");
  result.strokes.forEach((s, i) => {
    const stroke = state.strokes[i];
    if (!stroke) return;
    stroke.info = { label: s.label, confidence: s.confidence, top: s.top };
    if (!stroke.manual) stroke.label = s.label;
  });
  state.segmented = true;
  render();
}

function loadGeometry(geometry, { labels = null, manual = false } = {}) {
  state.canvas = geometry.canvas;
  const given = labels || geometry.stroke_labels || [];
  state.strokes = geometry.strokes.map((points, i) => ({
    points, label: given[i] === undefined ? null : given[i], manual: manual && given[i] != null, info: null }));
  state.undo = [];
  state.redo = [];
  state.segmented = false;
  state.labels = [];
  setLabelsFromInput();
  if (geometry.caption && !$("caption").value.trim()) $("caption").value = geometry.caption;
  render();
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

async function openFile(file) {
  const base64 = await readBase64(file);
  const geometry = await busy(`reading ${file.name}`, () => api("POST", "/parse", { sketch_base64: base64, filename: file.name }));
  if (!geometry) return;
  state.source = { kind: "file", name: file.name, base64 };
  loadGeometry(geometry);
  setMode("label");
  status(`${file.name}: ${geometry.strokes.length} strokes` + (geometry.stroke_labels ? " with the file's labels" : ""));
}

function strokeLabels() {
  return state.strokes.map((s) => s.label);
}

function download(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

async function save(format) {
  if (!state.strokes.length) {
    status("nothing to save yet", true);
    return;
  }
  const suffix = { svg: ".labelled.svg", friss: ".labels.json", png: ".labelled.png" }[format];
  const blob = await busy(`saving ${format.toUpperCase()}`, () => api("POST", "/convert", {
    ...sketchFields(), stroke_labels: strokeLabels(), labels: labelList().filter((n) => n !== BACKGROUND), format,
  }, "blob"));
  if (!blob) return;
  download(blob, stem() + suffix);
  status(`saved ${stem() + suffix}`);
}

function newDrawing() {
  state.source = { kind: "drawn", name: null };
  state.canvas = NEW_CANVAS.slice();
  state.strokes = [];
  state.undo = [];
  state.redo = [];
  state.segmented = false;
  setMode("draw");
  render();
  status("draw with a mouse, pen or finger");
}

// ---- folder mode --------------------------------------------------------------------------------------------------

async function loadItem(index) {
  const item = await busy("opening", () => api("GET", `/annotate/${index}`));
  if (!item) return;
  state.source = { kind: "index", index, name: item.name };
  state.folder = { index, total: item.total, done: item.done_count };
  loadGeometry(item.sketch, { labels: item.saved_labels, manual: item.saved_labels !== null });
  showProgress(item.name);
  setMode("label");
  if (item.saved_error) status(`${item.name}: ${item.saved_error}`, true);
  if (item.saved_labels) {
    status(`${item.name}: saved labels loaded`);
  } else {
    await segment();
  }
}

function showProgress(name) {
  const folder = state.folder;
  $("folder").hidden = false;
  $("item-name").textContent = `${folder.index + 1}. ${name}`;
  $("progress").textContent = `${folder.done} / ${folder.total} done`;
}

async function saveItem() {
  const folder = state.folder;
  if (state.strokes.some((s) => s.label === null)) {
    status("some strokes have no label yet: segment, or give them one", true);
    return;
  }
  const saved = await busy("saving", () => api("PUT", `/annotate/${folder.index}`, {
    stroke_labels: strokeLabels(), labels: labelList().filter((n) => n !== BACKGROUND) }));
  if (!saved) return;
  folder.done = saved.done;
  showProgress(state.source.name);
  status(`saved ${saved.saved} (${saved.done} / ${saved.total} done)`);
  if (saved.next !== null && saved.next !== undefined) await loadItem(saved.next);
  else status(`saved ${saved.saved}: every sketch of the folder is done`);
}

// ---- wiring -------------------------------------------------------------------------------------------------------

function onKey(event) {
  const typing = event.target instanceof HTMLInputElement && event.target.type === "text";
  const ctrl = event.ctrlKey || event.metaKey;
  if (ctrl && event.key.toLowerCase() === "z" && !typing) {
    event.preventDefault();
    if (event.shiftKey) redo(); else undo();
  } else if (ctrl && event.key.toLowerCase() === "y" && !typing) {
    event.preventDefault();
    redo();
  } else if (!ctrl && !event.altKey && !typing && /^[1-9]$/.test(event.key)) {
    pickLabel(Number(event.key) - 1);
  } else if (!ctrl && !typing && (event.key === "d" || event.key === "l")) {
    setMode(event.key === "d" ? "draw" : "label");
  }
}

let thresholdTimer = null;

function onThreshold() {
  $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
  render();
  if (!state.segmented) return;
  clearTimeout(thresholdTimer);
  thresholdTimer = setTimeout(segment, 250);
}

async function start() {
  const svg = $("canvas");
  svg.addEventListener("pointerdown", onPointerDown);
  svg.addEventListener("pointermove", onPointerMove);
  svg.addEventListener("pointerup", onPointerUp);
  svg.addEventListener("pointercancel", onPointerUp);
  svg.addEventListener("pointerleave", () => { $("tooltip").hidden = true; });
  document.addEventListener("keydown", onKey);
  $("mode-draw").addEventListener("click", () => setMode("draw"));
  $("mode-label").addEventListener("click", () => setMode("label"));
  $("segment").addEventListener("click", segment);
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clear").addEventListener("click", newDrawing);
  $("save-svg").addEventListener("click", () => save("svg"));
  $("save-json").addEventListener("click", () => save("friss"));
  $("save-png").addEventListener("click", () => save("png"));
  $("save-folder").addEventListener("click", saveItem);
  $("labels").addEventListener("change", () => { setLabelsFromInput(); render(); });
  $("use-threshold").addEventListener("change", onThreshold);
  $("threshold").addEventListener("input", onThreshold);
  $("open").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) openFile(file);
    event.target.value = "";
  });
  $("from-caption").addEventListener("click", async () => {
    const caption = $("caption").value.trim();
    if (!caption) return status("type a caption first", true);
    const found = await busy("reading the caption", () => api("POST", "/labels", { caption }));
    if (!found) return;
    if (!found.labels.length) return status(`no known category in "${caption}"`, true);
    $("labels").value = found.labels.join(", ");
    setLabelsFromInput();
    render();
    status(`categories: ${found.labels.join(", ")}`);
  });
  $("prev").addEventListener("click", () => state.folder && loadItem((state.folder.index - 1 + state.folder.total) % state.folder.total));
  $("next").addEventListener("click", () => state.folder && loadItem((state.folder.index + 1) % state.folder.total));
  setMode("draw");
  render();

  const health = await busy("connecting", () => api("GET", "/health"));
  if (!health) return;
  state.health = health;
  $("model").textContent = `model: ${health.model} on ${health.device}`;
  $("random-badge").hidden = !health.random_weights;
  if (health.default_labels && !$("labels").value) $("labels").value = health.default_labels.join(", ");
  setLabelsFromInput();
  render();
  if (health.annotate) {
    $("save-folder").hidden = false;
    const listing = await busy("listing the folder", () => api("GET", "/annotate"));
    if (!listing) return;
    await loadItem(listing.next === null ? 0 : listing.next);
  } else {
    status("draw with a mouse, pen or finger, or open a file; then Segment");
  }
  document.body.dataset.ready = "true";
}

start();

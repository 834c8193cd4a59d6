// The live lecture page: asks the server (benchmarks/serve.py, API in docs/serve.md) what the run's
// models can do, and offers each model only the controls its capabilities give it.
"use strict";

const $ = (id) => document.getElementById(id);
const CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const STEP_STOPS = [1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10000];

const state = {
  run: null,        // /api/run
  models: {},       // name -> /api/models entry
  model: null,      // the chosen one
  steps: [],        // the steps slider's values
  cost: "",         // what a request of the chosen settings costs, in words
  pending: 0,       // requests in flight
  failed: false,    // the status bar shows a refusal
  plane: null,      // /api/plane-points of the chosen model
};

// -- talking to the server ------------------------------------------------------------------

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  return q.toString();
}

async function getJSON(path) {
  const res = await fetch(path);
  if (!res.ok) throw new Error((await res.text()).trim());
  return res.json();
}

// Each image element shows the answer to its latest request only: a slow answer to an older one is dropped.
const latest = new WeakMap();

async function showImage(img, path, caption, what) {
  const ticket = (latest.get(img) || 0) + 1;
  latest.set(img, ticket);
  working(+1, what);
  try {
    const res = await fetch(path);
    if (!res.ok) throw new Error((await res.text()).trim());
    const blob = await res.blob();
    if (latest.get(img) !== ticket) return null;
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.dataset.loads = String(Number(img.dataset.loads || 0) + 1);
    if (caption) caption.textContent = res.headers.get("X-Genzoo-Caption") || "";
    return res;
  } catch (e) {
    fail(e.message);
    return null;
  } finally {
    working(-1);
  }
}

function working(delta, what) {
  state.pending += delta;
  const status = $("status");
  if (delta > 0) { // a new request: the last failure is old news
    state.failed = false;
    status.classList.remove("bad");
    status.classList.add("working");
    status.textContent = `${what}… ${state.cost}`;
  } else if (state.pending === 0 && !state.failed) { // a failure stays up until the next request
    status.classList.remove("working");
    status.textContent = "ready";
  }
}

function fail(message) {
  state.failed = true;
  const status = $("status");
  status.classList.remove("working");
  status.classList.add("bad");
  status.textContent = message;
}

// -- the run and its models -----------------------------------------------------------------

async function start() {
  try {
    [state.run, { models: state.models }] = await Promise.all([getJSON("/api/run"), getJSON("/api/models")]);
  } catch (e) {
    fail(`the server did not answer: ${e.message}`);
    return;
  }
  state.models = Object.fromEntries(state.models.map((m) => [m.name, m]));
  const run = state.run;
  $("run-name").textContent = run.folder;
  $("run-info").textContent = `${run.dataset}, ${run.preset} preset · on ${run.device} · a request spends at most ${run.pass_budget} network passes`;
  document.title = `genzoo · ${run.folder}`;
  showLinks(run);
  fillTable();
  const select = $("model");
  for (const name of Object.keys(state.models)) select.add(new Option(name, name));
  const wanted = new URLSearchParams(location.hash.slice(1)).get("model");
  choose(wanted in state.models ? wanted : select.options[0].value);
  $("image-a").max = $("image-b").max = String(run.test_images - 1);
  [$("image-a").value, $("image-b").value] = run.pair;
  thumbs();
  working(0);
}

function showLinks(run) {
  const links = $("links");
  const add = (href, text) => {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    a.target = "_blank";
    links.append(a, " · ");
  };
  if (run.report) add(`/files/${run.report}`, "the run's report");
  if (run.results) add(`/files/${run.results}`, "results.md");
  for (const f of run.figures) add(`/files/${f}`, f);
}

const CONTROL_WORDS = { sample: "draw", steps: "steps", guidance: "guidance", label: "class", plane: "latent plane",
                        interpolate: "interpolate", trajectory: "watch it draw" };

function fillTable() {
  const body = $("models").tBodies[0];
  for (const m of Object.values(state.models)) {
    const row = body.insertRow();
    row.dataset.model = m.name;
    const cell = (text, cls) => {
      const c = row.insertCell();
      c.textContent = text;
      if (cls) c.className = cls;
      return c;
    };
    cell(m.name);
    cell(number(m.metrics.fid), "num");
    cell(m.metrics.bits_per_dim == null ? "–" : `${number(m.metrics.bits_per_dim)} (${m.metrics.bpd_kind})`, "num");
    cell(m.metrics.nfe == null ? "–" : String(m.metrics.nfe), "num");
    const chips = cell("");
    for (const key of Object.keys(m.controls)) {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.textContent = CONTROL_WORDS[key] || key;
      chips.append(chip);
    }
    row.addEventListener("click", () => choose(m.name));
  }
}

function number(v) {
  if (v == null || !Number.isFinite(v)) return "–";
  return Math.abs(v) >= 1000 ? Math.round(v).toLocaleString("en") : v.toPrecision(3);
}

// -- choosing a model: what it is offered ------------------------------------------------------

function choose(name) {
  state.model = state.models[name];
  $("model").value = name;
  history.replaceState(null, "", `#model=${encodeURIComponent(name)}`);
  for (const row of $("models").tBodies[0].rows) row.classList.toggle("chosen", row.dataset.model === name);
  const c = state.model.controls;
  const missing = state.model.missing;
  setupSteps(c.steps);
  setupGuidance(c.guidance);
  setupLabel(c.label);
  const absent = ["steps", "guidance"].filter((k) => !c[k]);
  $("sampler-missing").textContent = absent.length === 0 ? ""
    : `No ${absent.join(" or ")} slider: ${name}'s sampler has no ${absent.join(" or ")} to set.`;
  section("plane", c.plane, missing.plane);
  section("interpolate", c.interpolate, missing.interpolate);
  section("trajectory", c.trajectory, missing.trajectory);
  $("ends").querySelectorAll("input, .thumb").forEach((el) => { el.hidden = c.interpolate === "codes"; });
  for (const id of ["plane-image", "plane-decoded", "interpolation", "animation"]) clear($(id));
  $("plane-marker").hidden = true;
  updateCost().then(draw);
  if (c.plane) loadPlane();
}

function section(id, offered, why) {
  $(`${id}-body`).hidden = !offered;
  $(`${id}-missing`).textContent = offered ? "" : `Not for ${state.model.name}: ${why}.`;
}

function clear(img) {
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.removeAttribute("src");
  const caption = img.parentElement.querySelector("figcaption");
  if (caption) caption.textContent = "";
  latest.set(img, (latest.get(img) || 0) + 1); // answers still on their way are for the model before
}

function setupSteps(s) {
  $("steps-row").hidden = !s;
  if (!s) return;
  // a lecture shows 5, 10, 50 steps: the slider stops at round numbers, and at the model's own default
  state.steps = [...new Set([...STEP_STOPS.filter((v) => v >= s.min && v <= s.max), s.min, s.max, s.default])].sort((a, b) => a - b);
  const slider = $("steps");
  slider.min = "0";
  slider.max = String(state.steps.length - 1);
  slider.value = String(state.steps.indexOf(s.default));
  $("steps-value").textContent = s.default;
}

function setupGuidance(g) {
  $("guidance-row").hidden = !g;
  if (!g) return;
  const slider = $("guidance");
  slider.min = String(g.min);
  slider.max = String(g.max);
  slider.step = String(g.type === "int" ? 1 : Math.min(0.5, (g.max - g.min) / 20));
  slider.value = String(g.default);
  $("guidance-value").textContent = g.default;
}

function setupLabel(l) {
  $("label-row").hidden = !l;
  if (!l) return;
  const select = $("label");
  select.length = 0;
  select.add(new Option("any (drawn with the seed)", ""));
  for (let k = 0; k < l.classes; k++) select.add(new Option(l.names ? l.names[k] : String(k), String(k)));
}

// -- the sampler's settings, shared by the grid and the animation --------------------------------

function sampler() {
  const c = state.model.controls;
  return {
    model: state.model.name,
    seed: $("seed").value,
    steps: c.steps ? state.steps[Number($("steps").value)] : null,
    guidance: c.guidance ? $("guidance").value : null,
    label: c.label ? $("label").value : null,
  };
}

async function updateCost() {
  const s = sampler();
  try {
    const cost = await getJSON(`/api/cost?${query({ model: s.model, steps: s.steps, guidance: s.guidance })}`);
    const passes = `${cost.nfe} network pass${cost.nfe === 1 ? "" : "es"}`;
    state.cost = `${cost.model}: ${passes} an image, so at most ${cost.images} images a request (cap: ${cost.pass_budget} passes)`;
  } catch (e) {
    state.cost = "";
    fail(e.message);
  }
  $("cost").textContent = state.cost;
}

function draw() {
  return showImage($("sample"), `/api/sample?${query(sampler())}`, $("sample-caption"), "drawing");
}

function play() {
  const s = sampler();
  return showImage($("animation"), `/api/trajectory?${query(s)}`, $("animation-caption"), `watching ${s.model} draw`);
}

// -- the latent plane ----------------------------------------------------------------------------

async function loadPlane() {
  const name = state.model.name;
  state.plane = null;
  drawDots();
  const res = await showImage($("plane-image"), `/api/plane-image?${query({ model: name })}`, $("plane-caption"), "drawing the plane");
  if (!res || state.model.name !== name) return;
  try {
    const points = await getJSON(`/api/plane-points?${query({ model: name })}`);
    if (state.model.name === name) state.plane = points;
  } catch (e) {
    fail(e.message);
  }
  drawDots();
}

function drawDots() {
  const canvas = $("plane-dots");
  const img = $("plane-image");
  canvas.width = img.clientWidth;
  canvas.height = img.clientHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.plane || !$("plane-show-dots").checked) return;
  for (const [x, y, label] of state.plane.points) {
    ctx.fillStyle = label >= 0 ? CLASS_COLOURS[label % CLASS_COLOURS.length] : "#e8221b";
    ctx.beginPath();
    ctx.arc(x * canvas.width, y * canvas.height, 3, 0, 2 * Math.PI);
    ctx.fill();
  }
}

function clickPlane(event) {
  const img = $("plane-image");
  if (!img.getAttribute("src")) return;
  const box = img.getBoundingClientRect();
  const inside = (v) => Math.min(0.999, Math.max(0.001, v));
  const x = inside((event.clientX - box.left) / box.width);
  const y = inside((event.clientY - box.top) / box.height);
  const marker = $("plane-marker");
  marker.style.left = `${x * 100}%`;
  marker.style.top = `${y * 100}%`;
  marker.hidden = false;
  showImage($("plane-decoded"), `/api/plane?${query({ model: state.model.name, x: x.toFixed(4), y: y.toFixed(4) })}`,
            $("plane-point-caption"), "decoding the point");
}

// -- interpolation -----------------------------------------------------------------------------

function thumbs() {
  for (const end of ["a", "b"]) {
    const i = $(`image-${end}`).value;
    const img = $(`thumb-${end}`);
    showImage(img, `/api/test-image?${query({ i })}`, null, "fetching the test image").then((res) => {
      if (res) img.title = res.headers.get("X-Genzoo-Caption") || "";
    });
  }
}

function randomPair() {
  const n = state.run.test_images;
  const a = Math.floor(Math.random() * n);
  let b = Math.floor(Math.random() * (n - 1));
  if (b >= a) b += 1;
  $("image-a").value = a;
  $("image-b").value = b;
  thumbs();
  interpolate();
}

function interpolate() {
  const params = state.model.controls.interpolate === "codes"
    ? { model: state.model.name, seed: $("seed").value }
    : { model: state.model.name, a: $("image-a").value, b: $("image-b").value };
  return showImage($("interpolation"), `/api/interpolate?${query(params)}`, $("interpolation-caption"), "interpolating");
}

// -- wiring --------------------------------------------------------------------------------------

function newSeed() {
  $("seed").value = Math.floor(Math.random() * 100000);
  draw();
}

$("model").addEventListener("change", (e) => choose(e.target.value));
$("draw-button").addEventListener("click", draw);
$("new-seed").addEventListener("click", newSeed);
$("seed").addEventListener("change", draw);
$("steps").addEventListener("input", () => { $("steps-value").textContent = state.steps[Number($("steps").value)]; });
$("steps").addEventListener("change", () => updateCost().then(draw));
$("guidance").addEventListener("input", () => { $("guidance-value").textContent = $("guidance").value; });
$("guidance").addEventListener("change", () => updateCost().then(draw));
$("label").addEventListener("change", draw);
$("plane-box").addEventListener("click", clickPlane);
$("plane-show-dots").addEventListener("change", drawDots);
$("plane-image").addEventListener("load", drawDots);
window.addEventListener("resize", drawDots);
$("image-a").addEventListener("change", thumbs);
$("image-b").addEventListener("change", thumbs);
$("random-pair").addEventListener("click", randomPair);
$("interpolate-button").addEventListener("click", interpolate);
$("play").addEventListener("click", play);
document.addEventListener("keydown", (e) => {
  if (e.target.matches("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
  const keys = { d: draw, n: newSeed, p: () => state.model.controls.trajectory && play() };
  if (keys[e.key]) keys[e.key]();
});

start();

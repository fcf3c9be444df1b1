// dragkit studio — the page's controller: wires the controls, the viewer and the server connection.
// Plain ES modules, no build step. The server is the single source of truth: every control sends a message,
// and the page redraws from the `state` / `frame` / `stopped` messages it gets back.

import { Connection } from "./net.js";
import { Viewer } from "./viewer.js";

const $ = (id) => document.getElementById(id);

const ui = {
  conn: $("conn"),
  busy: $("busy"),
  model: $("model"),
  seed: $("seed"),
  classIdx: $("class"),
  openPhoto: $("open-photo"),
  alignPhoto: $("align-photo"),
  photoFile: $("photo-file"),
  stage: $("stage"),
  classRow: $("class-row"),
  randomSeed: $("random-seed"),
  psi: $("psi"),
  psiValue: $("psi-value"),
  lr: $("lr"),
  latentReg: $("latent-reg"),
  guard: $("guard"),
  tracker: $("tracker"),
  maxSteps: $("max-steps"),
  start: $("start"),
  stop: $("stop"),
  undo: $("undo"),
  redo: $("redo"),
  undoDrag: $("undo-drag"),
  reset: $("reset"),
  pointsList: $("points-list"),
  clearPoints: $("clear-points"),
  radius: $("radius"),
  maskLambda: $("mask-lambda"),
  radiusValue: $("radius-value"),
  showMask: $("show-mask"),
  clearMask: $("clear-mask"),
  savePng: $("save-png"),
  saveLatent: $("save-latent"),
  saveSession: $("save-session"),
  loadSession: $("load-session"),
  sessionFile: $("session-file"),
  exportFormat: $("export-format"),
  exportOverlays: $("export-overlays"),
  exportBtn: $("export"),
  step: $("step"),
  runSteps: $("run-steps"),
  distance: $("distance"),
  loss: $("loss"),
  runState: $("run-state"),
  fps: $("fps"),
  hint: $("hint"),
  message: $("message"),
  help: $("help"),
  helpOpen: $("help-open"),
  wrap: $("canvas-wrap"),
};

/** Everything the page knows; `server` is the last state the server sent. */
const app = {
  server: null,
  models: [],
  trackers: [],
  limits: null,
  model: null, // the model of the current image
  cDim: 0, // its class count (0 = unconditional)
  distances: [],
  loss: null,
  frameTimes: [],
  // Counters read by the end-to-end test and the latency benchmark.
  stats: {
    framesReceived: 0,
    framesDrawn: 0,
    firstImageAt: null,
    lastFrame: null,
    distanceLog: [],
    frameArrivals: [], // performance.now() of each frame message
    errors: [],
    warnings: [],
    stops: [],
    invertProgress: [], // {stage, step, steps} of each invert_progress message
  },
};
window.dragkit = app;

const viewer = new Viewer($("image"), $("overlay"), {
  addPoint: (handle, target) => send({ type: "add_point", handle, target }),
  movePoint: (index, change) => send({ type: "move_point", index, ...change }),
  removePoint: (index) => send({ type: "remove_point", index }),
  stroke: (points, radius, mode) => send({ type: "mask_stroke", points, radius, mode }),
  select: () => renderPoints(),
});

const conn = new Connection(onMessage, onStatus);

function send(msg) {
  const id = conn.send(msg);
  if (id === null) notify("not connected to the studio server", "error");
  return id;
}

// -- server messages ------------------------------------------------------------------------------------------
function onStatus(state, detail) {
  ui.conn.dataset.state = state;
  ui.conn.textContent = detail || { connecting: "connecting…", open: "connected", closed: "disconnected" }[state];
  if (state === "closed") setRunState("idle", "offline");
}

function onMessage(msg) {
  switch (msg.type) {
    case "hello":
      app.models = msg.models;
      app.trackers = msg.trackers;
      app.limits = msg.limits;
      fillModels(msg.models, msg.defaults.model);
      fillTrackers(msg.trackers);
      ui.seed.max = String(msg.limits.max_seed);
      ui.maxSteps.max = String(msg.limits.max_steps);
      break;
    case "status":
      showBusy(msg.message);
      break;
    case "state":
      showBusy(null);
      applyState(msg);
      break;
    case "frame":
      onFrame(msg);
      break;
    case "stopped":
      applyState(msg);
      app.stats.stops.push(msg.reason);
      setRunState(msg.reason === "arrived" ? "arrived" : msg.reason === "error" ? "error" : "idle", {
        arrived: "arrived",
        max_steps: "max steps reached",
        user: "stopped",
        error: "stopped (error)",
        superseded: "stopped",
        degraded: "stopped: the image started to degrade",
      }[msg.reason]);
      if (msg.reason === "degraded") {
        notify(
          "stopped: the image started to degrade — back at the last sharp step. Undo a few steps or add a mask " +
            "(or turn the quality guard off to go on)",
          "warning",
          12000,
        );
      }
      break;
    case "error":
      showBusy(null);
      app.stats.errors.push(msg);
      notify(msg.message, "error");
      // a refused choice (a model that failed to load, say) must not stay selected: show what is in use
      if (app.server && app.server.model && ui.model.value !== app.server.model) ui.model.value = app.server.model;
      break;
    case "invert_progress":
      app.stats.invertProgress.push({ stage: msg.stage, step: msg.step, steps: msg.steps });
      showBusy(`inverting the photo — ${{ w: "projecting (W)", "w+": "projecting (W+)", pti: "tuning" }[msg.stage]} ${msg.step}/${msg.steps}`);
      if (msg.image) viewer.setImage(msg.image);
      break;
    case "warning":
      app.stats.warnings.push(msg);
      notify(msg.message, "warning");
      break;
    default:
      break;
  }
}

function applyState(s) {
  const sizeChanged = s.width && (!app.server || app.server.width !== s.width || app.server.height !== s.height);
  app.server = s;
  if (s.width) viewer.setSize(s.width, s.height);
  if (sizeChanged) {
    // Brush sizes follow the image: up to half its size, 4% of it to start with.
    ui.radius.max = String(Math.max(2, Math.floor(Math.max(s.width, s.height) / 2)));
    setRadius(Math.max(1, Math.round(Math.min(s.width, s.height) * 0.04)));
  }
  if (s.image) {
    viewer.setImage(s.image).then((drawn) => {
      if (drawn && app.stats.firstImageAt === null) {
        app.stats.firstImageAt = performance.now();
        performance.mark("dragkit:first-image");
      }
    });
  }
  if ("mask" in s) viewer.setMask(s.mask);
  viewer.setPoints(s.handles, s.targets);
  app.distances = s.distances;
  if (s.model && ui.model.value !== s.model) ui.model.value = s.model;
  if (document.activeElement !== ui.seed) ui.seed.value = String(s.seed);
  app.model = s.model;
  app.cDim = s.c_dim || 0;
  ui.classRow.hidden = app.cDim === 0;
  if (app.cDim > 0) {
    ui.classIdx.max = String(app.cDim - 1);
    if (document.activeElement !== ui.classIdx) ui.classIdx.value = String(s.class_idx ?? 0);
  }
  ui.psi.value = String(s.psi);
  ui.psiValue.textContent = Number(s.psi).toFixed(2);
  if (document.activeElement !== ui.lr && s.lr !== null) ui.lr.value = String(s.lr);
  if (s.tracker) ui.tracker.value = s.tracker;
  if (document.activeElement !== ui.maxSteps) ui.maxSteps.value = String(s.max_steps);
  if (document.activeElement !== ui.maskLambda) ui.maskLambda.value = String(s.mask_lambda);
  if (document.activeElement !== ui.latentReg && s.latent_reg !== undefined) ui.latentReg.value = String(s.latent_reg);
  if (s.guard !== undefined) ui.guard.checked = s.guard;
  for (const r of document.querySelectorAll('input[name="latent"]')) r.checked = r.value === (s.w_plus ? "w+" : "w");
  ui.step.textContent = String(s.step);
  ui.runSteps.textContent = String(s.run_steps);
  if (s.running) setRunState("running", "dragging…");
  else if (ui.runState.dataset.state === "running" || (s.step === 0 && s.type === "state")) setRunState("idle", "idle");
  renderControls();
  renderPoints();
  renderDistance();
}

function onFrame(f) {
  app.stats.framesReceived += 1;
  app.stats.frameArrivals.push(performance.now());
  app.stats.lastFrame = { step: f.step, handles: f.handles, targets: f.targets, distances: f.distances, loss: f.loss, done: f.done };
  app.stats.distanceLog.push(f.distances.length ? Math.max(...f.distances) : null);
  viewer.setImage(f.image).then((drawn) => {
    if (drawn) app.stats.framesDrawn += 1;
  });
  viewer.setPoints(f.handles, f.targets);
  app.distances = f.distances;
  app.loss = f.loss;
  if (app.server) {
    Object.assign(app.server, {
      handles: f.handles,
      targets: f.targets,
      distances: f.distances,
      step: f.step,
      run_steps: f.run_steps,
      can_undo: f.can_undo,
      can_redo: f.can_redo,
      running: true,
      frames: (app.server.frames || 0) + 1, // recorded for export; the next state has the exact count
      last_run_steps: 0,
    });
  }
  ui.step.textContent = String(f.step);
  ui.runSteps.textContent = String(f.run_steps);
  ui.loss.textContent = f.loss === null ? "–" : f.loss.toPrecision(4);
  const now = performance.now();
  app.frameTimes.push(now);
  while (app.frameTimes.length && now - app.frameTimes[0] > 2000) app.frameTimes.shift();
  if (app.frameTimes.length > 1) {
    const span = (app.frameTimes[app.frameTimes.length - 1] - app.frameTimes[0]) / 1000;
    ui.fps.textContent = `${((app.frameTimes.length - 1) / span).toFixed(1)} frames/s`;
  }
  setRunState("running", "dragging…");
  renderControls();
  renderPoints();
  renderDistance();
}

// -- rendering the controls --------------------------------------------------------------------------------
function fillModels(models, current) {
  ui.model.replaceChildren(
    ...models.map((m) => {
      const o = document.createElement("option");
      o.value = m.id;
      o.textContent = m.label;
      o.title = `${m.source}: ${m.id}`;
      return o;
    }),
  );
  ui.model.value = (app.server && app.server.model) || current;
}

// The server's trackers in its order; experimental ones in their own group, marked as such.
function fillTrackers(trackers) {
  const option = (t) => {
    const o = document.createElement("option");
    o.value = t.name;
    o.textContent = t.experimental ? `${t.label} (experimental)` : t.label;
    o.title = t.description;
    return o;
  };
  const stable = trackers.filter((t) => !t.experimental).map(option);
  const experimental = trackers.filter((t) => t.experimental).map(option);
  const items = [...stable];
  if (experimental.length) {
    const group = document.createElement("optgroup");
    group.label = "Experimental";
    group.append(...experimental);
    items.push(group);
  }
  ui.tracker.replaceChildren(...items);
  if (app.server && app.server.tracker) ui.tracker.value = app.server.tracker;
}

function renderControls() {
  const s = app.server;
  const have = !!(s && s.width);
  const running = !!(s && s.running);
  const points = have ? s.handles.length : 0;
  ui.start.disabled = !have || running || points === 0;
  ui.stop.disabled = !running;
  ui.undo.disabled = !have || !s.can_undo;
  ui.redo.disabled = !have || !s.can_redo;
  ui.undoDrag.disabled = !have || !(s.last_run_steps > 0);
  ui.reset.disabled = !have;
  ui.clearPoints.disabled = !have || points === 0;
  ui.clearMask.disabled = !have || !s.has_mask;
  for (const b of [ui.savePng, ui.saveLatent, ui.saveSession, ui.loadSession]) b.disabled = !have;
  ui.exportBtn.disabled = !have || !(s.frames > 0);
  if (!have) ui.hint.textContent = "Waiting for the first image…";
  else if (viewer.tool === "mask")
    ui.hint.textContent = `Paint the ${viewer.brushMode} region (radius ${viewer.radius}px). P returns to points.`;
  else if (viewer.pending) ui.hint.textContent = "Now click where this handle should go (Esc cancels).";
  else if (points === 0)
    ui.hint.textContent = "Click to place a handle, then click its target — or press and drag from handle to target.";
  else ui.hint.textContent = "Start (Space) drags every red handle towards its blue target.";
}

function renderPoints() {
  const s = app.server;
  if (!s) return;
  const items = s.handles.map((h, i) => {
    const t = s.targets[i];
    const li = document.createElement("li");
    li.className = viewer.selected === i ? "selected" : "";
    li.dataset.index = String(i);
    const d = app.distances[i];
    li.innerHTML =
      `<span>${i + 1}</span><span class="dot h"></span>${fmt(h)}<span>→</span>` +
      `<span class="dot t"></span>${fmt(t)}<span class="d">${d === undefined ? "" : d.toFixed(1) + " px"}</span>`;
    const del = document.createElement("button");
    del.type = "button";
    del.textContent = "×";
    del.title = "Delete this point (Delete)";
    del.addEventListener("click", (e) => {
      e.stopPropagation();
      send({ type: "remove_point", index: i });
    });
    li.appendChild(del);
    li.addEventListener("click", () => {
      viewer.selected = viewer.selected === i ? null : i;
      viewer.draw();
      renderPoints();
    });
    return li;
  });
  ui.pointsList.replaceChildren(...items);
}

function renderDistance() {
  const d = app.distances || [];
  ui.distance.textContent = d.length ? d.map((v) => v.toFixed(1)).join(" · ") : "–";
  ui.distance.title = d.length ? "distance of each handle to its target, in image pixels" : "";
}

function setRunState(state, text) {
  ui.runState.dataset.state = state;
  ui.runState.textContent = text;
}

function fmt(p) {
  return `${Math.round(p[0])},${Math.round(p[1])}`;
}

let messageTimer = null;
function notify(text, kind = "info", ms = kind === "error" ? 6000 : 3000) {
  ui.message.textContent = text;
  ui.message.dataset.kind = kind;
  ui.message.hidden = false;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => (ui.message.hidden = true), ms);
}

function showBusy(text) {
  ui.busy.hidden = !text;
  ui.busy.textContent = text || "";
}

// -- actions -----------------------------------------------------------------------------------------------
function newImage(seed, model) {
  const s = Number.isInteger(seed) ? seed : Number(ui.seed.value);
  const max = app.limits ? app.limits.max_seed : 4294967295;
  if (!Number.isInteger(s) || s < 0 || s > max) {
    notify(`seed must be an integer in [0, ${max}]`, "error");
    return;
  }
  const chosen = model || ui.model.value || null;
  const msg = { type: "new_image", seed: s, psi: Number(ui.psi.value), model: chosen };
  if (app.cDim > 0 && (chosen === null || chosen === app.model)) {
    const c = Number(ui.classIdx.value);
    if (!Number.isInteger(c) || c < 0 || c >= app.cDim) {
      notify(`class must be an integer in [0, ${app.cDim - 1}]`, "error");
      return;
    }
    msg.class_idx = c;
  }
  viewer.pending = null;
  ui.seed.value = String(s);
  send(msg);
}

function randomSeed() {
  newImage(Math.floor(Math.random() * 100000));
}

function start() {
  if (!ui.start.disabled) send({ type: "start" });
}

function stop() {
  send({ type: "stop" });
}

function toggleRun() {
  if (app.server && app.server.running) stop();
  else start();
}

function setTool(tool) {
  viewer.tool = tool;
  viewer.pending = null;
  ui.wrap.dataset.tool = tool;
  for (const r of document.querySelectorAll('input[name="tool"]')) r.checked = r.value === tool;
  viewer.draw();
  renderControls();
}

function setBrush(mode) {
  viewer.brushMode = mode;
  for (const r of document.querySelectorAll('input[name="brush"]')) r.checked = r.value === mode;
  viewer.draw();
  renderControls();
}

function setRadius(r) {
  const v = Math.max(1, Math.min(Number(ui.radius.max), Math.round(r)));
  viewer.radius = v;
  ui.radius.value = String(v);
  ui.radiusValue.textContent = String(v);
  viewer.draw();
  renderControls();
}

function setShowMask(on) {
  viewer.showMask = on;
  ui.showMask.checked = on;
  viewer.draw();
}

async function download(path, what) {
  try {
    const file = await conn.download(path);
    notify(`saved ${file.name} (${(file.size / 1024).toFixed(0)} KB)`);
    return file;
  } catch (err) {
    notify(`${what} failed: ${err.message}`, "error");
    app.stats.errors.push({ code: "http", message: err.message });
    return null;
  }
}

function exportVideo() {
  const fmtName = ui.exportFormat.value;
  const overlays = ui.exportOverlays.checked;
  showBusy("exporting video…");
  return download(`export.${fmtName}?overlays=${overlays}&fps=10`, "export").finally(() => showBusy(null));
}

async function openPhotoFile(file) {
  if (!file) return;
  const limit = app.limits ? app.limits.max_photo_bytes : Infinity;
  if (file.size > limit) {
    notify(`${file.name} is larger than the photo limit (${Math.round(limit / 2 ** 20)} MB)`, "error");
    return;
  }
  if (file.type && !file.type.startsWith("image/")) {
    notify(`${file.name} is not an image`, "error");
    return;
  }
  showBusy(`uploading ${file.name}…`);
  ui.openPhoto.disabled = true;
  const query = `photo?name=${encodeURIComponent(file.name)}&align=${ui.alignPhoto.checked}`;
  try {
    const state = await conn.upload(query, file);
    applyState(state);
    notify(`${file.name} is ready to drag (model ${state.model})`);
  } catch (err) {
    notify(`opening the photo failed: ${err.message}`, "error");
    if (app.server && app.server.image) viewer.setImage(app.server.image);
  } finally {
    showBusy(null);
    ui.openPhoto.disabled = false;
    ui.photoFile.value = "";
  }
}

async function loadSessionFile(file) {
  if (!file) return;
  const limit = app.limits ? app.limits.max_upload_bytes : Infinity;
  if (file.size > limit) {
    notify(`${file.name} is larger than the upload limit (${limit} bytes)`, "error");
    return;
  }
  showBusy(`loading ${file.name}…`);
  try {
    const state = await conn.upload("session", file);
    applyState(state);
    notify(`loaded ${file.name}`);
  } catch (err) {
    notify(`loading the session failed: ${err.message}`, "error");
  } finally {
    showBusy(null);
    ui.sessionFile.value = "";
  }
}

// -- wiring ------------------------------------------------------------------------------------------------
ui.model.addEventListener("change", () => newImage(undefined, ui.model.value));
ui.seed.addEventListener("change", () => newImage());
ui.classIdx.addEventListener("change", () => newImage());
ui.randomSeed.addEventListener("click", randomSeed);
ui.psi.addEventListener("input", () => (ui.psiValue.textContent = Number(ui.psi.value).toFixed(2)));
ui.psi.addEventListener("change", () => newImage());
for (const r of document.querySelectorAll('input[name="latent"]')) {
  r.addEventListener("change", () => send({ type: "set_config", w_plus: r.value === "w+" }));
}
ui.lr.addEventListener("change", () => {
  const lr = Number(ui.lr.value);
  if (!(lr > 0 && lr <= 1)) return notify("learning rate must be in (0, 1]", "error");
  send({ type: "set_config", lr });
});
ui.tracker.addEventListener("change", () => send({ type: "set_config", tracker: ui.tracker.value }));
ui.latentReg.addEventListener("change", () => {
  const v = Number(ui.latentReg.value);
  if (!(v >= 0 && v <= 100)) return notify("regularisation γ must be in [0, 100]", "error");
  send({ type: "set_config", latent_reg: v });
});
ui.guard.addEventListener("change", () => send({ type: "set_config", guard: ui.guard.checked }));
ui.maxSteps.addEventListener("change", () => {
  const n = Number(ui.maxSteps.value);
  if (!Number.isInteger(n) || n < 1 || n > 10000) return notify("max steps must be an integer in [1, 10000]", "error");
  send({ type: "set_config", max_steps: n });
});
ui.maskLambda.addEventListener("change", () => {
  const v = Number(ui.maskLambda.value);
  if (!(v >= 0 && v <= 1000)) return notify("hold strength λ must be in [0, 1000]", "error");
  send({ type: "set_config", mask_lambda: v });
});
ui.start.addEventListener("click", start);
ui.stop.addEventListener("click", stop);
ui.undo.addEventListener("click", () => send({ type: "undo" }));
ui.redo.addEventListener("click", () => send({ type: "redo" }));
ui.undoDrag.addEventListener("click", () => send({ type: "undo", drag: true }));
ui.reset.addEventListener("click", () => send({ type: "reset" }));
ui.clearPoints.addEventListener("click", () => send({ type: "clear_points" }));
for (const r of document.querySelectorAll('input[name="tool"]')) r.addEventListener("change", () => setTool(r.value));
for (const r of document.querySelectorAll('input[name="brush"]')) r.addEventListener("change", () => setBrush(r.value));
ui.radius.addEventListener("input", () => setRadius(Number(ui.radius.value)));
ui.showMask.addEventListener("change", () => setShowMask(ui.showMask.checked));
ui.clearMask.addEventListener("click", () => send({ type: "mask_clear" }));
ui.savePng.addEventListener("click", () => download("image.png", "saving the PNG"));
ui.saveLatent.addEventListener("click", () => download("latent.pt", "saving the latent"));
ui.saveSession.addEventListener("click", () => download("session.pt", "saving the session"));
ui.loadSession.addEventListener("click", () => ui.sessionFile.click());
ui.openPhoto.addEventListener("click", () => ui.photoFile.click());
ui.photoFile.addEventListener("change", () => openPhotoFile(ui.photoFile.files[0]));
ui.stage.addEventListener("dragover", (e) => {
  if (e.dataTransfer && [...e.dataTransfer.types].includes("Files")) e.preventDefault();
});
ui.stage.addEventListener("drop", (e) => {
  const file = e.dataTransfer && e.dataTransfer.files[0];
  if (!file) return;
  e.preventDefault();
  openPhotoFile(file);
});
ui.sessionFile.addEventListener("change", () => loadSessionFile(ui.sessionFile.files[0]));
ui.exportBtn.addEventListener("click", exportVideo);
ui.helpOpen.addEventListener("click", () => ui.help.showModal());

document.addEventListener("keydown", (e) => {
  const el = document.activeElement;
  const typing = el && (el.tagName === "SELECT" || el.tagName === "TEXTAREA" ||
    (el.tagName === "INPUT" && !["checkbox", "radio", "range", "button"].includes(el.type)));
  if (typing || ui.help.open) return;
  const mod = e.ctrlKey || e.metaKey;
  const key = e.key;
  let handled = true;
  if (mod && (key === "z" || key === "Z")) send({ type: e.shiftKey ? "redo" : "undo" });
  else if (mod && (key === "y" || key === "Y")) send({ type: "redo" });
  else if (mod && (key === "s" || key === "S")) download("session.pt", "saving the session");
  else if (mod) handled = false;
  else if (e.altKey && (e.code === "KeyZ")) send({ type: "undo", drag: true });
  else if (key === " ") toggleRun();
  else if (key === "r" || key === "R") send({ type: "reset" });
  else if (key === "n" || key === "N") randomSeed();
  else if (key === ".") newImage(Math.min(Number(ui.seed.value) + 1, 4294967295));
  else if (key === ",") newImage(Math.max(Number(ui.seed.value) - 1, 0));
  else if (key === "p" || key === "P") setTool("points");
  else if (key === "m" || key === "M") setTool("mask");
  else if (key === "f" || key === "F") setBrush(viewer.brushMode === "movable" ? "fixed" : "movable");
  else if (key === "[") setRadius(viewer.radius - Math.max(1, Math.round(viewer.radius * 0.15)));
  else if (key === "]") setRadius(viewer.radius + Math.max(1, Math.round(viewer.radius * 0.15)));
  else if (key === "h" || key === "H") setShowMask(!viewer.showMask);
  else if (key === "C") send({ type: "mask_clear" });
  else if (key === "c") send({ type: "clear_points" });
  else if (key === "Delete" || key === "Backspace") {
    if (viewer.selected !== null) {
      send({ type: "remove_point", index: viewer.selected });
      viewer.selected = null;
    }
  } else if (key === "Escape") {
    viewer.cancelGesture();
    viewer.selected = null;
    renderPoints();
    renderControls();
  } else if (key === "s" || key === "S") download("image.png", "saving the PNG");
  else if (key === "l" || key === "L") ui.sessionFile.click();
  else if (key === "e" || key === "E") exportVideo();
  else if (key === "?") ui.help.showModal();
  else handled = false;
  if (handled) e.preventDefault();
});

// A clicked button keeps no focus, so Space always means Start/Stop rather than "click it again".
document.addEventListener("click", (e) => {
  const button = e.target instanceof Element ? e.target.closest("button") : null;
  if (button) button.blur();
});

// The viewer changes `pending` on clicks; keep the hint in step.
$("overlay").addEventListener("pointerup", () => renderControls());

setRadius(Number(ui.radius.value));
conn.open();

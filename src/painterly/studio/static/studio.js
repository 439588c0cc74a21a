// painterly studio: inputs, settings form, job queue, live preview over server-sent events.
"use strict";

const $ = (id) => document.getElementById(id);
const MAIN_FIELDS = ["size", "iterations", "style_weight", "content_weight", "tv_weight", "preserve_color", "model"];
const ADVANCED_FIELDS = ["coarse_iterations", "style_scale", "optimizer", "init", "seed", "weights"];
const LABELS = {
  size: "Size (px)", iterations: "Iterations", style_weight: "Style weight β", content_weight: "Content weight α",
  tv_weight: "Smoothness γ", preserve_color: "Colour", model: "Model", coarse_iterations: "Coarse iterations",
  style_scale: "Brush scale", optimizer: "Optimiser", init: "Start from", seed: "Seed", weights: "Weights",
};
const CHOICE_LABELS = { none: "style colours", luminance: "keep luminance", histogram: "match histogram", null: "pretrained" };
const FINAL = ["done", "cancelled", "failed", "interrupted"];

const state = { config: null, content: null, styles: [], jobs: new Map(), selected: null, follow: true, history: [] };

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function showError(message) {
  $("form-error").textContent = message || "";
  $("form-error").hidden = !message;
}

function fmtTime(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
}

const fmtNumber = (v) => (v == null ? "" : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-2) ? v.toExponential(2) : String(+v.toPrecision(4)));

// ---- settings form, built from the server's schema so defaults live only in Settings ----------

function buildForm() {
  const { fields } = state.config;
  for (const [target, names] of [[$("settings"), MAIN_FIELDS], [$("advanced"), ADVANCED_FIELDS]]) {
    for (const name of names) {
      const spec = fields[name];
      const label = document.createElement("label");
      label.title = spec.help;
      label.append(LABELS[name] || name);
      let input;
      if (spec.choices) {
        input = document.createElement("select");
        for (const choice of spec.choices) {
          const option = new Option(CHOICE_LABELS[String(choice)] || choice, choice == null ? "" : choice);
          option.selected = choice === spec.default;
          input.add(option);
        }
      } else {
        input = document.createElement("input");
        input.type = "number";
        input.step = "any";
        input.min = "0";
        input.value = spec.default == null ? "" : spec.default;
      }
      input.name = name;
      input.id = `field-${name}`;
      label.appendChild(input);
      target.appendChild(label);
    }
  }
  $("field-model").addEventListener("change", updatePlaceholders);
  updatePlaceholders();
}

function updatePlaceholders() {
  const defaults = state.config.model_defaults[$("field-model").value] || {};
  for (const name of ["content_weight", "style_weight", "tv_weight"]) $(`field-${name}`).placeholder = `default ${fmtNumber(defaults[name])}`;
}

function readSettings() {
  const settings = {};
  for (const name of [...MAIN_FIELDS, ...ADVANCED_FIELDS]) {
    const input = $(`field-${name}`);
    if (input.value === "") continue;
    settings[name] = input.type === "number" ? Number(input.value) : input.value;
  }
  return settings;
}

// ---- inputs: uploads, drops and shipped examples ----------------------------------------------

async function uploadFile(file) {
  const limit = state.config.limits.max_upload_bytes;
  if (file.size > limit) throw new Error(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB; the limit is ${(limit / 1e6).toFixed(1)} MB`);
  const form = new FormData();
  form.append("file", file);
  return api("/api/uploads", { method: "POST", body: form });
}

async function addFiles(files, role) {
  showError("");
  for (const file of files) {
    try {
      const input = await uploadFile(file);
      if (role === "content") state.content = input;
      else state.styles.push(input);
    } catch (err) {
      showError(err.message);
    }
    if (role === "content") break;
  }
  renderInputs();
}

function thumb(input, onRemove) {
  const figure = document.createElement("figure");
  const img = new Image();
  img.src = input.url;
  img.alt = input.name;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "remove";
  remove.title = `Remove ${input.name}`;
  remove.textContent = "×";
  remove.addEventListener("click", (event) => { event.preventDefault(); onRemove(); });
  const caption = document.createElement("figcaption");
  caption.textContent = input.name;
  figure.append(img, remove, caption);
  return figure;
}

function renderInputs() {
  const contentThumbs = $("content-thumbs");
  contentThumbs.replaceChildren(...(state.content ? [thumb(state.content, () => { state.content = null; renderInputs(); })] : []));
  $("style-thumbs").replaceChildren(...state.styles.map((s, i) => thumb(s, () => { state.styles.splice(i, 1); renderInputs(); })));
  $("content-drop").classList.toggle("filled", !!state.content);
  $("style-drop").classList.toggle("filled", state.styles.length > 0);
}

function setupDrop(zoneId, fileId, role) {
  const zone = $(zoneId);
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    addFiles([...event.dataTransfer.files], role);
  });
  $(fileId).addEventListener("change", (event) => { addFiles([...event.target.files], role); event.target.value = ""; });
}

function setupExamples(selectId, role) {
  const select = $(selectId);
  select.add(new Option(state.config.examples.length ? "or pick an example…" : "no examples installed", ""));
  for (const ex of state.config.examples) select.add(new Option(ex.name, ex.ref));
  select.addEventListener("change", () => {
    const ex = state.config.examples.find((e) => e.ref === select.value);
    if (ex) {
      if (role === "content") state.content = ex;
      else state.styles.push(ex);
      renderInputs();
    }
    select.value = "";
  });
}

async function start() {
  showError("");
  if (!state.content) return showError("Choose a content image first.");
  if (!state.styles.length) return showError("Choose at least one style image.");
  $("start").disabled = true;
  try {
    const job = await api("/api/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ content: state.content.ref, styles: state.styles.map((s) => s.ref), settings: readSettings() }),
    });
    state.jobs.set(job.id, job);
    state.follow = true;
    select(job.id);
  } catch (err) {
    showError(err.message);
  } finally {
    $("start").disabled = false;
  }
}

// ---- jobs: gallery, stage and live events -------------------------------------------------------

async function refresh() {
  const { jobs } = await api("/api/jobs");
  state.jobs = new Map(jobs.map((j) => [j.id, j]));
  const running = jobs.find((j) => j.status === "running");
  if (state.selected && state.jobs.has(state.selected)) await select(state.selected);
  else if (running || jobs.length) await select((running || jobs[0]).id);
  else renderAll();
}

async function select(id) {
  state.selected = id;
  state.history = [];
  try {
    const job = await api(`/api/jobs/${id}`);
    state.jobs.set(id, job);
    state.history = job.history || [];
  } catch (err) { /* removed meanwhile */ }
  renderAll();
}

function onJob(job) {
  const previous = state.jobs.get(job.id);
  state.jobs.set(job.id, { ...previous, ...job });
  if (job.status === "running" && state.follow && job.id !== state.selected) return select(job.id);
  if (job.id === state.selected && FINAL.includes(job.status)) return select(job.id);
  renderAll();
}

function onStep(data) {
  const job = state.jobs.get(data.id);
  if (!job) return;
  job.progress = data.progress;
  if (data.id !== state.selected) return;
  state.history.push(...data.points);
  if (data.preview != null && data.preview !== job.preview) {
    job.preview = data.preview;
    const next = new Image();
    next.onload = () => { if (state.selected === data.id && job.status === "running") $("stage-img").src = next.src; };
    next.src = `/api/jobs/${data.id}/preview?v=${data.preview}`;
  }
  renderStage();
}

function statusLine(job) {
  const p = job.progress;
  switch (job.status) {
    case "queued": return job.position ? `Waiting — number ${job.position} in the queue` : "Waiting";
    case "running":
      if (!p || !p.total) return "Starting…";
      return `Iteration ${p.iteration} / ${p.total}` + (p.scales > 1 ? ` · scale ${p.scale + 1} of ${p.scales}` : "") + ` · ${fmtTime(p.eta)} left`;
    case "done": return `Done in ${fmtTime(job.seconds)} · loss ${fmtNumber(job.losses && job.losses.total)}`;
    case "cancelled": return "Cancelled" + (job.has_result ? " — the last image was kept" : "");
    case "interrupted": if (job.has_result) return `Stopped early: ${job.error || "interrupted"} — the last image was kept`;
    default: return `${job.status[0].toUpperCase() + job.status.slice(1)}: ${job.error || "no result"}`;
  }
}

function summary(job) {
  const s = job.settings;
  const parts = [`${job.content.name} × ${job.styles.map((x) => x.name).join(" + ")}`, s.model, `${s.size} px`, `${s.iterations} iterations`];
  if (s.preserve_color !== "none") parts.push(`colour: ${s.preserve_color}`);
  if (s.weights === "random") parts.push("random weights");
  return parts.join(" · ");
}

function renderStage() {
  const job = state.jobs.get(state.selected);
  const img = $("stage-img");
  $("stage-empty").hidden = !!job;
  img.hidden = !job;
  $("cancel").hidden = !job || FINAL.includes(job.status);
  $("download").hidden = !job || !job.has_result;
  const badge = $("stage-badge");
  badge.hidden = !job;
  if (!job) {
    $("job-meta").textContent = "";
    return drawLossChart($("loss-chart"), [], 0);
  }
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  let src = job.content.url;
  if (job.has_result) src = `/api/jobs/${job.id}/result?v=${job.finished}`;
  else if (job.status === "running" && job.preview != null) src = `/api/jobs/${job.id}/preview?v=${job.preview}`;
  if (img.getAttribute("src") !== src && !(job.status === "running" && img.src.includes(`/api/jobs/${job.id}/preview`))) img.src = src;
  img.classList.toggle("waiting", job.status === "queued");
  $("download").href = `/api/jobs/${job.id}/result?download=1`;
  const p = job.progress;
  const fraction = job.status === "done" ? 1 : p && p.total ? p.iteration / p.total : 0;
  $("progress-fill").style.width = `${(fraction * 100).toFixed(1)}%`;
  $("progress-fill").className = job.status;
  $("status-text").textContent = statusLine(job);
  $("job-meta").textContent = summary(job);
  drawLossChart($("loss-chart"), state.history, p ? p.total : 0);
}

function renderGallery() {
  const jobs = [...state.jobs.values()];
  const cards = jobs.map((job) => {
    const card = document.createElement("button");
    card.type = "button";
    card.className = `card ${job.id === state.selected ? "selected" : ""}`;
    card.dataset.id = job.id;
    const img = new Image();
    img.src = job.has_result ? `/api/jobs/${job.id}/result?v=${job.finished}` : job.content.url;
    img.alt = "";
    const badge = document.createElement("span");
    badge.className = `badge ${job.status}`;
    badge.textContent = job.status === "queued" && job.position ? `#${job.position}` : job.status;
    const caption = document.createElement("span");
    caption.className = "caption";
    caption.textContent = `${job.content.name} × ${job.styles.map((s) => s.name).join(", ")} · ${job.settings.size}px`;
    card.append(img, badge, caption);
    card.addEventListener("click", () => { state.follow = false; select(job.id); });
    return card;
  });
  $("gallery").replaceChildren(...cards);
  const waiting = jobs.filter((j) => j.status === "queued").length;
  const running = jobs.filter((j) => j.status === "running").length;
  $("runs-count").textContent = `${jobs.length} run${jobs.length === 1 ? "" : "s"}`;
  $("queue-pill").textContent = running || waiting ? `${running} running · ${waiting} waiting` : "idle";
  $("queue-pill").classList.toggle("busy", running > 0);
}

function renderAll() {
  renderGallery();
  renderStage();
}

function connect() {
  const events = new EventSource("/api/events");
  events.onopen = () => refresh().catch((err) => showError(err.message));
  events.onerror = () => { $("queue-pill").textContent = "reconnecting…"; };
  events.addEventListener("job", (e) => onJob(JSON.parse(e.data)));
  events.addEventListener("step", (e) => onStep(JSON.parse(e.data)));
  events.addEventListener("queue", (e) => {
    const { positions } = JSON.parse(e.data);
    for (const job of state.jobs.values()) if (job.status === "queued") job.position = positions[job.id] || null;
    renderAll();
  });
  events.addEventListener("removed", (e) => { state.jobs.delete(JSON.parse(e.data).id); renderAll(); });
}

async function main() {
  state.config = await api("/api/config");
  buildForm();
  setupDrop("content-drop", "content-file", "content");
  setupDrop("style-drop", "style-file", "style");
  setupExamples("content-example", "content");
  setupExamples("style-example", "style");
  lossLegend($("legend"));
  $("start").addEventListener("click", start);
  $("cancel").addEventListener("click", () => api(`/api/jobs/${state.selected}/cancel`, { method: "POST" }).catch((err) => showError(err.message)));
  window.addEventListener("resize", renderStage);
  renderAll();
  connect();
}

main().catch((err) => showError(`The studio could not start: ${err.message}`));

// painterly studio, part 1: helpers, the settings form and the inputs (uploads, drops, examples).
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
const FINAL = ["done", "cancelled", "failed", "interrupted", "unreadable"];

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

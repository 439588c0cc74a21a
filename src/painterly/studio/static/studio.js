// painterly studio, part 2: starting jobs, the stage, the gallery and the live event stream.
"use strict";

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
    merge(job);
    state.follow = true;
    select(job.id);
  } catch (err) {
    showError(err.message);
  } finally {
    $("start").disabled = false;
  }
}

// ---- jobs: gallery, stage and live events -------------------------------------------------------

// A job only moves forward (queued, running, then a final state), so a reply that arrives after a
// newer event must not take it back: merge() keeps the further-along record.
const rank = (status) => ({ queued: 0, running: 1 })[status] ?? 2;

function merge(job) {
  const known = state.jobs.get(job.id);
  if (known && rank(known.status) > rank(job.status)) return false;
  state.jobs.set(job.id, { ...known, ...job });
  return true;
}

async function refresh() {
  const { jobs } = await api("/api/jobs");
  const listed = new Set(jobs.map((j) => j.id));
  for (const id of [...state.jobs.keys()]) if (!listed.has(id)) state.jobs.delete(id);
  jobs.forEach(merge);
  const running = jobs.find((j) => j.status === "running");
  if (state.selected && state.jobs.has(state.selected)) await select(state.selected);
  else if (running || jobs.length) await select((running || jobs[0]).id);
  else renderAll();
}

async function select(id) {
  if (state.selected !== id) {
    state.selected = id;
    state.history = [];
  }
  try {
    const job = await api(`/api/jobs/${id}`);
    if (merge(job) && state.selected === id) {  // keep the points that streamed in meanwhile
      const fetched = job.history || [];
      const last = fetched.length ? fetched[fetched.length - 1][0] : 0;
      state.history = fetched.concat(state.history.filter((p) => p[0] > last));
    }
  } catch (err) { /* removed meanwhile */ }
  renderAll();
}

function onJob(job) {
  merge(job);
  if (job.status === "running" && state.follow && job.id !== state.selected) return select(job.id);
  if (job.id === state.selected && FINAL.includes(job.status)) return select(job.id);
  renderAll();
}

function onStep(data) {
  const job = state.jobs.get(data.id);
  if (!job) return;
  if (job.status === "queued") job.status = "running";  // its "running" event may still be on its way
  job.progress = data.progress;
  if (data.preview != null && data.preview !== job.preview) {
    job.preview = data.preview;
    const next = new Image();
    next.onload = () => {
      if (job.status !== "running") return;  // finished meanwhile: the result is shown instead
      const card = document.querySelector(`#gallery .card[data-id="${data.id}"] img`);
      if (card) card.src = next.src;
      if (state.selected === data.id) $("stage-img").src = next.src;
    };
    next.src = `/api/jobs/${data.id}/preview?v=${data.preview}`;
  }
  if (data.id !== state.selected) return;
  state.history.push(...data.points);
  renderStage();
}

function statusLine(job) {
  const p = job.progress;
  switch (job.status) {
    case "queued": return job.position ? `Waiting — number ${job.position} in the queue` : "Waiting";
    case "running":
      if (!p || !p.total) return "Starting…";
      return `Iteration ${p.iteration} / ${p.total}` + (p.scales > 1 ? ` · scale ${p.scale + 1} of ${p.scales}` : "") + (p.eta == null ? "" : ` · ${fmtTime(p.eta)} left`);
    case "done": return `Done in ${fmtTime(job.seconds)} · loss ${fmtNumber(job.losses && job.losses.total)}`;
    case "cancelled": return "Cancelled" + (job.has_result ? " — the last image was kept" : "");
    case "interrupted": if (job.has_result) return `Stopped early: ${job.error || "interrupted"} — the last image was kept`;
    default: return `${job.status[0].toUpperCase() + job.status.slice(1)}: ${job.error || "no result"}`;
  }
}

function summary(job) {
  if (job.status === "unreadable") return "";
  const s = job.settings;
  const parts = [`${job.content.name} × ${job.styles.map((x) => x.name).join(" + ")}`, s.model, `${s.size} px`, `${s.iterations} iterations`];
  if (s.preserve_color !== "none" && s.preserve_color !== "auto") parts.push(`colour: ${s.preserve_color}`);
  if (s.weights === "random") parts.push("random weights");
  return parts.join(" · ");
}

function renderStage() {
  const job = state.jobs.get(state.selected);
  const img = $("stage-img");
  $("stage-empty").hidden = !!job;
  img.hidden = !job;
  $("cancel").hidden = !job || FINAL.includes(job.status);
  $("delete").hidden = !job || !FINAL.includes(job.status);
  $("download").hidden = !job || !job.has_result;
  const badge = $("stage-badge");
  badge.hidden = !job;
  if (!job) {
    $("job-meta").textContent = "";
    return drawLossChart($("loss-chart"), [], 0);
  }
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  let src = job.content.url || "";
  if (job.has_result) src = `/api/jobs/${job.id}/result?v=${job.finished}`;
  else if (job.status === "running" && job.preview != null) src = `/api/jobs/${job.id}/preview?v=${job.preview}`;
  if (!src) img.removeAttribute("src");
  else if (img.getAttribute("src") !== src && !(job.status === "running" && img.src.includes(`/api/jobs/${job.id}/preview`))) img.src = src;
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
  const jobs = [...state.jobs.values()].sort((a, b) => b.created - a.created);
  const cards = jobs.map((job) => {
    const card = document.createElement("button");
    card.type = "button";
    card.className = `card ${job.id === state.selected ? "selected" : ""}`;
    card.dataset.id = job.id;
    const img = new Image();
    if (job.has_result) img.src = `/api/jobs/${job.id}/result?v=${job.finished}`;
    else if (job.status === "running" && job.preview != null) img.src = `/api/jobs/${job.id}/preview?v=${job.preview}`;
    else if (job.content.url) img.src = job.content.url;
    img.alt = "";
    const badge = document.createElement("span");
    badge.className = `badge ${job.status}`;
    badge.textContent = job.status === "queued" && job.position ? `#${job.position}` : job.status;
    const caption = document.createElement("span");
    caption.className = "caption";
    caption.textContent = job.status === "unreadable" ? job.content.name
      : `${job.content.name} × ${job.styles.map((s) => s.name).join(", ")} · ${job.settings.size}px`;
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

async function deleteSelected() {
  const job = state.jobs.get(state.selected);
  if (!job || !window.confirm("Delete this run and its picture?")) return;
  try {
    await api(`/api/jobs/${job.id}`, { method: "DELETE" });
    removed(job.id);
  } catch (err) {
    showError(err.message);
  }
}

function removed(id) {
  state.jobs.delete(id);
  if (state.selected !== id) return renderAll();
  state.selected = null;
  const next = [...state.jobs.values()].sort((a, b) => b.created - a.created)[0];
  return next ? select(next.id) : renderAll();
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
  events.addEventListener("removed", (e) => removed(JSON.parse(e.data).id));
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
  $("delete").addEventListener("click", deleteSelected);
  window.addEventListener("resize", renderStage);
  renderAll();
  connect();
}

main().catch((err) => showError(`The studio could not start: ${err.message}`));

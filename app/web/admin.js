// The facerec admin page: gallery statistics, the report, the verify threshold, evaluation sets
// and a "try it" identify panel. Every call goes to this service's API with the admin key.

import { adminKey, api, apiJson, byId, clearError, el, showAuthorizedImage, showError, sleep } from "./api.js";
import {
  formatCount,
  formatRate,
  formatThreshold,
  formatTime,
  ratesAt,
  renderReport,
} from "./report.js";

const POLL_MS = 1000;

const state = {
  report: null, // the gallery report shown (its curve drives the slider)
  thresholds: null, // the last GET /admin/threshold answer
  evaluationPoll: 0, // bumped to stop an older evaluation's polling
  shownEvaluationId: null, // whose progress or report is on show
};

// ----- the key ----------------------------------------------------------

async function useKey(key) {
  adminKey.set(key);
  clearError("key-error");
  try {
    await loadStats(); // the first call tells whether the key is an admin key
  } catch (error) {
    adminKey.forget();
    showError("key-error", error);
    byId("admin-content").hidden = true;
    byId("key-forget").hidden = true;
    return;
  }
  byId("key-input").value = "";
  byId("key-status").textContent = "Using the key kept in this tab.";
  byId("key-forget").hidden = false;
  byId("admin-content").hidden = false;
  await Promise.all([loadThreshold(), loadEvaluations()]);
  await loadReport(false);
}

function forgetKey() {
  adminKey.forget();
  // A reload clears every figure shown with the old key.
  window.location.reload();
}

// ----- gallery statistics ------------------------------------------------

async function loadStats() {
  const stats = await apiJson("/admin/stats");
  byId("stats-subjects").textContent = formatCount(stats.subjects);
  byId("stats-faces").textContent = formatCount(stats.faces);
  byId("stats-index-size").textContent = formatCount(stats.index_size);
  byId("stats-model").textContent = stats.model;
  byId("stats-metric").textContent = stats.metric;
  byId("stats-embedding-size").textContent = String(stats.embedding_size);
  byId("stats-verify-threshold").textContent = formatThreshold(stats.thresholds.verify);
  byId("stats-identify-threshold").textContent = formatThreshold(stats.thresholds.identify);
  const last = stats.last_report;
  byId("stats-last-report").textContent = last ? `${last.id}, ${formatTime(last.created_at)}` : "none yet";
}

async function refreshStats() {
  try {
    await loadStats();
    clearError("stats-error");
  } catch (error) {
    showError("stats-error", error);
  }
}

// ----- the gallery report -------------------------------------------------

/** Follows a background job (GET /admin/jobs/{id}) until it ends; the caller fetches its result. */
async function waitForJob(job, statusBox) {
  let current = job;
  while (current.state === "queued" || current.state === "running") {
    statusBox.textContent = `Computing: ${current.state}, ${formatCount(current.progress)} / ${formatCount(current.total)}`;
    await sleep(POLL_MS);
    current = await apiJson(`/admin/jobs/${encodeURIComponent(current.id)}`);
  }
  if (current.state === "failed") {
    throw new Error(`The report job failed: ${current.error || "no reason given"}`);
  }
}

async function fetchGalleryReport(refresh) {
  const statusBox = byId("report-status");
  let path = refresh ? "/admin/report?refresh=true" : "/admin/report";
  for (;;) {
    const response = await api(path);
    const body = await response.json();
    if (response.status !== 202) return body;
    await waitForJob(body.job, statusBox);
    path = "/admin/report"; // the finished job's report is now the latest one
  }
}

async function loadReport(refresh) {
  const statusBox = byId("report-status");
  const button = byId("report-refresh");
  button.disabled = true;
  statusBox.textContent = refresh ? "Recomputing…" : "Loading…";
  try {
    const report = await fetchGalleryReport(refresh);
    state.report = report;
    renderReport(byId("gallery-report"), report, { onTryThreshold: trySliderAt });
    setUpSlider();
    clearError("report-error");
    statusBox.textContent = "";
    await showPlot();
    await refreshStats(); // the report is now the last one
  } catch (error) {
    statusBox.textContent = "";
    showError("report-error", error);
  } finally {
    button.disabled = false;
  }
}

/** The gallery plot, with the threshold line at `threshold` (the one in force when omitted). */
async function showPlot(threshold) {
  const query = threshold === undefined ? "" : `?threshold=${encodeURIComponent(threshold)}`;
  try {
    await showAuthorizedImage(byId("report-plot"), `/admin/report.png${query}`);
  } catch (error) {
    showError("report-error", error);
  }
}

// ----- the threshold -------------------------------------------------------

function verifyThresholdInForce() {
  if (state.thresholds) return state.thresholds.verify_threshold;
  return state.report && state.report.operating ? state.report.operating.verify_threshold : null;
}

/** The slider spans the report's curve in steps fine enough for a few hundred positions. */
function setUpSlider() {
  const slider = byId("threshold-slider");
  const curve = state.report ? state.report.curve : [];
  if (!curve || curve.length < 2) {
    slider.disabled = true;
    byId("apply-threshold").disabled = true;
    return;
  }
  const low = curve[0].threshold;
  const high = curve[curve.length - 1].threshold;
  // Fine enough (thousands of positions) that the threshold in force, shown to 4 decimals, is on it.
  const step = 10 ** Math.floor(Math.log10(Math.max(high - low, 1e-6) / 5000));
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  slider.step = String(step);
  slider.min = (Math.floor(low / step) * step).toFixed(decimals);
  slider.max = (Math.ceil(high / step) * step).toFixed(decimals);
  byId("threshold-min").textContent = slider.min;
  byId("threshold-max").textContent = slider.max;
  const current = verifyThresholdInForce();
  slider.value = String(current === null ? (low + high) / 2 : current);
  slider.disabled = false;
  byId("apply-threshold").disabled = false;
  showLiveRates();
}

/** FAR/FRR at the slider's threshold, and the comparisons of the report behind them. */
function showLiveRates() {
  const report = state.report;
  const threshold = Number(byId("threshold-slider").value);
  const { far, frr } = ratesAt(report.curve, threshold);
  const { genuine, impostor } = report.counts;
  const source = report.source || {};
  const sampled = source.impostor_sampled ? ` (sampled from ${formatCount(source.impostor_total)})` : "";
  byId("threshold-value").textContent = formatThreshold(threshold);
  const farBox = byId("far-value");
  farBox.textContent = formatRate(far);
  farBox.dataset.value = String(far);
  const frrBox = byId("frr-value");
  frrBox.textContent = formatRate(frr);
  frrBox.dataset.value = String(frr);
  byId("far-counts").textContent =
    `≈ ${formatCount(Math.round(far * impostor))} of ${formatCount(impostor)} impostor pairs${sampled}`;
  byId("frr-counts").textContent = `≈ ${formatCount(Math.round(frr * genuine))} of ${formatCount(genuine)} genuine pairs`;
}

/** Puts the slider at `threshold` (a target FAR's, from the report table) and brings it into view. */
function trySliderAt(threshold) {
  const slider = byId("threshold-slider");
  slider.value = String(threshold);
  showLiveRates();
  slider.scrollIntoView({ block: "center" });
  slider.focus();
  showPlot(Number(slider.value));
}

function renderThresholds(answer) {
  state.thresholds = answer;
  byId("current-verify-threshold").textContent = formatThreshold(answer.verify_threshold);
  byId("current-identify-threshold").textContent = formatThreshold(answer.identify_threshold);
  byId("current-verify-source").textContent = answer.source ? answer.source.verify : "—";
  byId("current-identify-source").textContent = answer.source ? answer.source.identify : "—";
  const rows = (answer.history || []).map((change) =>
    el(
      "tr",
      {},
      el("td", {}, formatTime(change.at)),
      el("td", {}, change.key),
      el("td", {}, formatThreshold(change.value)),
      el("td", {}, formatThreshold(change.previous)),
      el("td", {}, change.actor || ""),
      el("td", {}, change.source || ""),
    ),
  );
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 6, className: "muted" }, "No changes yet.")));
  byId("threshold-history").tBodies[0].replaceChildren(...rows);
}

async function loadThreshold() {
  try {
    renderThresholds(await apiJson("/admin/threshold"));
    clearError("threshold-error");
  } catch (error) {
    showError("threshold-error", error);
  }
}

async function applyThreshold() {
  const button = byId("apply-threshold");
  const value = Number(byId("threshold-slider").value);
  button.disabled = true;
  byId("apply-status").textContent = "Saving…";
  try {
    await api("/admin/threshold", { method: "PUT", json: { verify_threshold: value } });
    renderThresholds(await apiJson("/admin/threshold"));
    clearError("threshold-error");
    byId("apply-status").textContent = `Verify threshold set to ${formatThreshold(value)}.`;
    // The report's operating point (and its plot's marker) belongs to the thresholds in force.
    await loadReport(false);
  } catch (error) {
    byId("apply-status").textContent = "";
    showError("threshold-error", error);
  } finally {
    button.disabled = false;
  }
}

// ----- evaluation sets -------------------------------------------------------

function evaluationRow(evaluation) {
  const actions = [];
  if (evaluation.state === "done") {
    actions.push(el("button", { type: "button", onclick: () => watchEvaluation(evaluation.id) }, "Show report"));
  }
  actions.push(el("button", { type: "button", onclick: () => deleteEvaluation(evaluation.id) }, "Delete"));
  return el(
    "tr",
    { "data-evaluation-id": evaluation.id },
    el("td", {}, evaluation.name || evaluation.id),
    el("td", {}, formatTime(evaluation.created_at)),
    el("td", {}, evaluation.state),
    el("td", {}, formatCount(evaluation.images)),
    el("td", {}, formatCount(evaluation.no_face)),
    el("td", {}, formatCount(evaluation.identities)),
    el("td", {}, evaluation.pairs_source || "—"),
    el("td", {}, ...actions),
  );
}

async function loadEvaluations() {
  try {
    const list = await apiJson("/admin/evaluations");
    const rows = list.items.map(evaluationRow);
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 8, className: "muted" }, "No evaluation sets yet.")));
    byId("evaluation-list").tBodies[0].replaceChildren(...rows);
  } catch (error) {
    showError("evaluation-error", error);
  }
}

async function uploadEvaluation(event) {
  event.preventDefault();
  const file = byId("evaluation-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  const name = byId("evaluation-name").value.trim();
  if (name) form.append("name", name);
  const button = byId("evaluation-upload");
  button.disabled = true;
  clearError("evaluation-error");
  try {
    const evaluation = await apiJson("/admin/evaluations", { method: "POST", form });
    byId("evaluation-form").reset();
    await loadEvaluations();
    await watchEvaluation(evaluation.id);
  } catch (error) {
    showError("evaluation-error", error);
  } finally {
    button.disabled = false;
  }
}

function showEvaluationProgress(evaluation) {
  byId("evaluation-progress-box").hidden = false;
  const bar = byId("evaluation-progress");
  bar.max = Math.max(evaluation.total || 0, 1);
  bar.value = evaluation.state === "done" ? bar.max : evaluation.progress || 0;
  const faces = evaluation.no_face ? `, ${formatCount(evaluation.no_face)} without a face` : "";
  byId("evaluation-state").textContent =
    `${evaluation.name || evaluation.id}: ${evaluation.state}, ` +
    `${formatCount(evaluation.progress)} / ${formatCount(evaluation.total)} images${faces}`;
}

/** Polls an evaluation until it ends, then shows its report; a newer watch stops this one. */
async function watchEvaluation(id) {
  const ticket = ++state.evaluationPoll;
  state.shownEvaluationId = id;
  byId("evaluation-report").hidden = true;
  clearError("evaluation-error");
  try {
    for (;;) {
      const evaluation = await apiJson(`/admin/evaluations/${encodeURIComponent(id)}`);
      if (ticket !== state.evaluationPoll) return;
      showEvaluationProgress(evaluation);
      if (evaluation.state === "failed") {
        throw new Error(`Evaluation ${evaluation.name || id} failed: ${evaluation.error || "no reason given"}`);
      }
      if (evaluation.state === "done") {
        await loadEvaluations();
        await showEvaluationReport(evaluation);
        return;
      }
      await sleep(POLL_MS);
    }
  } catch (error) {
    showError("evaluation-error", error);
  }
}

async function showEvaluationReport(evaluation) {
  if (!evaluation.report) {
    showError("evaluation-error", new Error(evaluation.error || "This evaluation has no report (too little data)."));
    return;
  }
  byId("evaluation-report-title").textContent = `Report of ${evaluation.name || evaluation.id}`;
  renderReport(byId("evaluation-report"), evaluation.report);
  const query = `?evaluation_id=${encodeURIComponent(evaluation.id)}`;
  await showAuthorizedImage(byId("evaluation-plot"), `/admin/report.png${query}`);
}

async function deleteEvaluation(id) {
  if (!window.confirm("Delete this evaluation set and its report?")) return;
  try {
    await api(`/admin/evaluations/${encodeURIComponent(id)}`, { method: "DELETE" });
    if (state.shownEvaluationId === id) {
      state.evaluationPoll += 1;
      state.shownEvaluationId = null;
      byId("evaluation-report").hidden = true;
      byId("evaluation-progress-box").hidden = true;
    }
    await loadEvaluations();
  } catch (error) {
    showError("evaluation-error", error);
  }
}

// ----- try it: identify every face of a photo ------------------------------------

const MATCH_COLOUR = "#1a7f37";
const UNKNOWN_COLOUR = "#d1242f";
const CANVAS_MAX_WIDTH = 960;

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    const url = URL.createObjectURL(file);
    image.onload = () => resolve({ image, url });
    image.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new Error("The browser cannot show this image (the service may still read it)."));
    };
    image.src = url; // the browser applies EXIF rotation, as the service does for its boxes
  });
}

function faceLabel(face, index) {
  const top = face.candidates[0];
  if (face.match && top) return `${index + 1}. ${top.name || top.subject_id} ${top.similarity.toFixed(3)}`;
  return `${index + 1}. unknown`;
}

function drawFaces(canvas, image, faces) {
  const scale = Math.min(1, CANVAS_MAX_WIDTH / image.naturalWidth);
  canvas.width = Math.round(image.naturalWidth * scale);
  canvas.height = Math.round(image.naturalHeight * scale);
  canvas.dataset.scale = String(scale);
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0, canvas.width, canvas.height);
  context.lineWidth = 3;
  context.font = "bold 14px system-ui, sans-serif";
  context.textBaseline = "bottom";
  faces.forEach((face, index) => {
    const colour = face.match ? MATCH_COLOUR : UNKNOWN_COLOUR;
    const x = face.box.x_min * scale;
    const y = face.box.y_min * scale;
    const width = (face.box.x_max - face.box.x_min) * scale;
    const height = (face.box.y_max - face.box.y_min) * scale;
    context.strokeStyle = colour;
    context.strokeRect(x, y, width, height);
    const label = faceLabel(face, index);
    const labelWidth = context.measureText(label).width + 8;
    const labelTop = y >= 20 ? y - 20 : y + height; // above the box, or below it at the top edge
    context.fillStyle = colour;
    context.fillRect(x - 1.5, labelTop, labelWidth, 20);
    context.fillStyle = "#ffffff";
    context.fillText(label, x + 2.5, labelTop + 17);
  });
}

function subjectLabel(candidate) {
  if (!candidate.name || candidate.name === candidate.subject_id) return candidate.subject_id;
  return `${candidate.name} (${candidate.subject_id})`;
}

function faceListItem(face, index) {
  const verdict = face.match ? `match: ${face.candidates[0].name || face.match.subject_id}` : "no match (unknown)";
  const candidates = face.candidates.map((candidate) =>
    el(
      "li",
      { "data-subject-id": candidate.subject_id },
      `${subjectLabel(candidate)}: ${candidate.similarity.toFixed(4)}`,
    ),
  );
  return el(
    "li",
    { className: face.match ? "face match" : "face unknown", "data-match": face.match ? face.match.subject_id : "" },
    el("strong", {}, `Face ${index + 1}, ${verdict}`),
    ` (detection score ${face.det_score.toFixed(3)})`,
    candidates.length ? el("ol", { className: "candidates" }, ...candidates) : el("p", {}, "No candidates: the gallery is empty."),
  );
}

async function tryIdentify(event) {
  event.preventDefault();
  const file = byId("try-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  form.append("all_faces", "true");
  const button = byId("try-submit");
  button.disabled = true;
  byId("try-status").textContent = "Identifying…";
  clearError("try-error");
  try {
    const result = await apiJson("/identify", { method: "POST", form });
    const { image, url } = await loadImage(file);
    drawFaces(byId("try-canvas"), image, result.faces);
    URL.revokeObjectURL(url);
    byId("try-results").replaceChildren(...result.faces.map(faceListItem));
    byId("try-status").textContent =
      `${result.faces.length} face(s); identify threshold ${formatThreshold(result.threshold)}, ` +
      `model ${result.model.name || ""}`.trim();
  } catch (error) {
    byId("try-status").textContent = "";
    showError("try-error", error);
  } finally {
    button.disabled = false;
  }
}

// ----- start --------------------------------------------------------------------

function start() {
  byId("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = byId("key-input").value.trim();
    if (key) useKey(key);
  });
  byId("key-forget").addEventListener("click", forgetKey);
  byId("report-refresh").addEventListener("click", () => loadReport(true));
  const slider = byId("threshold-slider");
  slider.addEventListener("input", showLiveRates);
  // Redraw the plot's threshold line once the slider is let go, not on every pixel of a drag.
  slider.addEventListener("change", () => showPlot(Number(slider.value)));
  byId("apply-threshold").addEventListener("click", applyThreshold);
  byId("evaluation-form").addEventListener("submit", uploadEvaluation);
  byId("try-form").addEventListener("submit", tryIdentify);
  const saved = adminKey.get();
  if (saved) useKey(saved);
  else byId("key-input").focus();
}

start();

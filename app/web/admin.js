// The facerec admin page: a collection selector, and for the selected collection its gallery
// statistics, a move to another model, the report, the verify and identify thresholds, evaluation
// sets and a "try it" identify panel; then, for the whole service, the installed models and a form that
// creates a collection. Every call goes to this service's API with the admin key, through the
// collection's routes.

import {
  adminKey,
  adminPath,
  api,
  apiAnswer,
  apiJson,
  byId,
  clearAuthorizedImage,
  clearError,
  el,
  selection,
  showAuthorizedImage,
  showError,
  sleep,
  stillSelected,
} from "./api.js";
import { loadCollections, onCollectionSwitch, setUpCollectionForm, showCreateChoices } from "./collections.js";
import { loadModels } from "./models.js";
import { clearMove, loadMove, onMoveDone, setCollectionModel, setUpMoveForm, showMoveChoices } from "./reembed.js";
import {
  describeStatistic,
  formatCount,
  formatRate,
  formatThreshold,
  formatTime,
  ratesAt,
  renderReport,
} from "./report.js";
import { clearEvaluations, loadEvaluations, uploadEvaluation } from "./evaluations.js";
import { clearTargets, setFromTarget, setUpTargetForms, showTargetChoices } from "./threshold_targets.js";
import { clearTryIt, tryIdentify } from "./try_it.js";

const POLL_MS = 1000;

const state = {
  report: null, // the gallery report shown (its curve drives the slider)
  thresholds: null, // the last GET …/threshold answer
};

// ----- the key ----------------------------------------------------------

async function useKey(key) {
  adminKey.set(key);
  clearError("key-error");
  try {
    // A wrong key fails the list; a key without the admin role fails the statistics.
    await loadCollections();
    await loadStats();
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
  await Promise.all([loadPanels(), loadModelChoices()]);
}

/** The installed models' table, and the models the create and move forms offer. */
async function loadModelChoices() {
  await loadModels();
  showCreateChoices();
  showMoveChoices();
}

/** Every panel but the statistics, for the selected collection. */
async function loadPanels() {
  const version = selection.version;
  await Promise.all([loadThreshold(), loadEvaluations(), loadMove()]);
  // After a switch meanwhile, the new collection's own loading is under way: no need to repeat it.
  if (stillSelected(version)) await loadReport(false);
}

function forgetKey() {
  adminKey.forget();
  // A reload clears every figure shown with the old key.
  window.location.reload();
}

// ----- switching collections ----------------------------------------------

/** Blanks every figure of the collection just left, so none of it shows while the next one loads. */
function clearPanels() {
  state.report = null;
  state.thresholds = null;
  const content = byId("admin-content");
  for (const figure of content.querySelectorAll("dd, #threshold-value, .live td")) figure.textContent = "–";
  for (const box of content.querySelectorAll("#far-value, #frr-value")) delete box.dataset.value;
  for (const box of content.querySelectorAll(".error")) clearError(box.id);
  for (const status of ["report-status", "apply-status", "threshold-min", "threshold-max"]) {
    byId(status).textContent = "";
  }
  const report = byId("gallery-report");
  report.hidden = true;
  delete report.dataset.reportId;
  report.querySelector(".report-tables").replaceChildren();
  clearAuthorizedImage(byId("report-plot"));
  byId("threshold-slider").disabled = true;
  byId("apply-threshold").disabled = true;
  byId("threshold-history").tBodies[0].replaceChildren();
  clearTargets();
  clearEvaluations();
  clearTryIt();
  clearMove();
}

async function switchCollection() {
  clearPanels();
  await Promise.all([refreshStats(), loadPanels()]);
}

// ----- gallery statistics ------------------------------------------------

async function loadStats() {
  const stats = await apiJson(adminPath("/stats"));
  byId("collection-model").textContent = stats.model;
  setCollectionModel(stats.model);
  byId("collection-subjects").textContent = formatCount(stats.subjects);
  byId("collection-templates").textContent = formatCount(stats.faces);
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

/** After a move: the collection's model, figures and thresholds are the new model's; its report is recomputed. */
async function showMovedCollection() {
  const version = selection.version;
  await Promise.all([refreshStats(), loadThreshold(), loadModelChoices()]);
  if (stillSelected(version)) await loadReport(false);
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

/** Follows a background job (GET /admin/jobs/{id}: jobs are global) until it ends; the caller fetches its result. */
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
  let path = adminPath(refresh ? "/report?refresh=true" : "/report");
  for (;;) {
    const { status, body } = await apiAnswer(path);
    if (status !== 202) return body;
    await waitForJob(body.job, statusBox);
    path = adminPath("/report"); // the finished job's report is now the latest one
  }
}

async function loadReport(refresh) {
  const version = selection.version;
  const statusBox = byId("report-status");
  const button = byId("report-refresh");
  button.disabled = true;
  statusBox.textContent = refresh ? "Recomputing…" : "Loading…";
  try {
    const report = await fetchGalleryReport(refresh);
    state.report = report;
    renderReport(byId("gallery-report"), report, { onTryThreshold: trySliderAt, onUseForIdentify: useForIdentify });
    showTargetChoices(report);
    showIdentifyRates();
    setUpSlider();
    clearError("report-error");
    statusBox.textContent = "";
    await showPlot();
    if (stillSelected(version)) await refreshStats(); // the report is now the last one
  } catch (error) {
    if (!stillSelected(version)) return; // the panel shows another collection now
    statusBox.textContent = "";
    showError("report-error", error);
  } finally {
    if (stillSelected(version)) button.disabled = false;
  }
}

/** The gallery plot, with the threshold line at `threshold` (the one in force when omitted). */
async function showPlot(threshold) {
  const query = threshold === undefined ? "" : `?threshold=${encodeURIComponent(threshold)}`;
  try {
    await showAuthorizedImage(byId("report-plot"), adminPath(`/report.png${query}`));
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

/** FNIR and FPIR at the identify threshold in force, once the report shown was made with it. */
function showIdentifyRates() {
  const operating = state.report ? state.report.operating : null;
  const box = byId("current-identify-rates");
  if (!operating || !state.thresholds || operating.identify_threshold !== state.thresholds.identify_threshold) {
    box.textContent = "–";
    return;
  }
  box.textContent =
    `FNIR ${formatRate(operating.fnir)}, FPIR ${formatRate(operating.fpir)} (gallery report ${state.report.id})`;
}

function renderThresholds(answer) {
  state.thresholds = answer;
  byId("current-verify-threshold").textContent = formatThreshold(answer.verify_threshold);
  byId("current-identify-threshold").textContent = formatThreshold(answer.identify_threshold);
  const statistic = answer.identify_statistic || "similarity";
  byId("current-identify-statistic").textContent = `${statistic}: ${describeStatistic(statistic)}`;
  showIdentifyRates();
  byId("current-verify-source").textContent = answer.source ? answer.source.verify : "—";
  byId("current-identify-source").textContent = answer.source ? answer.source.identify : "—";
  byId("collection-verify-threshold").textContent = formatThreshold(answer.verify_threshold);
  byId("collection-identify-threshold").textContent = formatThreshold(answer.identify_threshold);
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
    renderThresholds(await apiJson(adminPath("/threshold")));
    clearError("threshold-error");
  } catch (error) {
    showError("threshold-error", error);
  }
}

/** A target FPIR's "Use for identify" button in the report table. */
function useForIdentify(targetFpir) {
  return setFromTarget({ target_fpir: targetFpir }, "identify-use-status", "report-error");
}

/** After a threshold was set from a report target: the panel shows it, and the report is made for it. */
async function showThresholdsSet(answer) {
  renderThresholds(answer);
  await loadReport(false);
}

async function applyThreshold() {
  const version = selection.version;
  const button = byId("apply-threshold");
  const value = Number(byId("threshold-slider").value);
  button.disabled = true;
  byId("apply-status").textContent = "Saving…";
  try {
    await api(adminPath("/threshold"), { method: "PUT", json: { verify_threshold: value } });
    renderThresholds(await apiJson(adminPath("/threshold")));
    clearError("threshold-error");
    byId("apply-status").textContent = `Verify threshold set to ${formatThreshold(value)}.`;
    // The report's operating point (and its plot's marker) belongs to the thresholds in force.
    await loadReport(false);
  } catch (error) {
    if (!stillSelected(version)) return; // the panel shows another collection now
    byId("apply-status").textContent = "";
    showError("threshold-error", error);
  } finally {
    // The next collection's slider decides whether its button is usable.
    if (stillSelected(version)) button.disabled = false;
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
  onCollectionSwitch(switchCollection);
  byId("report-refresh").addEventListener("click", () => loadReport(true));
  const slider = byId("threshold-slider");
  slider.addEventListener("input", showLiveRates);
  // Redraw the plot's threshold line once the slider is let go, not on every pixel of a drag.
  slider.addEventListener("change", () => showPlot(Number(slider.value)));
  byId("apply-threshold").addEventListener("click", applyThreshold);
  setUpTargetForms(showThresholdsSet);
  byId("evaluation-form").addEventListener("submit", uploadEvaluation);
  byId("try-form").addEventListener("submit", tryIdentify);
  setUpMoveForm();
  onMoveDone(showMovedCollection);
  setUpCollectionForm();
  const saved = adminKey.get();
  if (saved) useKey(saved);
  else byId("key-input").focus();
}

start();

// Evaluation sets of the selected collection (measured with its model): upload a zip, follow
// its progress, show its report, delete it.

import {
  adminPath,
  api,
  apiJson,
  byId,
  clearAuthorizedImage,
  clearError,
  el,
  showAuthorizedImage,
  showError,
  sleep,
} from "./api.js";
import { formatCount, formatTime, renderReport } from "./report.js";

const POLL_MS = 1000;

const watching = {
  ticket: 0, // bumped to stop an older evaluation's polling
  id: null, // whose progress or report is on show
};

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

export async function loadEvaluations() {
  try {
    const list = await apiJson(adminPath("/evaluations"));
    const rows = list.items.map(evaluationRow);
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 8, className: "muted" }, "No evaluation sets yet.")));
    byId("evaluation-list").tBodies[0].replaceChildren(...rows);
  } catch (error) {
    showError("evaluation-error", error);
  }
}

export async function uploadEvaluation(event) {
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
    const evaluation = await apiJson(adminPath("/evaluations"), { method: "POST", form });
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
  const ticket = ++watching.ticket;
  watching.id = id;
  byId("evaluation-report").hidden = true;
  clearError("evaluation-error");
  try {
    for (;;) {
      const evaluation = await apiJson(adminPath(`/evaluations/${encodeURIComponent(id)}`));
      if (ticket !== watching.ticket) return;
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
  await showAuthorizedImage(byId("evaluation-plot"), adminPath(`/report.png${query}`));
}

function stopWatching() {
  watching.ticket += 1;
  watching.id = null;
  byId("evaluation-report").hidden = true;
  byId("evaluation-progress-box").hidden = true;
}

/** Empties the panel (list, progress, report) of the collection just left. */
export function clearEvaluations() {
  stopWatching();
  byId("evaluation-list").tBodies[0].replaceChildren();
  byId("evaluation-report").querySelector(".report-tables").replaceChildren();
  delete byId("evaluation-report").dataset.reportId;
  byId("evaluation-state").textContent = "";
  clearAuthorizedImage(byId("evaluation-plot"));
}

async function deleteEvaluation(id) {
  if (!window.confirm("Delete this evaluation set and its report?")) return;
  try {
    await api(adminPath(`/evaluations/${encodeURIComponent(id)}`), { method: "DELETE" });
    if (watching.id === id) stopWatching();
    await loadEvaluations();
  } catch (error) {
    showError("evaluation-error", error);
  }
}

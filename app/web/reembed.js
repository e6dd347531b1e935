// Moving the selected collection to another model: start the re-embedding job, follow its
// progress, cancel it, and show what it moved, deleted or could not move.

import { adminPath, api, apiJson, byId, clearError, el, selection, showError, sleep } from "./api.js";
import { embedders, modelNamed, modelOption, readThresholds } from "./models.js";
import { formatCount } from "./report.js";

const POLL_MS = 500;
const THRESHOLD_INPUTS = ["move-verify", "move-identify"];

const following = {
  ticket: 0, // bumped to stop following a job (a switch of collection, a newer job)
  jobId: null, // the job whose progress is on show while it runs
};
// Collection id → its move started from this tab, to follow again after switching back to it.
const startedMoves = new Map();
const moving = { model: null }; // the selected collection's model: not a target
let onMoved = async () => {};

/** `handler()` runs after a move succeeds, to show the collection's new model and figures. */
export function onMoveDone(handler) {
  onMoved = handler;
}

/** The selected collection is on `model` (from its statistics): every other embedder is a target. */
export function setCollectionModel(model) {
  moving.model = model;
  showMoveChoices();
}

/** Until the collection's statistics tell its model, nothing is offered: it could be its own. */
function targets() {
  if (moving.model === null) return [];
  return embedders().filter((model) => model.name !== moving.model);
}

/** Offers the embedders the collection is not on, keeping the user's choice when it still is one. */
export function showMoveChoices() {
  const select = byId("move-model");
  const previous = select.value;
  const choices = targets();
  select.replaceChildren(...choices.map(modelOption));
  if (choices.some((model) => model.name === previous)) select.value = previous;
  showThresholdNeed();
  showRunning(following.jobId !== null);
}

/** Thresholds are required on an uncalibrated model's scale, optional (they replace its calibrated ones) otherwise. */
function showThresholdNeed() {
  const model = modelNamed(byId("move-model").value);
  const note = byId("move-thresholds-note");
  if (!model) {
    note.textContent = moving.model === null ? "" : "No other embedder is installed (see Installed models).";
  } else if (model.calibrated) {
    note.textContent = `Thresholds are optional: ${model.name}'s calibrated ones are used when left empty.`;
  } else {
    note.textContent = `${model.name} is uncalibrated: give both thresholds, on its own scale.`;
  }
  for (const id of THRESHOLD_INPUTS) byId(id).required = Boolean(model && !model.calibrated);
}

function showRunning(running) {
  byId("move-start").disabled = running || targets().length === 0;
  const cancel = byId("move-cancel");
  cancel.hidden = !running;
  cancel.disabled = false;
}

function showProgress(job) {
  byId("move-progress-box").hidden = false;
  const bar = byId("move-progress");
  bar.max = Math.max(job.total || 0, 1);
  bar.value = job.state === "done" ? bar.max : job.progress || 0;
  const state = byId("move-state");
  state.dataset.state = job.state;
  const model = job.details && job.details.model ? ` to ${job.details.model}` : "";
  state.textContent = `Move${model}: ${job.state}, ${formatCount(job.progress)} / ${formatCount(job.total)} faces`;
}

/** The faces a job deleted or could not move, each with the reason. */
function faceList(title, faces) {
  if (!faces || faces.length === 0) return null;
  return el(
    "div",
    {},
    el("p", {}, title),
    el(
      "ul",
      { className: "faces" },
      ...faces.map((face) => el("li", { "data-face-id": face.face_id }, `${face.face_id}: ${face.reason}`)),
    ),
  );
}

function showOutcome(job) {
  const details = job.details || {};
  const parts = [];
  if (job.state === "done") {
    const deleted = details.deleted || [];
    parts.push(
      el(
        "p",
        { className: "outcome" },
        `Moved ${formatCount(details.moved)} face(s) from ${details.from_model} to ${details.model}.`,
      ),
      faceList(`Deleted ${formatCount(deleted.length)} face(s) that could not be moved:`, deleted),
    );
  } else {
    showError("move-error", new Error(`The move failed: ${job.error || "no reason given"}`));
    const stuck = details.not_movable || [];
    parts.push(faceList(`${formatCount(stuck.length)} face(s) cannot be moved:`, stuck));
  }
  const box = byId("move-result");
  box.dataset.state = job.state;
  box.replaceChildren(...parts.filter(Boolean));
  box.hidden = false;
}

/** Polls the job until it ends, then shows its outcome; a newer follow or a switch stops this one. */
async function follow(job) {
  const ticket = ++following.ticket;
  const collectionId = selection.id;
  following.jobId = job.id;
  byId("move-result").hidden = true;
  showRunning(true);
  try {
    let current = job;
    for (;;) {
      showProgress(current);
      if (current.state !== "queued" && current.state !== "running") break;
      await sleep(POLL_MS);
      if (ticket !== following.ticket) return;
      current = await apiJson(`/admin/jobs/${encodeURIComponent(current.id)}`);
      if (ticket !== following.ticket) return;
    }
    startedMoves.delete(collectionId);
    following.jobId = null;
    showRunning(false);
    showOutcome(current);
    if (current.state !== "done") return;
    for (const id of THRESHOLD_INPUTS) byId(id).value = ""; // they were on the scale of the model it moved to
    await onMoved();
  } catch (error) {
    if (ticket !== following.ticket) return;
    following.jobId = null;
    showRunning(false);
    showError("move-error", error);
  }
}

async function startMove(event) {
  event.preventDefault();
  clearError("move-error");
  byId("move-result").hidden = true;
  const body = { model: byId("move-model").value, unmovable: byId("move-unmovable").value };
  byId("move-start").disabled = true;
  try {
    const thresholds = readThresholds(...THRESHOLD_INPUTS);
    if (thresholds) body.thresholds = thresholds;
    const { job } = await apiJson(adminPath("/reembed"), { method: "POST", json: body });
    startedMoves.set(selection.id, job.id);
    await follow(job);
  } catch (error) {
    showRunning(following.jobId !== null);
    showError("move-error", error);
  }
}

/** Asks the service to stop the job; the next poll shows it failed as cancelled. */
async function cancelMove() {
  if (following.jobId === null) return;
  byId("move-cancel").disabled = true;
  try {
    await api(`/admin/jobs/${encodeURIComponent(following.jobId)}/cancel`, { method: "POST" });
  } catch (error) {
    byId("move-cancel").disabled = false;
    showError("move-error", error);
  }
}

/** Follows again a move started from this tab that was still running when its collection was left. */
export async function loadMove() {
  const jobId = startedMoves.get(selection.id);
  if (jobId === undefined) return;
  try {
    await follow(await apiJson(`/admin/jobs/${encodeURIComponent(jobId)}`));
  } catch (error) {
    showError("move-error", error);
  }
}

/** Empties the panel of the collection just left; its job, if any, runs on in the service. */
export function clearMove() {
  following.ticket += 1;
  following.jobId = null;
  moving.model = null;
  byId("move-progress-box").hidden = true;
  byId("move-state").textContent = "";
  byId("move-result").hidden = true;
  byId("move-result").replaceChildren();
  for (const id of THRESHOLD_INPUTS) byId(id).value = "";
  showMoveChoices();
}

export function setUpMoveForm() {
  byId("move-model").addEventListener("change", showThresholdNeed);
  byId("move-form").addEventListener("submit", startMove);
  byId("move-cancel").addEventListener("click", cancelMove);
}

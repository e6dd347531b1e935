// The models installed on the service (GET /models): their table, and the embedders the
// collection forms offer. Models belong to the service, not to the selected collection.

import { apiJson, byId, clearError, el, showError } from "./api.js";
import { formatCount } from "./report.js";

/** The last GET /models answer; empty until it arrives. */
const catalog = { items: [], default: null };

export const defaultModel = () => catalog.default;

/** The embedders a collection can use, the default first; models with unreadable manifests left out. */
export function embedders() {
  const usable = catalog.items.filter((model) => model.kind === "embedder" && !model.error);
  return usable.sort((a, b) => (b.name === catalog.default) - (a.name === catalog.default));
}

export const modelNamed = (name) => catalog.items.find((model) => model.name === name) || null;

/** An option of a model selector: its name, and what a chooser must know before picking it. */
export function modelOption(model) {
  const notes = [];
  if (model.name === catalog.default) notes.push("default");
  if (!model.calibrated) notes.push("uncalibrated");
  if (model.commercial_use === false) notes.push("not for commercial use");
  const label = notes.length ? `${model.name} (${notes.join(", ")})` : model.name;
  return el("option", { value: model.name }, label);
}

const COMMERCIAL_USE = new Map([
  [true, { text: "yes", className: "licence-yes" }],
  [false, { text: "no", className: "licence-no" }],
]);

function commercialUseCell(model) {
  const unknown = { text: "unknown", className: "licence-unknown" };
  const { text, className } = COMMERCIAL_USE.get(model.commercial_use) || unknown;
  return el("td", { className, "data-commercial-use": text }, text);
}

function licenceCell(model) {
  const status = model.licence_status ? el("div", { className: "muted" }, model.licence_status) : null;
  return el("td", { className: "licence" }, model.licence || "not stated", status);
}

function modelRow(model) {
  const isDefault = model.name === catalog.default;
  const name = el("th", { scope: "row" }, model.name, isDefault ? el("span", { className: "badge" }, "default") : null);
  if (model.error) {
    return el(
      "tr",
      { "data-model": model.name, className: "unusable" },
      name,
      el("td", { colspan: 7, className: "error-text" }, model.error),
    );
  }
  const embedder = model.kind === "embedder";
  const input = model.input ? `${model.input.width} × ${model.input.height} ${model.input.color_order}` : "—";
  const embedding = embedder ? `${formatCount(model.embedding_size)}, ${model.metric}` : "—";
  const calibrated = embedder ? (model.calibrated ? "yes" : "no") : "—";
  const users = model.collections.length ? model.collections.join(", ") : embedder ? "none" : "—";
  return el(
    "tr",
    { "data-model": model.name, "data-default": isDefault },
    name,
    el("td", {}, model.kind),
    el("td", {}, input),
    el("td", {}, embedding),
    el("td", { className: embedder && !model.calibrated ? "uncalibrated" : null }, calibrated),
    licenceCell(model),
    commercialUseCell(model),
    el("td", { className: "collections" }, users),
  );
}

/** Fetches the installed models and shows their table; the forms read them through `embedders()`. */
export async function loadModels() {
  try {
    const answer = await apiJson("/models", { anyCollection: true });
    catalog.items = answer.items;
    catalog.default = answer.default;
    const rows = answer.items.map(modelRow);
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 8, className: "muted" }, "No models installed.")));
    byId("model-list").tBodies[0].replaceChildren(...rows);
    clearError("models-error");
  } catch (error) {
    showError("models-error", error);
  }
}

/**
 * The thresholds of a pair of inputs as the API takes them: `{verify, identify}`, or null when
 * both are empty. Throws when only one is given, since the API needs both or neither.
 */
export function readThresholds(verifyId, identifyId) {
  const verify = byId(verifyId).value.trim();
  const identify = byId(identifyId).value.trim();
  if (!verify && !identify) return null;
  if (!verify || !identify) throw new Error("Give both thresholds (verify and identify), or neither.");
  return { verify: Number(verify), identify: Number(identify) };
}

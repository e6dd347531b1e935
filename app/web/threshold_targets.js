// Thresholds set from the gallery report's targets: verify at a target FAR, identify at a target
// FPIR (PUT …/threshold with target_far or target_fpir), from the thresholds panel's two forms and
// from the report's "Use for identify" buttons. The service reads the threshold off the
// collection's latest gallery report and answers what that report measured there.

import { adminPath, apiJson, byId, clearError, selection, showError, stillSelected } from "./api.js";
import { formatCi, formatCount, formatRate, formatThreshold } from "./report.js";

const FORMS = [
  { form: "target-far-form", select: "target-far", status: "target-far-status", field: "target_far" },
  { form: "target-fpir-form", select: "target-fpir", status: "target-fpir-status", field: "target_fpir" },
];

let afterSet = async () => {};

/** What the report measured at each threshold just set, in words. */
export function describeFromReport(answer) {
  return (answer.from_report || [])
    .map((point) => {
      const from = `from report ${point.report_id}`;
      if (point.target_fpir !== null && point.target_fpir !== undefined) {
        return (
          `Identify threshold set to ${formatThreshold(point.threshold)} on ${answer.identify_statistic} ${from} ` +
          `at FPIR ${formatRate(point.target_fpir)}: FNIR ${formatRate(point.fnir)} ${formatCi(point.fnir_ci)} ` +
          `there, in a gallery of ${formatCount(point.subjects)} subjects.`
        );
      }
      const frr = point.frr === null || point.frr === undefined ? "—" : formatRate(point.frr);
      return (
        `Verify threshold set to ${formatThreshold(point.threshold)} ${from} ` +
        `at FAR ${formatRate(point.target_far)}: FRR ${frr} there.`
      );
    })
    .join(" ");
}

/**
 * PUTs `target` ({target_far} or {target_fpir}), writes what the report measured there into the box
 * `statusId` and hands the new thresholds to the page; a refusal goes to the box `errorId`.
 */
export async function setFromTarget(target, statusId, errorId) {
  const version = selection.version;
  const status = byId(statusId);
  status.textContent = "Saving…";
  try {
    const answer = await apiJson(adminPath("/threshold"), { method: "PUT", json: target });
    clearError(errorId);
    status.textContent = describeFromReport(answer);
    await afterSet(answer);
  } catch (error) {
    if (!stillSelected(version)) return; // the panel shows another collection now
    status.textContent = "";
    showError(errorId, error);
  }
}

/** The panel's forms; `onSet(answer)` shows the thresholds now in force (and what follows from them). */
export function setUpTargetForms(onSet) {
  afterSet = onSet;
  for (const { form, select, status, field } of FORMS) {
    byId(form).addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = byId(form).querySelector("button");
      button.disabled = true;
      try {
        await setFromTarget({ [field]: Number(byId(select).value) }, status, "threshold-error");
      } finally {
        button.disabled = !hasChoice(byId(select));
      }
    });
  }
}

const hasChoice = (select) => Array.from(select.options).some((option) => !option.disabled);

/** Offers only the targets `measurable(value)` says the report can show, keeping a measurable one selected. */
function offer(select, measurable) {
  for (const option of select.options) {
    option.dataset.label ??= option.textContent;
    option.disabled = !measurable(Number(option.value));
    option.textContent = option.disabled ? `${option.dataset.label} (not measurable)` : option.dataset.label;
  }
  if (select.selectedOptions[0]?.disabled) {
    const first = Array.from(select.options).find((option) => !option.disabled);
    if (first) select.value = first.value;
  }
  select.closest("form").querySelector("button").disabled = !hasChoice(select);
}

const sameRate = (a, b) => Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));

/** Marks the targets the gallery report `report` cannot show at 95% as not measurable. */
export function showTargetChoices(report) {
  const atFar = report.at_far || [];
  offer(byId("target-far"), (value) => atFar.some((entry) => sameRate(entry.target_far, value) && entry.measurable));
  const atFpir = Object.values((report.identification || {}).fnir_at_fpir || {});
  offer(byId("target-fpir"), (value) => atFpir.some((point) => sameRate(point.fpir, value) && point.measurable));
}

/** Every target offered again and no message left, for the collection just selected. */
export function clearTargets() {
  for (const { select, status } of FORMS) {
    offer(byId(select), () => true);
    byId(status).textContent = "";
  }
  byId("identify-use-status").textContent = "";
}

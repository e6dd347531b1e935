// The report JSON (gallery or evaluation) as tables, and FAR/FRR read off its curve.

import { el } from "./api.js";

// ----- formatting -------------------------------------------------------

/** Rates as fractions: decimals down to 0.001, then scientific notation (1e-4, 1.5e-5) as biometrics quotes FARs. */
export function formatRate(value) {
  if (value === null || value === undefined) return "—";
  // Interval bounds can carry float dust (3.5e-18) where the bound is zero.
  if (Math.abs(value) < 1e-12) return "0";
  if (value >= 0.001) return String(Number(value.toPrecision(3)));
  return value.toExponential(1).replace(".0e", "e");
}

/** Shares people read as percentages: accuracy, CMC hit rates. */
export function formatPercent(value) {
  if (value === null || value === undefined) return "—";
  return `${(value * 100).toFixed(1)} %`;
}

export function formatCi(interval) {
  if (!interval) return "";
  return `[${formatRate(interval[0])}, ${formatRate(interval[1])}]`;
}

export const formatThreshold = (value) => (value === null || value === undefined ? "—" : value.toFixed(4));
export const formatCount = (value) => (value === null || value === undefined ? "—" : value.toLocaleString("en-US"));

export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso || "—";
  return `${date.toISOString().replace("T", " ").slice(0, 19)} UTC`;
}

// ----- the curve --------------------------------------------------------

/**
 * FAR and FRR at `threshold`, interpolated linearly between the two curve points around it.
 * The curve is sorted by threshold ascending; outside it the end points hold.
 */
export function ratesAt(curve, threshold) {
  const last = curve.length - 1;
  if (threshold <= curve[0].threshold) return { far: curve[0].far, frr: curve[0].frr };
  if (threshold >= curve[last].threshold) return { far: curve[last].far, frr: curve[last].frr };
  let low = 0;
  let high = last;
  // Invariant: curve[low].threshold <= threshold < curve[high].threshold.
  while (high - low > 1) {
    const middle = (low + high) >> 1;
    if (curve[middle].threshold <= threshold) low = middle;
    else high = middle;
  }
  const a = curve[low];
  const b = curve[high];
  const f = (threshold - a.threshold) / (b.threshold - a.threshold);
  return { far: a.far + f * (b.far - a.far), frr: a.frr + f * (b.frr - a.frr) };
}

// ----- tables -----------------------------------------------------------

const CMC_RANKS = [1, 2, 3, 5, 10, 20];

const row = (...cells) => el("tr", {}, ...cells.map((cell) => el("td", {}, cell)));
const headRow = (...names) => el("tr", {}, ...names.map((name) => el("th", { scope: "col" }, name)));

function factTable(facts) {
  return el(
    "table",
    { className: "facts-table" },
    el("tbody", {}, ...facts.map(([name, value]) => el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, value)))),
  );
}

function sourceText(report) {
  const source = report.source || {};
  const gallery = report.collection ? `gallery of collection ${report.collection}` : "gallery";
  const what = source.kind === "evaluation" ? `evaluation ${source.evaluation_id}` : gallery;
  const noFace = source.no_face ? `; ${formatCount(source.no_face)} images without a face left out` : "";
  const sampled = source.impostor_sampled
    ? `; impostor pairs sampled from ${formatCount(source.impostor_total)} possible`
    : "";
  return `${what}, ${report.model} (${report.metric}), ${formatTime(report.created_at)}${sampled}${noFace}`;
}

function summaryTable(report) {
  const counts = report.counts;
  const facts = [
    ["Report", `${report.id}: ${sourceText(report)}`],
    ["Subjects", formatCount(counts.subjects)],
    ["Templates", formatCount(counts.templates)],
    ["Genuine pairs", formatCount(counts.genuine)],
    ["Impostor pairs", formatCount(counts.impostor)],
    ["EER", report.eer ? `${formatRate(report.eer.value)} at threshold ${formatThreshold(report.eer.threshold)}` : "—"],
    ["AUC", report.auc === null || report.auc === undefined ? "—" : report.auc.toFixed(4)],
  ];
  if (report.best_accuracy) {
    const best = report.best_accuracy;
    facts.push(["Best accuracy", `${formatPercent(best.accuracy)} at threshold ${formatThreshold(best.threshold)}`]);
  }
  return factTable(facts);
}

function atFarThreshold(entry, onTryThreshold) {
  if (!entry.measurable) return "not measurable";
  const text = formatThreshold(entry.threshold);
  if (!onTryThreshold) return text;
  const label = `Show FAR ${formatRate(entry.target_far)} on the slider`;
  const button = el(
    "button",
    { type: "button", className: "try-threshold", title: label, "aria-label": label },
    "try",
  );
  button.addEventListener("click", () => onTryThreshold(entry.threshold));
  return [text, " ", button];
}

function atFarTable(report, onTryThreshold) {
  const rows = report.at_far.map((entry) => {
    const tr = row(
      formatRate(entry.target_far),
      atFarThreshold(entry, onTryThreshold),
      `${formatRate(entry.far)} ${formatCi(entry.far_ci)}`,
      entry.frr === null ? "—" : `${formatRate(entry.frr)} ${formatCi(entry.frr_ci)}`,
      `${formatCount(entry.false_accepts)} / ${formatCount(entry.impostor)}`,
      entry.note || "",
    );
    if (!entry.measurable) tr.className = "not-measurable";
    return tr;
  });
  return el(
    "table",
    { className: "at-far" },
    el("caption", {}, "Operating points by target FAR (95% confidence intervals)"),
    el("thead", {}, headRow("Target FAR", "Threshold", "FAR", "FRR", "False accepts / impostor pairs", "Note")),
    el("tbody", {}, ...rows),
  );
}

/** What the statistic an identify threshold is on ("cohort_gap(10)", "similarity") means, in words. */
export function describeStatistic(name) {
  const gap = /^cohort_gap\((\d+)\)$/.exec(name || "");
  if (gap) {
    return (
      `the top subject's similarity minus the mean of the next ${gap[1]} subjects' ` +
      "(each counted at no less than the model's prior)"
    );
  }
  if (!name || name === "similarity") return "the raw similarity of the top subject's best template";
  return name;
}

const fnirText = (point) => (point && point.measurable ? `${formatRate(point.fnir)} ${formatCi(point.fnir_ci)}` : "—");

function notMeasurable(point) {
  const why =
    `${formatCount(point.nonmated)} non-mated searches cannot show an FPIR of ${formatRate(point.fpir)} ` +
    "at 95% confidence";
  return el("span", { title: why }, "not measurable");
}

function useForIdentifyButton(point, onUseForIdentify) {
  const title = `Set the identify threshold from this report at FPIR ${formatRate(point.fpir)}`;
  return el(
    "button",
    { type: "button", className: "use-threshold", title, onclick: () => onUseForIdentify(point.fpir) },
    "Use for identify",
  );
}

/** FNIR at each target FPIR on the decision score, beside raw similarity's at the same FPIR. */
function openSetTable(identification, onUseForIdentify) {
  const statistic = identification.statistic || "similarity";
  const raw = identification.fnir_at_fpir_raw || {};
  const rows = Object.entries(identification.fnir_at_fpir).map(([key, point]) => {
    const cells = [
      formatRate(point.fpir),
      point.measurable ? formatThreshold(point.threshold) : notMeasurable(point),
      fnirText(point),
      `${formatRate(point.observed_fpir)} ${formatCi(point.fpir_ci)}`,
      raw[key] && !raw[key].measurable ? notMeasurable(raw[key]) : fnirText(raw[key]),
      `${formatCount(point.mated)} / ${formatCount(point.nonmated)}`,
    ];
    if (onUseForIdentify) cells.push(point.measurable ? useForIdentifyButton(point, onUseForIdentify) : "");
    const tr = row(...cells);
    tr.dataset.fpir = key;
    if (!point.measurable) tr.className = "not-measurable";
    return tr;
  });
  const names = ["Target FPIR", `Threshold (${statistic})`, "FNIR", "Observed FPIR", "FNIR on raw similarity"];
  names.push("Mated / non-mated searches");
  if (onUseForIdentify) names.push("");
  return el(
    "table",
    { className: "fnir" },
    el("caption", {}, `Open set on ${statistic}: FNIR at target FPIR (95% confidence intervals)`),
    el("thead", {}, headRow(...names)),
    el("tbody", {}, ...rows),
  );
}

/** How the decision score's threshold for each target FPIR moves with the number of enrolled subjects. */
function gallerySizeTable(identification) {
  const sizes = identification.by_gallery_size || [];
  if (sizes.length === 0) return [];
  const keys = Object.keys(sizes[0].thresholds);
  const rows = sizes.map((size) =>
    row(
      formatCount(size.subjects),
      formatCount(size.draws),
      ...keys.map((key) => (size.measurable[key] === false ? "not measurable" : formatThreshold(size.thresholds[key]))),
    ),
  );
  return [
    el(
      "table",
      { className: "by-gallery-size" },
      el("caption", {}, `Threshold by gallery size (${identification.statistic || "similarity"})`),
      el("thead", {}, headRow("Subjects", "Draws", ...keys.map((key) => `FPIR ${key}`))),
      el("tbody", {}, ...rows),
    ),
    el(
      "p",
      { className: "muted" },
      "Each row: random subsets of this many of the gallery's subjects, every template searching them as a " +
        "stranger; the threshold that keeps FPIR at the target, the median of the draws.",
    ),
  ];
}

function identificationBlock(report, onUseForIdentify) {
  const identification = report.identification || {};
  const probes = identification.probes ? `, ${formatCount(identification.probes)} searches` : "";
  const parts = [el("h4", {}, `Identification (1:N)${probes}`)];
  if (identification.cmc) {
    // The usual ranks keep the table narrow; the JSON has every rank up to 20.
    const all = Object.keys(identification.cmc).sort((a, b) => Number(a) - Number(b));
    const usual = all.filter((rank) => CMC_RANKS.includes(Number(rank)));
    const ranks = usual.length ? usual : all;
    parts.push(
      el(
        "table",
        { className: "cmc" },
        el("caption", {}, "CMC: share of searches with the right subject within rank k"),
        el("thead", {}, headRow("Rank", ...ranks)),
        el("tbody", {}, row("Hit rate", ...ranks.map((rank) => formatPercent(identification.cmc[rank])))),
      ),
    );
  }
  if (identification.fnir_at_fpir) {
    parts.push(
      el(
        "p",
        { className: "statistic" },
        "Identify decides on ",
        el("strong", {}, identification.statistic || "similarity"),
        `: ${describeStatistic(identification.statistic)}.`,
      ),
      openSetTable(identification, onUseForIdentify),
      ...gallerySizeTable(identification),
    );
  }
  if (identification.note) parts.push(el("p", { className: "muted" }, identification.note));
  return parts;
}

function operatingTable(report) {
  const op = report.operating;
  if (!op) return [];
  return [
    el("h4", {}, "Operating point (thresholds in force)"),
    factTable([
      ["Verify threshold", formatThreshold(op.verify_threshold)],
      ["FAR there", `${formatRate(op.far)} ${formatCi(op.far_ci)}`],
      ["FRR there", `${formatRate(op.frr)} ${formatCi(op.frr_ci)}`],
      ["Identify threshold", `${formatThreshold(op.identify_threshold)} on ${op.identify_statistic || "similarity"}`],
      ["FNIR there", formatRate(op.fnir)],
      ["FPIR there", formatRate(op.fpir)],
    ]),
  ];
}

/**
 * Replaces the tables inside `container` (which holds a `.report-tables` element) with `report`'s.
 * With `onTryThreshold`, each measurable target FAR gets a button handing its threshold over; with
 * `onUseForIdentify`, each measurable target FPIR a button handing the FPIR over.
 */
export function renderReport(container, report, { onTryThreshold, onUseForIdentify } = {}) {
  const tables = container.querySelector(".report-tables");
  tables.replaceChildren(
    summaryTable(report),
    atFarTable(report, onTryThreshold),
    ...identificationBlock(report, onUseForIdentify),
    ...operatingTable(report),
  );
  container.dataset.reportId = report.id;
  container.hidden = false;
}

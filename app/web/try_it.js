// "Try it": identify every face of a photo in the selected collection and draw the boxes and
// candidates on a canvas. A face is matched when its decision score (the answer's `statistic`)
// clears the threshold; candidates carry their raw similarity.

import { apiJson, byId, clearError, el, galleryPath, selection, showError, stillSelected } from "./api.js";
import { formatThreshold } from "./report.js";

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
  if (face.match && top) return `${index + 1}. ${top.name || top.subject_id} ${face.match.score.toFixed(3)}`;
  return `${index + 1}. unknown`;
}

/** A face's box in canvas pixels. */
function scaledBox(face, scale) {
  const { x_min: x1, y_min: y1, x_max: x2, y_max: y2 } = face.box;
  return { x: x1 * scale, y: y1 * scale, width: (x2 - x1) * scale, height: (y2 - y1) * scale };
}

function drawFaces(canvas, image, faces) {
  const scale = Math.min(1, CANVAS_MAX_WIDTH / image.naturalWidth);
  canvas.width = Math.round(image.naturalWidth * scale);
  canvas.height = Math.round(image.naturalHeight * scale);
  canvas.dataset.scale = String(scale);
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0, canvas.width, canvas.height);
  const colourOf = (face) => (face.match ? MATCH_COLOUR : UNKNOWN_COLOUR);
  context.lineWidth = 3;
  for (const face of faces) {
    const { x, y, width, height } = scaledBox(face, scale);
    context.strokeStyle = colourOf(face);
    context.strokeRect(x, y, width, height);
  }
  // Labels after every box, so no box line crosses a label.
  context.font = "bold 14px system-ui, sans-serif";
  context.textBaseline = "bottom";
  faces.forEach((face, index) => {
    const { x, y, height } = scaledBox(face, scale);
    const label = faceLabel(face, index);
    const labelWidth = context.measureText(label).width + 8;
    const labelTop = y >= 20 ? y - 20 : y + height; // above the box, or below it at the top edge
    const labelLeft = Math.max(0, Math.min(x - 1.5, canvas.width - labelWidth)); // kept on the canvas
    context.fillStyle = colourOf(face);
    context.fillRect(labelLeft, labelTop, labelWidth, 20);
    context.fillStyle = "#ffffff";
    context.fillText(label, labelLeft + 4, labelTop + 17);
  });
}

function subjectLabel(candidate) {
  if (!candidate.name || candidate.name === candidate.subject_id) return candidate.subject_id;
  return `${candidate.name} (${candidate.subject_id})`;
}

/** The decision behind a face's verdict: its decision score against the threshold, both on `statistic`. */
function decisionText(face, result) {
  if (face.score === null || face.score === undefined) return "";
  const against = face.match ? "at or above" : "below";
  const similarity = face.match ? `; similarity ${face.match.similarity.toFixed(4)}` : "";
  return (
    `${result.statistic} ${formatThreshold(face.score)}, ${against} the threshold ` +
    `${formatThreshold(result.threshold)}${similarity}`
  );
}

function faceListItem(face, index, result) {
  const verdict = face.match ? `match: ${face.candidates[0].name || face.match.subject_id}` : "no match (unknown)";
  const decision = decisionText(face, result);
  const candidates = face.candidates.map((candidate) =>
    el(
      "li",
      { "data-subject-id": candidate.subject_id },
      `${subjectLabel(candidate)}: ${candidate.similarity.toFixed(4)}`,
    ),
  );
  return el(
    "li",
    {
      className: face.match ? "face match" : "face unknown",
      "data-match": face.match ? face.match.subject_id : "",
      "data-score": face.score === null || face.score === undefined ? "" : String(face.score),
    },
    el("strong", {}, `Face ${index + 1}, ${verdict}`),
    ` (detection score ${face.det_score.toFixed(3)})`,
    decision ? el("div", { className: "decision" }, decision) : null,
    candidates.length ? el("ol", { className: "candidates" }, ...candidates) : el("p", {}, "No candidates: the gallery is empty."),
  );
}

/** Empties the canvas and the list, which showed matches of the collection just left. */
export function clearTryIt() {
  const canvas = byId("try-canvas");
  canvas.width = 0;
  canvas.height = 0;
  delete canvas.dataset.scale;
  byId("try-results").replaceChildren();
  byId("try-status").textContent = "";
}

export async function tryIdentify(event) {
  event.preventDefault();
  const file = byId("try-file").files[0];
  if (!file) return;
  const version = selection.version;
  const form = new FormData();
  form.append("file", file);
  form.append("all_faces", "true");
  const button = byId("try-submit");
  button.disabled = true;
  byId("try-status").textContent = "Identifying…";
  clearError("try-error");
  try {
    const result = await apiJson(galleryPath("/identify"), { method: "POST", form });
    const { image, url } = await loadImage(file);
    if (!stillSelected(version)) {
      URL.revokeObjectURL(url);
      return; // the panel shows another collection now
    }
    drawFaces(byId("try-canvas"), image, result.faces);
    URL.revokeObjectURL(url);
    byId("try-results").replaceChildren(...result.faces.map((face, index) => faceListItem(face, index, result)));
    byId("try-status").textContent =
      `${result.faces.length} face(s) searched in ${result.collection}; identify threshold ` +
      `${formatThreshold(result.threshold)} on ${result.statistic}, model ${result.model.name || ""}`.trim();
  } catch (error) {
    byId("try-status").textContent = "";
    showError("try-error", error);
  } finally {
    button.disabled = false;
  }
}

// The collection selector: every collection the key reaches, and the one the panels act on.
// The choice is kept in the address (?collection=…), so a reload or a shared link shows the same one.
// Also the form that creates a collection on a chosen model.

import { DEFAULT_COLLECTION, apiJson, byId, clearError, el, selectCollection, showError } from "./api.js";
import { defaultModel, embedders, loadModels, modelNamed, modelOption, readThresholds } from "./models.js";

const PAGE_SIZE = 500; // the most GET /collections gives at once
const PARAMETER = "collection";

/** Every collection, following `next_cursor` to the last page. */
async function allCollections() {
  const collections = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursor) query.set("cursor", cursor);
    const page = await apiJson(`/collections?${query}`);
    collections.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return collections;
}

function optionLabel(collection) {
  const { collection_id: id, name } = collection;
  return name && name !== id ? `${id} (${name})` : id;
}

/** The address's collection when it is listed, else `default` (which cannot be deleted). */
function initialChoice(ids) {
  const wanted = new URLSearchParams(window.location.search).get(PARAMETER);
  if (wanted && ids.includes(wanted)) return wanted;
  return ids.includes(DEFAULT_COLLECTION) || ids.length === 0 ? DEFAULT_COLLECTION : ids[0];
}

function fillSelector(collections, chosen) {
  const select = byId("collection-select");
  select.replaceChildren(
    ...collections.map((collection) =>
      el("option", { value: collection.collection_id }, optionLabel(collection)),
    ),
  );
  select.value = chosen;
  selectCollection(chosen);
}

/** Fills the selector and selects its initial collection; throws the API's error (a wrong key, say). */
export async function loadCollections() {
  const collections = await allCollections();
  fillSelector(collections, initialChoice(collections.map((collection) => collection.collection_id)));
}

function rememberInAddress(collectionId) {
  const url = new URL(window.location.href);
  if (collectionId === DEFAULT_COLLECTION) url.searchParams.delete(PARAMETER);
  else url.searchParams.set(PARAMETER, collectionId);
  window.history.replaceState(null, "", url);
}

let switchHandler = async () => {};

/** Selects the collection the user picks, then calls `onSwitch()` to load its panels. */
export function onCollectionSwitch(onSwitch) {
  switchHandler = onSwitch;
  byId("collection-select").addEventListener("change", (event) => {
    const collectionId = event.target.value;
    selectCollection(collectionId);
    rememberInAddress(collectionId);
    onSwitch();
  });
}

// ----- creating a collection ----------------------------------------------------

const THRESHOLD_INPUTS = ["new-collection-verify", "new-collection-identify"];

/** Whether the model chosen in the form is uncalibrated: then the API needs thresholds for it. */
function needsThresholds() {
  const model = modelNamed(byId("new-collection-model").value);
  return Boolean(model && !model.calibrated);
}

/** Shows the threshold inputs only for an uncalibrated model; hidden ones are disabled, so never required. */
function showThresholdInputs() {
  const needed = needsThresholds();
  byId("new-collection-thresholds").hidden = !needed;
  for (const id of THRESHOLD_INPUTS) {
    byId(id).disabled = !needed;
    byId(id).required = needed;
  }
}

/** Offers the installed embedders (from the last GET /models), keeping the user's choice, else the default. */
export function showCreateChoices() {
  const select = byId("new-collection-model");
  const previous = select.value;
  const models = embedders();
  select.replaceChildren(...models.map(modelOption));
  select.value = models.some((model) => model.name === previous) ? previous : defaultModel();
  showThresholdInputs();
}

async function createCollection(event) {
  event.preventDefault();
  const button = byId("new-collection-submit");
  const status = byId("new-collection-status");
  clearError("new-collection-error");
  status.textContent = "";
  button.disabled = true;
  try {
    const body = { collection_id: byId("new-collection-id").value.trim(), model: byId("new-collection-model").value };
    const name = byId("new-collection-name").value.trim();
    if (name) body.name = name;
    if (needsThresholds()) body.thresholds = readThresholds(...THRESHOLD_INPUTS);
    const created = await apiJson("/collections", { method: "POST", json: body, anyCollection: true });
    byId("collection-form").reset();
    await loadModels(); // the new collection is one of its model's users
    showCreateChoices();
    fillSelector(await allCollections(), created.collection_id);
    rememberInAddress(created.collection_id);
    await switchHandler();
    status.textContent = `Created ${created.collection_id} on ${created.model}; it is selected above.`;
  } catch (error) {
    showError("new-collection-error", error);
  } finally {
    button.disabled = false;
  }
}

export function setUpCollectionForm() {
  byId("new-collection-model").addEventListener("change", showThresholdInputs);
  byId("collection-form").addEventListener("submit", createCollection);
}

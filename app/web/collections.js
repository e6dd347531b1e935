// The collection selector: every collection the key reaches, and the one the panels act on.
// The choice is kept in the address (?collection=…), so a reload or a shared link shows the same one.

import { DEFAULT_COLLECTION, apiJson, byId, el, selectCollection } from "./api.js";

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

/** Fills the selector and selects its initial collection; throws the API's error (a wrong key, say). */
export async function loadCollections() {
  const collections = await allCollections();
  const ids = collections.map((collection) => collection.collection_id);
  const chosen = initialChoice(ids);
  const select = byId("collection-select");
  select.replaceChildren(
    ...collections.map((collection) =>
      el("option", { value: collection.collection_id }, optionLabel(collection)),
    ),
  );
  select.value = chosen;
  selectCollection(chosen);
}

function rememberInAddress(collectionId) {
  const url = new URL(window.location.href);
  if (collectionId === DEFAULT_COLLECTION) url.searchParams.delete(PARAMETER);
  else url.searchParams.set(PARAMETER, collectionId);
  window.history.replaceState(null, "", url);
}

/** Selects the collection the user picks, then calls `onSwitch()` to load its panels. */
export function onCollectionSwitch(onSwitch) {
  byId("collection-select").addEventListener("change", (event) => {
    const collectionId = event.target.value;
    selectCollection(collectionId);
    rememberInAddress(collectionId);
    onSwitch();
  });
}

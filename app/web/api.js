// Calls to the facerec API with the admin key, the collection they act on, and the page's small DOM helpers.
//
// The key lives in sessionStorage only: it is gone when the tab closes, it is
// never written to localStorage or a cookie, and it never appears in a URL.

const KEY_STORAGE = "facerec.adminKey";

export const adminKey = {
  get: () => sessionStorage.getItem(KEY_STORAGE),
  set: (key) => sessionStorage.setItem(KEY_STORAGE, key),
  forget: () => sessionStorage.removeItem(KEY_STORAGE),
};

// ----- the selected collection ---------------------------------------------

export const DEFAULT_COLLECTION = "default";

/**
 * The collection every panel acts on. `version` changes at each switch: an answer to a request
 * sent before it is dropped (api() throws Superseded), so a slow answer never shows the figures
 * of the collection the user has just left.
 */
export const selection = { id: DEFAULT_COLLECTION, version: 0 };

export function selectCollection(collectionId) {
  selection.id = collectionId;
  selection.version += 1;
}

/** Whether `version` (read from `selection` before an await) is still the selected collection's. */
export const stillSelected = (version) => version === selection.version;

/** `/collections/{id}{rest}`: a gallery route of the selected collection. */
export const galleryPath = (rest) => `/collections/${encodeURIComponent(selection.id)}${rest}`;

/** `/admin/collections/{id}{rest}`: an admin route of the selected collection. */
export const adminPath = (rest) => `/admin/collections/${encodeURIComponent(selection.id)}${rest}`;

/** Thrown instead of an answer that came back after another collection was selected; never shown. */
export class Superseded extends Error {
  constructor() {
    super("another collection was selected meanwhile");
  }
}

/** `version` is null for an answer that belongs to no collection (the models, say): never dropped. */
function dropIfSuperseded(version) {
  if (version !== null && !stillSelected(version)) throw new Superseded();
}

// ----- requests --------------------------------------------------------------

/** An API answer that was not 2xx, carrying the error JSON's code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  get isAuthError() {
    return this.status === 401 || this.status === 403;
  }
}

async function errorFrom(response) {
  let text = "";
  try {
    text = await response.text();
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) {
      return new ApiError(response.status, body.error.code, body.error.message);
    }
  } catch {
    // Not the service's error JSON (a proxy's page, say): show what came back.
  }
  const detail = text.trim().slice(0, 200) || response.statusText;
  return new ApiError(response.status, "http_error", `HTTP ${response.status}: ${detail}`);
}

/**
 * fetch() with the admin key; resolves to the Response when it is 2xx, throws ApiError otherwise,
 * and Superseded when another collection was selected while it was on its way (unless
 * `anyCollection`: the answer is the service's, whichever collection is selected).
 * `json` is sent as a JSON body, `form` (FormData) as multipart.
 */
export async function api(path, { method = "GET", json, form, anyCollection = false } = {}) {
  const version = anyCollection ? null : selection.version;
  const headers = { "X-API-Key": adminKey.get() || "" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store", credentials: "omit" });
  } catch (error) {
    dropIfSuperseded(version);
    throw new ApiError(0, "network_error", `Cannot reach the service: ${error.message}`);
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    dropIfSuperseded(version);
    throw error;
  }
  dropIfSuperseded(version);
  return response;
}

/** The status and JSON body of a 2xx answer (for routes that answer 200 or 202). */
export async function apiAnswer(path, options = {}) {
  const version = options.anyCollection ? null : selection.version;
  const response = await api(path, options);
  const body = await response.json();
  dropIfSuperseded(version);
  return { status: response.status, body };
}

export async function apiJson(path, options) {
  return (await apiAnswer(path, options)).body;
}

/** Shows an image that needs the key header: fetched as a blob, then shown through a blob: URL. */
export async function showAuthorizedImage(img, path) {
  const version = selection.version;
  const blob = await (await api(path)).blob();
  dropIfSuperseded(version);
  const url = URL.createObjectURL(blob);
  const loaded = new Promise((resolve, reject) => {
    img.onload = resolve;
    img.onerror = () => reject(new ApiError(0, "bad_image", `The image from ${path} could not be shown`));
  });
  const previous = img.dataset.blobUrl;
  img.src = url;
  img.dataset.blobUrl = url;
  if (previous) {
    URL.revokeObjectURL(previous);
  }
  await loaded;
}

/** Empties an image shown by showAuthorizedImage and frees its blob: URL. */
export function clearAuthorizedImage(img) {
  if (img.dataset.blobUrl) URL.revokeObjectURL(img.dataset.blobUrl);
  delete img.dataset.blobUrl;
  img.onload = null;
  img.onerror = null;
  img.removeAttribute("src");
}

// ----- the page ------------------------------------------------------------------

export const byId = (id) => document.getElementById(id);

/** Builds an element; children are nodes or strings (always inserted as text, never as HTML). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return node;
}

/** Shows `error` in the box `id`; a Superseded answer belongs to another collection and is not shown. */
export function showError(id, error) {
  if (error instanceof Superseded) return;
  const box = byId(id);
  box.textContent = error.code && error.code !== "http_error" ? `${error.message} (${error.code})` : error.message;
  box.dataset.code = error.code || "";
  box.hidden = false;
}

export function clearError(id) {
  const box = byId(id);
  box.textContent = "";
  box.hidden = true;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Lookalike's page: a photo in (picked, dropped, pasted or taken), the decided category and similar products out.
// The shopper may draw a region of the photo to search, and narrow the results by the catalogue's own columns.
"use strict";

const RESULTS = 12;
const MIN_BOX = 0.05;       // the smallest region, as a fraction of the photo's side, a drag makes
const KEY_STEP = 0.02;      // how far an arrow key moves or resizes the region
const KEY_SETTLE_MS = 350;  // after the last arrow key is released, search again
const MAX_TEXT_CHOICES = 12; // a text column with more values than this gets no select
// Phone photos are 12+ megapixels; the model looks at 224 px. Keep enough for a sharp preview and fast uploads.
const MAX_LONG_SIDE = 1280;
const JPEG_QUALITY = 0.9;

const $ = (id) => document.getElementById(id);
const els = {
  banner: $("weights-banner"), notice: $("notice"), dropzone: $("dropzone"), dropzoneTitle: $("dropzone-title"),
  dropzoneHint: $("dropzone-hint"), preview: $("preview"), inputs: [$("photo"), $("camera")],
  regionWrap: $("region-wrap"), region: $("region"), box: $("box"), regionStart: $("region-start"),
  regionClear: $("region-clear"), filters: $("filters"), filterFields: $("filter-fields"), noMatch: $("no-match"),
  status: $("status"), retry: $("retry"),
  decision: $("decision"), decisionTitle: $("decision-title"), decisionNote: $("decision-note"), chips: $("chips"),
  resultsSection: $("results-section"), resultsTitle: $("results-title"), results: $("results"), back: $("back"),
  refine: $("refine"), refineButton: $("refine-button"), refineCount: $("refine-count"), summary: $("catalog-summary"),
  wordsForm: $("words-form"), words: $("words"), wordsChipRow: $("words-chip-row"), wordsChip: $("words-chip"),
  wordsChipText: $("words-chip-text"),
};

const state = {
  maxUploadBytes: 20_000_000,
  photo: null,        // the (downscaled) upload, kept in memory to send again if the server no longer holds it
  photoHandle: null,  // the server's handle for the photo: steering (chips, filters, words...) names it instead
  previewUrl: null,
  photoResult: null,  // the last answer for the photo, to come back to after "more like this"
  retry: null,        // what "Try again" repeats
  notice: null,       // "empty" or "unavailable" while the notice shows
  requestId: 0,       // answers to superseded requests are dropped
  searching: null,    // the AbortController of the search in flight: a newer search aborts it
  marks: new Map(),   // product id -> "like" | "unlike", for this photo or these words: what "Refine" sends
  markedWords: null,  // the words the marks were made on, when there is no photo
  box: null,          // the region of the photo to search, {x0, y0, x1, y1} as fractions, or null: all of it
  category: null,     // the category the shopper chose for the photo, or null: the classifier's
  similarTo: null,    // the product shown by "more like this", so a filter change searches it again
  minScore: new URLSearchParams(window.location.search).get("min_score"), // e.g. /?min_score=0.9 to try a cutoff
  words: "",          // the words searched by, shown as a removable chip; with a photo they narrow its matches
};
const MAX_MARKS = 20; // per kind, as the API allows

/** An error whose message is for the shopper. */
class ShopperError extends Error {}

// ---- small pieces ---------------------------------------------------------------------------------------------

function label(category) {
  return category.replace(/[-_]+/g, " ");
}

function withArticle(category) {
  const name = label(category);
  return `${/^[aeiou]/i.test(name) ? "an" : "a"} ${name}`;
}

function percent(value) {
  return `${Math.round(Math.max(0, value) * 100)}%`;
}

function megabytes(bytes) {
  return `${(bytes / 1_000_000).toFixed(bytes < 10_000_000 ? 1 : 0)} MB`;
}

function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function showStatus(text, kind = "") {
  els.status.textContent = text;
  els.status.className = `status ${kind}`;
}

function showError(message, retry = null) {
  showStatus(message, "error");
  state.retry = retry;
  els.retry.hidden = retry === null;
}

function setBusy(busy, text = "") {
  document.body.classList.toggle("busy", busy);
  els.resultsSection.setAttribute("aria-busy", String(busy));
  if (busy) {
    els.retry.hidden = true;
    showStatus(text, "loading");
  }
}

function fallbackMessage(status) {
  if (status === 413) return "That photo is too large. Please choose a smaller one.";
  if (status === 503) return "Search is unavailable right now. Please try again in a moment.";
  return `Something went wrong (error ${status}). Please try again.`;
}

/** A newer search supersedes the one in flight: abort it, so the server and the network stop working on it. */
function supersedeSearch() {
  if (state.searching) state.searching.abort();
  state.searching = new AbortController();
  return state.searching.signal;
}

/** Fetch JSON; on failure show the server's own message and return null. `recover`, if given, answers a 410
 *  `photo_expired` instead: the server no longer holds the photo, so the caller sends it again. */
async function callApi(url, options, busyText, retry, recover = null) {
  const id = ++state.requestId;
  const signal = supersedeSearch();
  setBusy(true, busyText);
  try {
    let response;
    try {
      response = await fetch(url, { ...options, signal });
    } catch (err) {
      if (id === state.requestId) showError("We could not reach Lookalike. Check your connection and try again.", retry);
      return null;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null; // not JSON (e.g. a proxy's error page): the status speaks instead
    }
    if (id !== state.requestId) return null;
    if (!response.ok) {
      if (recover && response.status === 410 && body && body.error && body.error.code === "photo_expired") {
        return await recover();
      }
      const message = body && body.error ? body.error.message : fallbackMessage(response.status);
      showError(message, response.status >= 500 ? retry : null);
      return null;
    }
    if (state.notice === "unavailable") hideNotice(); // it answered, so it is back
    if (body.query_id) els.results.dataset.queryId = body.query_id; // what a click on a result names
    return body;
  } finally {
    if (id === state.requestId) setBusy(false);
  }
}

// ---- the photo --------------------------------------------------------------------------------------------------

/**
 * What to upload: the photo itself when it is small, else a JPEG at most MAX_LONG_SIDE px long, drawn upright
 * (createImageBitmap applies the EXIF orientation). A file the browser cannot decode (HEIC in most browsers, or
 * no image at all) goes as it is: the server reads more formats, and explains when it cannot.
 */
async function prepareUpload(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (err) {
    if (file.size > state.maxUploadBytes) {
      const limit = megabytes(state.maxUploadBytes);
      throw new ShopperError(`This file is ${megabytes(file.size)}; the largest photo we accept is ${limit}.`);
    }
    return { blob: file, previewable: false };
  }
  try {
    const longSide = Math.max(bitmap.width, bitmap.height);
    if (longSide <= MAX_LONG_SIDE && file.size <= state.maxUploadBytes) return { blob: file, previewable: true };
    const scale = Math.min(1, MAX_LONG_SIDE / longSide);
    const canvas = element("canvas", {
      width: Math.max(1, Math.round(bitmap.width * scale)), height: Math.max(1, Math.round(bitmap.height * scale)),
    });
    const context = canvas.getContext("2d");
    context.imageSmoothingQuality = "high";
    context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const jpeg = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
    if (!jpeg) throw new ShopperError("Your browser could not prepare this photo. Please try another one.");
    const name = (file.name || "photo").replace(/\.[^.]*$/, "") + ".jpg";
    return { blob: new File([jpeg], name, { type: "image/jpeg" }), previewable: true };
  } finally {
    bitmap.close();
  }
}

// Dropping and pasting are for a mouse and a keyboard; a phone offers its camera instead.
const TOUCH = !window.matchMedia("(hover: hover) and (pointer: fine)").matches;

function showPrompt(hasPhoto) {
  const firstTime = TOUCH ? "Photograph a piece of furniture" : "Drop a photo here";
  els.dropzoneTitle.textContent = hasPhoto ? "Try another photo" : firstTime;
  els.dropzoneHint.textContent = hasPhoto ? "Drop it here, paste it, or" : "or paste one from the clipboard, or";
  els.dropzoneHint.hidden = TOUCH;
}

function showPreview(upload) {
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = upload.previewable ? URL.createObjectURL(upload.blob) : null;
  els.regionWrap.hidden = !state.previewUrl;
  setBox(null);
  if (state.previewUrl) {
    els.preview.src = state.previewUrl;
    els.preview.alt = "Your photo";
  }
  els.dropzone.classList.toggle("has-preview", Boolean(state.previewUrl));
  showPrompt(Boolean(state.previewUrl));
}

async function acceptFile(file) {
  if (!file) return;
  state.requestId += 1; // an answer still on its way is for the previous photo: drop it
  supersedeSearch();
  setBusy(true, "Preparing your photo…");
  let upload;
  try {
    upload = await prepareUpload(file);
  } catch (err) {
    setBusy(false);
    if (!(err instanceof ShopperError)) throw err;
    showError(err.message);
    return;
  }
  // A new photo: what was shown for the last one goes, so nothing on screen belongs to another photo.
  state.photo = upload.blob;
  state.photoHandle = null;
  state.photoResult = null;
  state.marks.clear();
  state.category = null;
  state.similarTo = null;
  els.decision.hidden = true;
  els.resultsSection.hidden = true;
  showPreview(upload);
  await searchPhoto(null);
}

// ---- searching ------------------------------------------------------------------------------------------------

function marked(kind) {
  return [...state.marks].filter(([, mark]) => mark === kind).map(([id]) => id);
}

/** The query string every search sends: k, the filters, and the cutoff when the page's own address names one. */
function searchParams() {
  const params = new URLSearchParams({ k: String(RESULTS) });
  for (const where of filterExpressions()) params.append("where", where);
  if (state.minScore !== null) params.set("min_score", state.minScore);
  return params;
}

/**
 * Search the photo: the first time by uploading it; after that by the handle the server gave it, with no upload
 * and no second forward pass. A handle the server no longer holds (expired, or another server answered) is
 * answered by sending the photo once more, which the shopper doesn't notice.
 */
async function searchPhoto(category, refine = false) {
  if (!state.photo) return;
  state.category = category;
  state.similarTo = null;
  const photo = state.photo;
  const params = searchParams();
  if (category) params.set("category", category);
  if (state.box) params.set("box", [state.box.x0, state.box.y0, state.box.x1, state.box.y1].map((v) => v.toFixed(4)).join(","));
  if (state.words) params.set("q", state.words);
  if (refine) {
    for (const id of marked("like")) params.append("like", id);
    for (const id of marked("unlike")) params.append("unlike", id);
  }
  const busyText = refine ? "Refining your results…"
    : category ? `Searching ${label(category)} products…`
    : state.box ? "Searching for products like the part you marked…" : "Searching for similar products…";
  const retry = () => searchPhoto(category, refine);
  const upload = () => {
    const data = new FormData();
    data.append("image", photo, photo.name || "photo.jpg");
    return callApi(`/api/v1/search?${params}`, { method: "POST", body: data }, busyText, retry);
  };
  let body;
  if (state.photoHandle) {
    const steered = new URLSearchParams(params);
    steered.set("photo", state.photoHandle);
    body = await callApi(`/api/v1/search?${steered}`, { method: "POST" }, busyText, retry, upload);
  } else {
    body = await upload();
  }
  if (!body || photo !== state.photo) return;
  state.photoHandle = body.photo || null;
  state.photoResult = { body, chosen: category };
  showPhotoResult();
}

// ---- marking results: "like" and "not like this" ---------------------------------------------------------------

/** Tell the server, for later shoppers; the search itself is refined from `state.marks` alone.
 *  A vote on a search by words teaches those words; a vote on a photo's results, its category. It names the
 *  `query_id` of the answer that showed the product. A vote the server refuses (too many, too old a search)
 *  keeps its mark for Refine, and the shopper reads why it was not saved. */
async function sendVote(item, vote, queryId) {
  const byWords = !state.photo && state.words;
  const category = state.photoResult ? state.photoResult.body.category : item.category;
  const body = byWords ? { query: state.words, item_id: item.id, vote, query_id: queryId }
    : { query: null, category, item_id: item.id, vote, query_id: queryId };
  let response;
  try {
    response = await fetch("/api/v1/feedback", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
  } catch (err) {
    showStatus("Your mark counts for Refine, but it could not be sent to the shop: check your connection.", "error");
    return;
  }
  if (response.ok) return;
  let error = null;
  try {
    error = (await response.json()).error || null;
  } catch (err) {
    error = null; // not JSON (e.g. a proxy's error page): the status speaks instead
  }
  const why = error && error.message ? error.message
    : response.status === 429 ? "Too many marks at once. Please wait a moment."
    : `Something went wrong (error ${response.status}).`;
  showStatus(`Your mark counts for Refine, but the shop did not save it: ${why}`, "error");
}

function updateRefine() {
  const likes = marked("like").length;
  const unlikes = marked("unlike").length;
  els.refineButton.disabled = likes + unlikes === 0;
  els.refineCount.textContent = likes + unlikes === 0 ? "Mark results you like or don't, then refine."
    : `${likes} liked, ${unlikes} not like this.`;
}

function markButtons(item, queryId) {
  const group = element("div", { className: "marks", role: "group" });
  group.setAttribute("aria-label", `Your opinion of ${item.name}`);
  const buttons = [["like", "Like"], ["unlike", "Not like this"]].map(([kind, text]) => {
    const check = element("span", { className: "check", textContent: "\u2713 " });
    check.setAttribute("aria-hidden", "true"); // aria-pressed says it; the check mark shows it without colour
    const button = element("button", { type: "button", className: `mark mark-${kind}` },
      check, text, element("span", { className: "visually-hidden", textContent: `: ${item.name}` }));
    button.dataset.mark = kind;
    button.setAttribute("aria-pressed", String(state.marks.get(item.id) === kind));
    button.addEventListener("click", () => {
      const was = state.marks.get(item.id);
      if (was === kind) {
        state.marks.delete(item.id);
      } else {
        if (marked(kind).length >= MAX_MARKS) {
          showStatus(`You can mark at most ${MAX_MARKS} products each way.`, "error");
          return;
        }
        state.marks.set(item.id, kind);
        sendVote(item, kind, queryId);
      }
      for (const other of buttons) other.setAttribute("aria-pressed", String(state.marks.get(item.id) === other.dataset.mark));
      updateRefine();
    });
    return button;
  });
  group.append(...buttons);
  return group;

}

/** Search again for what is on screen: the photo, or the product "more like this" was asked for. */
function searchAgain() {
  if (state.similarTo) moreLikeThis(state.similarTo);
  else if (state.photo) searchPhoto(state.category);
}

/** What to say when a search found nothing, or "" when it found something. */
function noMatchText(body) {
  if (body.results.length) return "";
  if (body.min_score > 0) return "No close match in this category.";
  if (filterExpressions().length) return "No products here match your filters. Try widening them.";
  return "No products in this category yet.";
}

function showPhotoResult() {
  const { body, chosen } = state.photoResult;
  const guess = Object.entries(body.probabilities).sort((a, b) => b[1] - a[1])[0][0];
  if (chosen && chosen !== guess) {
    els.decisionTitle.textContent = `Showing ${label(chosen)} results, as you asked`;
    els.decisionNote.textContent = `Our guess was ${withArticle(guess)}: ${percent(body.probabilities[guess])}.`;
  } else {
    els.decisionTitle.textContent = `Looks like ${withArticle(body.category)}: ${percent(body.confidence)}`;
    els.decisionNote.textContent = "";
  }
  renderChips(body.probabilities, body.category);
  els.decision.hidden = false;
  els.back.hidden = true;
  const words = body.q ? ` matching “${body.q}”` : "";
  renderResults(`Similar products${words}`, body.results, noMatchText(body), body.query_id || "");
  const none = body.q && !body.results.length && !filterExpressions().length && !(body.min_score > 0)
    ? `No ${label(body.category)} products match “${body.q}”.` : noMatchText(body);
  showStatus(body.results.length ? `Found ${body.results.length} similar products${words}.` : none);
}

// ---- words ------------------------------------------------------------------------------------------------------

function showWordsChip() {
  els.wordsChipText.textContent = `“${state.words}”`;
  els.wordsChip.setAttribute("aria-label", `Remove the words ${state.words}`);
  els.wordsChipRow.hidden = !state.words;
}

async function searchWords(refine = false) {
  if (!refine && state.markedWords !== state.words) state.marks.clear(); // marks belong to the words they were made on
  state.markedWords = state.words;
  const params = new URLSearchParams({ q: state.words, k: String(RESULTS) });
  if (refine) {
    for (const id of marked("like")) params.append("like", id);
    for (const id of marked("unlike")) params.append("unlike", id);
  }
  const busyText = refine ? "Refining your results…" : `Searching for “${state.words}”…`;
  const body = await callApi(`/api/v1/search/text?${params}`, {}, busyText, () => searchWords(refine));
  if (!body) return;
  els.decision.hidden = true;
  els.back.hidden = true;
  if (body.refined) {
    renderResults(`Products like the ones you liked, for “${body.q}”`, body.results, "", body.query_id || "");
    showStatus(`Found ${body.results.length} products like the ones you liked.`);
    return;
  }
  renderResults(`Products matching “${body.q}”`, body.results, "", body.query_id || "", "match");
  showStatus(body.results.length ? `Found ${body.results.length} products for “${body.q}”.`
    : `No products match “${body.q}”. Try fewer or other words.`);
}

/** Words alone search by words; words with a photo narrow the photo's matches. */
function search() {
  if (state.photo) return searchPhoto(null);
  if (state.words) return searchWords();
  els.resultsSection.hidden = true;
  showStatus("");
  return null;
}

function renderChips(probabilities, current) {
  const hadFocus = els.chips.contains(document.activeElement);
  const ordered = Object.entries(probabilities).sort((a, b) => b[1] - a[1]);
  els.chips.replaceChildren(...ordered.map(([category, probability]) => {
    const chip = element("button", { type: "button", className: "chip" },
      element("span", { textContent: label(category) }),
      element("span", { className: "chip-score", textContent: ` ${percent(probability)}` }));
    chip.dataset.category = category;
    chip.setAttribute("aria-pressed", String(category === current));
    chip.addEventListener("click", () => {
      if (category !== current) searchPhoto(category);
      else if (!els.back.hidden) showPhotoResult(); // from "more like this" back to the photo's matches
    });
    return chip;
  }));
  if (hadFocus) els.chips.querySelector('[aria-pressed="true"]').focus();
}

function productLink(url) {
  try {
    const parsed = new URL(url, document.baseURI);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch (err) {
    return null; // a malformed url in products.csv: show no link rather than a broken one
  }
}

/** A result; `queryId` (the answer's `query_id`, which votes on it name) makes it markable, null does not. */
function renderCard(item, queryId = null, scoreWord = "similar") {
  const image = element("img", { src: item.image_url, alt: item.name, loading: "lazy", width: 400, height: 400 });
  const meta = element("p", { className: "meta" },
    element("span", { className: "score", textContent: `${percent(item.score)} ${scoreWord}` }));
  if (item.extra && item.extra.price) meta.append(element("span", { className: "price", textContent: item.extra.price }));
  const counts = [item.photos > 1 ? `${item.photos} photos` : "", item.variants > 1 ? `${item.variants} variants` : ""];
  if (counts.some(Boolean)) meta.append(element("span", { className: "counts", textContent: counts.filter(Boolean).join(", ") }));
  const actions = element("div", { className: "card-actions" });
  // The product's page: `link` from a product feed, else `url` from a products.csv.
  const page = item.extra && (item.extra.link || item.extra.url);
  const href = page ? productLink(page) : null;
  if (href) {
    actions.append(element("a", { className: "product-link", href, target: "_blank", rel: "noopener noreferrer" },
      "View product",
      element("span", { className: "visually-hidden", textContent: `: ${item.name} (opens in a new tab)` })));
  }
  const more = element("button", { type: "button", className: "button more" },
    "More like this", element("span", { className: "visually-hidden", textContent: `: ${item.name}` }));
  more.addEventListener("click", () => moreLikeThis(item));
  actions.append(more);
  const body = element("div", { className: "card-body" },
    element("h3", { className: "name", textContent: item.name }), meta, actions);
  if (queryId !== null) body.append(markButtons(item, queryId));
  const card = element("li", { className: "card" }, image, body);
  card.dataset.id = item.id;
  return card;
}

function renderResults(title, items, noMatch = "", queryId = null, scoreWord = "similar") {
  const markable = queryId !== null;
  els.resultsTitle.textContent = title;
  els.results.replaceChildren(...items.map((item) => renderCard(item, queryId, scoreWord)));
  els.noMatch.textContent = noMatch;
  els.noMatch.hidden = !noMatch;
  els.refine.hidden = !markable;
  updateRefine();
  els.resultsSection.hidden = false;
}

async function moreLikeThis(item) {
  state.similarTo = item;
  const url = `/api/v1/items/${encodeURIComponent(item.id)}/similar?${searchParams()}`;
  const body = await callApi(url, {}, `Finding products like ${item.name}…`, () => moreLikeThis(item));
  if (!body) return;
  renderResults(`More like ${item.name}`, body.results, noMatchText(body));
  els.back.hidden = !state.photoResult;
  showStatus(body.results.length ? `Found ${body.results.length} products like ${item.name}.` : noMatchText(body));
  els.resultsTitle.focus();
}

// ---- a region of the photo ------------------------------------------------------------------------------------

const clamp = (value, low = 0, high = 1) => Math.min(high, Math.max(low, value));

function setBox(box) {
  state.box = box;
  els.box.hidden = !box;
  els.regionClear.hidden = !box;
  els.regionStart.hidden = Boolean(box);
  if (!box) return;
  Object.assign(els.box.style, {
    left: `${box.x0 * 100}%`, top: `${box.y0 * 100}%`,
    width: `${(box.x1 - box.x0) * 100}%`, height: `${(box.y1 - box.y0) * 100}%`,
  });
  els.box.setAttribute("aria-valuetext",
    `from ${percent(box.x0)} to ${percent(box.x1)} across, ${percent(box.y0)} to ${percent(box.y1)} down`);
}

/** The pointer's place on the photo, as fractions of its width and height. */
function pointOnPhoto(event) {
  const rect = els.preview.getBoundingClientRect();
  return { x: clamp((event.clientX - rect.left) / rect.width), y: clamp((event.clientY - rect.top) / rect.height) };
}

/** `box` moved by (dx, dy), or its far corner moved when resizing, kept inside the photo and not below MIN_BOX. */
function shifted(box, dx, dy, resize) {
  if (resize) {
    return { ...box, x1: clamp(box.x1 + dx, box.x0 + MIN_BOX, 1), y1: clamp(box.y1 + dy, box.y0 + MIN_BOX, 1) };
  }
  const mx = clamp(dx, -box.x0, 1 - box.x1);
  const my = clamp(dy, -box.y0, 1 - box.y1);
  return { x0: box.x0 + mx, y0: box.y0 + my, x1: box.x1 + mx, y1: box.y1 + my };
}

let drag = null; // {mode: "draw" | "move" | "resize", start, box, moved}

els.region.addEventListener("pointerdown", (event) => {
  if (!state.photo || event.button > 0) return;
  event.preventDefault();
  const mode = event.target.classList.contains("box-handle") ? "resize" : els.box.contains(event.target) ? "move" : "draw";
  drag = { mode, start: pointOnPhoto(event), box: state.box, moved: false };
  els.region.setPointerCapture(event.pointerId);
});

els.region.addEventListener("pointermove", (event) => {
  if (!drag) return;
  const point = pointOnPhoto(event);
  const dx = point.x - drag.start.x;
  const dy = point.y - drag.start.y;
  if (!drag.moved && Math.abs(dx) < 0.01 && Math.abs(dy) < 0.01) return;
  drag.moved = true;
  if (drag.mode === "draw") {
    setBox({ x0: Math.min(point.x, drag.start.x), y0: Math.min(point.y, drag.start.y),
             x1: Math.max(point.x, drag.start.x), y1: Math.max(point.y, drag.start.y) });
  } else {
    setBox(shifted(drag.box, dx, dy, drag.mode === "resize"));
  }
});

function endDrag() {
  if (!drag) return;
  const { moved, box } = drag;
  drag = null;
  if (!moved) return;
  if (state.box.x1 - state.box.x0 < MIN_BOX || state.box.y1 - state.box.y0 < MIN_BOX) {
    setBox(box); // too small to mean anything: a slip, not a region
    return;
  }
  searchPhoto(state.category); // released: search the region
}
els.region.addEventListener("pointerup", endDrag);
els.region.addEventListener("pointercancel", endDrag);

let keySettle = null;
const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
els.box.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    event.preventDefault();
    clearRegion();
    return;
  }
  const arrow = ARROWS[event.key];
  if (!arrow || !state.box) return;
  event.preventDefault();
  clearTimeout(keySettle);
  setBox(shifted(state.box, arrow[0] * KEY_STEP, arrow[1] * KEY_STEP, event.shiftKey));
});
els.box.addEventListener("keyup", (event) => {
  if (!ARROWS[event.key]) return;
  clearTimeout(keySettle);
  keySettle = setTimeout(() => searchPhoto(state.category), KEY_SETTLE_MS); // released: search the region
});

function clearRegion() {
  if (!state.box) return;
  setBox(null);
  els.regionStart.focus();
  searchPhoto(state.category);
}

els.regionStart.addEventListener("click", () => {
  setBox({ x0: 0.2, y0: 0.2, x1: 0.8, y1: 0.8 });
  els.box.focus();
  searchPhoto(state.category);
});
els.regionClear.addEventListener("click", clearRegion);

// ---- filters on the catalogue's columns -----------------------------------------------------------------------

/** The `where` expressions the filter controls say, e.g. ["price>=100", "in_stock=yes"]. */
function filterExpressions() {
  const expressions = [];
  for (const control of els.filterFields.querySelectorAll("[data-column]")) {
    const value = control.type === "checkbox" ? (control.checked ? control.dataset.value : "") : control.value.trim();
    if (value !== "") expressions.push(`${control.dataset.column}${control.dataset.op}${value}`);
  }
  return expressions;
}

function filterControl(tag, column, op, props, text) {
  const control = element(tag, { id: `filter-${column.name}-${op === ">=" ? "min" : op === "<=" ? "max" : "is"}`, ...props });
  control.dataset.column = column.name;
  control.dataset.op = op;
  control.addEventListener("change", searchAgain);
  return element("label", {}, element("span", { textContent: text }), control);
}

function renderFilters(columns) {
  const fields = [];
  for (const column of columns) {
    const name = label(column.name);
    if (column.kind === "number") {
      const range = { type: "number", step: "any", inputMode: "decimal", min: String(column.min), max: String(column.max) };
      fields.push(element("fieldset", {}, element("legend", { textContent: name }),
        filterControl("input", column, ">=", { ...range, placeholder: String(column.min) }, "From"),
        filterControl("input", column, "<=", { ...range, placeholder: String(column.max) }, "To")));
    } else if (column.values.length === 2 && column.values.includes("yes")) {
      const toggle = filterControl("input", column, "=", { type: "checkbox" }, `Only ${name}`);
      toggle.querySelector("input").dataset.value = "yes";
      toggle.classList.add("toggle");
      fields.push(toggle);
    } else if (column.values.length > 1 && (column.distinct || 0) <= MAX_TEXT_CHOICES) {
      const select = filterControl("select", column, "=", {}, name);
      select.querySelector("select").append(element("option", { value: "", textContent: "Any" }),
        ...column.values.map((value) => element("option", { value, textContent: value })));
      fields.push(select);
    }
  }
  els.filterFields.replaceChildren(...fields);
  els.filters.hidden = fields.length === 0;
}

// ---- the catalogue --------------------------------------------------------------------------------------------

function showNotice(kind, title, ...lines) {
  els.notice.replaceChildren(element("h2", { textContent: title }), ...lines.map((line) => element("p", {}, ...line)));
  els.notice.hidden = false;
  state.notice = kind;
}

function hideNotice() {
  els.notice.hidden = true;
  state.notice = null;
}

async function loadCatalog() {
  let info;
  try {
    const response = await fetch("/api/v1/catalog");
    info = await response.json();
    if (!response.ok) throw new Error(`status ${response.status}`);
  } catch (err) {
    showNotice("unavailable", "Search is unavailable right now",
      ["Lookalike cannot be reached. Please try again shortly."]);
    return;
  }
  els.banner.hidden = info.weights !== "random";
  if (info.max_upload_bytes) state.maxUploadBytes = info.max_upload_bytes;
  const counts = Object.values(info.categories);
  const total = counts.reduce((a, b) => a + b, 0);
  els.summary.textContent = total ? `Searching ${total} photos in ${counts.length} categories.` : "";
  renderFilters(info.filters || []);  // FILTER_COLUMNS: the shopper-facing columns, not license or source
  if (info.state === "empty") {
    showNotice("empty", "This store has no products to search yet",
      ["To add them, put product photos in ", element("code", { textContent: "reference_images/<category>/" }),
       ", one folder per category (for example ", element("code", { textContent: "reference_images/chair/" }),
       "), then run ", element("code", { textContent: "make index" }), "."],
      ["The page works as soon as the index is built; no restart needed."]);
  } else if (info.state === "unavailable") {
    showNotice("unavailable", "Search is unavailable right now",
      [`${info.reason ? `Reason: ${info.reason}. ` : ""}Please try again shortly.`]);
  }
}

// ---- wiring -----------------------------------------------------------------------------------------------------

for (const input of els.inputs) {
  input.addEventListener("change", () => {
    const file = input.files[0];
    input.value = ""; // choosing the same photo again must search again
    acceptFile(file);
  });
}

els.dropzone.addEventListener("submit", (event) => event.preventDefault()); // a photo searches as soon as it is chosen
els.wordsForm.addEventListener("submit", (event) => {
  event.preventDefault();
  state.words = els.words.value.trim();
  showWordsChip();
  search();
});
els.wordsChip.addEventListener("click", () => {
  state.words = "";
  els.words.value = "";
  showWordsChip();
  search();
  els.words.focus();
});
els.retry.addEventListener("click", () => state.retry && state.retry());
els.refineButton.addEventListener("click", () => {
  if (state.photo && state.photoResult) searchPhoto(state.photoResult.chosen, true);
  else if (state.words) searchWords(true);
});
els.back.addEventListener("click", () => {
  showPhotoResult();
  els.resultsTitle.focus();
});

function firstFile(transfer) {
  const files = Array.from((transfer && transfer.files) || []);
  return files.find((f) => f.type.startsWith("image/")) || files[0] || null;
}

// The whole page takes a dropped photo: a near miss must not make the browser open the file instead.
document.addEventListener("dragover", (event) => {
  if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
  els.dropzone.classList.add("dragging");
});
document.addEventListener("dragleave", (event) => {
  if (event.relatedTarget === null) els.dropzone.classList.remove("dragging");
});
document.addEventListener("drop", (event) => {
  els.dropzone.classList.remove("dragging");
  const file = firstFile(event.dataTransfer);
  if (!file) return;
  event.preventDefault();
  acceptFile(file);
});
document.addEventListener("paste", (event) => {
  const file = firstFile(event.clipboardData);
  if (!file) return;
  event.preventDefault();
  acceptFile(file);
});

showPrompt(false);
loadCatalog();

// A click on a result (its product link, or "More like this") is reported to the store's analytics, as a beacon.
els.results.addEventListener("click", (event) => {
  const card = event.target.closest("a.product-link, button.more") && event.target.closest(".card");
  if (!card || !els.results.dataset.queryId || !navigator.sendBeacon) return;
  const position = [...els.results.children].indexOf(card) + 1;
  const click = { type: "click", query_id: els.results.dataset.queryId, product: card.dataset.id, position };
  navigator.sendBeacon("/api/v1/events", new Blob([JSON.stringify(click)], { type: "text/plain" }));
});

// Lookalike's page: a photo in (picked, dropped, pasted or taken), the decided category and similar products out.
"use strict";

const RESULTS = 12;
// Phone photos are 12+ megapixels; the model looks at 224 px. Keep enough for a sharp preview and fast uploads.
const MAX_LONG_SIDE = 1280;
const JPEG_QUALITY = 0.9;

const $ = (id) => document.getElementById(id);
const els = {
  banner: $("weights-banner"), notice: $("notice"), dropzone: $("dropzone"), dropzoneTitle: $("dropzone-title"),
  dropzoneHint: $("dropzone-hint"), preview: $("preview"), inputs: [$("photo"), $("camera")],
  status: $("status"), retry: $("retry"),
  decision: $("decision"), decisionTitle: $("decision-title"), decisionNote: $("decision-note"), chips: $("chips"),
  resultsSection: $("results-section"), resultsTitle: $("results-title"), results: $("results"), back: $("back"),
  summary: $("catalog-summary"),
};

const state = {
  maxUploadBytes: 20_000_000,
  photo: null,        // the (downscaled) upload, kept in memory to re-send when a chip is chosen
  previewUrl: null,
  photoResult: null,  // the last answer for the photo, to come back to after "more like this"
  retry: null,        // what "Try again" repeats
  notice: null,       // "empty" or "unavailable" while the notice shows
  requestId: 0,       // answers to superseded requests are dropped
};

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

/** Fetch JSON; on failure show the server's own message and return null. */
async function callApi(url, options, busyText, retry) {
  const id = ++state.requestId;
  setBusy(true, busyText);
  try {
    let response;
    try {
      response = await fetch(url, options);
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
      const message = body && body.error ? body.error.message : fallbackMessage(response.status);
      showError(message, response.status >= 500 ? retry : null);
      return null;
    }
    if (state.notice === "unavailable") hideNotice(); // it answered, so it is back
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
  els.preview.hidden = !state.previewUrl;
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
  state.photoResult = null;
  els.decision.hidden = true;
  els.resultsSection.hidden = true;
  showPreview(upload);
  await searchPhoto(null);
}

// ---- searching ------------------------------------------------------------------------------------------------

async function searchPhoto(category) {
  const data = new FormData();
  data.append("image", state.photo, state.photo.name || "photo.jpg");
  const params = new URLSearchParams({ k: String(RESULTS) });
  if (category) params.set("category", category);
  const busyText = category ? `Searching ${label(category)} products…` : "Searching for similar products…";
  const body = await callApi(`/api/v1/search?${params}`, { method: "POST", body: data }, busyText,
    () => searchPhoto(category));
  if (!body) return;
  state.photoResult = { body, chosen: category };
  showPhotoResult();
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
  renderResults("Similar products", body.results);
  showStatus(body.results.length ? `Found ${body.results.length} similar products.` : "No products in this category yet.");
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

function renderCard(item) {
  const image = element("img", { src: item.image_url, alt: item.name, loading: "lazy", width: 400, height: 400 });
  const meta = element("p", { className: "meta" },
    element("span", { className: "score", textContent: `${percent(item.score)} similar` }));
  if (item.extra && item.extra.price) meta.append(element("span", { className: "price", textContent: item.extra.price }));
  const actions = element("div", { className: "card-actions" });
  const href = item.extra && item.extra.url ? productLink(item.extra.url) : null;
  if (href) {
    actions.append(element("a", { className: "product-link", href, target: "_blank", rel: "noopener noreferrer" },
      "View product",
      element("span", { className: "visually-hidden", textContent: `: ${item.name} (opens in a new tab)` })));
  }
  const more = element("button", { type: "button", className: "button more" },
    "More like this", element("span", { className: "visually-hidden", textContent: `: ${item.name}` }));
  more.addEventListener("click", () => moreLikeThis(item));
  actions.append(more);
  return element("li", { className: "card" }, image,
    element("div", { className: "card-body" },
      element("h3", { className: "name", textContent: item.name }), meta, actions));
}

function renderResults(title, items) {
  els.resultsTitle.textContent = title;
  els.results.replaceChildren(...items.map(renderCard));
  els.resultsSection.hidden = false;
}

async function moreLikeThis(item) {
  const url = `/api/v1/items/${encodeURIComponent(item.id)}/similar?k=${RESULTS}`;
  const body = await callApi(url, {}, `Finding products like ${item.name}…`, () => moreLikeThis(item));
  if (!body) return;
  renderResults(`More like ${item.name}`, body.results);
  els.back.hidden = !state.photoResult;
  showStatus(`Found ${body.results.length} products like ${item.name}.`);
  els.resultsTitle.focus();
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
  els.summary.textContent = total ? `Searching ${total} products in ${counts.length} categories.` : "";
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
els.retry.addEventListener("click", () => state.retry && state.retry());
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

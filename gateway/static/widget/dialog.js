// The <lookalike-search> dialog, loaded on its first open: a photo in (chosen, taken, dropped or pasted), the decided
// category with the others as chips, optional words, and the store's products out, each a link to its page.

const RESULTS = 12;
// Phone photos are 12+ megapixels; the model looks at 224 px. As the gateway's own page does (gateway/static/app.js).
const MAX_LONG_SIDE = 1280;
const JPEG_QUALITY = 0.9;
const NOT_ON_THIS_SITE = "Photo search is not available on this site.";
const UNAVAILABLE = "Photo search is unavailable right now. Please try again in a moment.";

const STYLE = `
dialog { box-sizing: border-box; width: min(760px, calc(100vw - 2rem)); max-width: none;
  max-height: calc(100vh - 2rem); margin: auto; padding: 0; overflow: auto; border: 0;
  border-radius: var(--lookalike-radius, 8px); background: var(--lookalike-background, #fff);
  color: var(--lookalike-text, #1d1d1f); font-family: var(--lookalike-font, system-ui, sans-serif);
  line-height: 1.4; box-shadow: 0 12px 40px rgb(0 0 0 / .3); }
dialog::backdrop { background: rgb(0 0 0 / .5); }
*, *::before, *::after { box-sizing: border-box; }
.inner { display: grid; gap: .75rem; padding: 1rem; min-width: 0; }
.head { display: flex; align-items: center; justify-content: space-between; gap: 1rem; }
h2 { margin: 0; font-size: 1.25rem; }
h3 { margin: 0; font-size: 1rem; }
button, input { font: inherit; color: inherit; }
button { min-height: 44px; padding: .5em 1em; border: 1px solid var(--lookalike-border, #767676);
  border-radius: var(--lookalike-radius, 8px); background: var(--lookalike-background, #fff); cursor: pointer; }
button:focus-visible, input:focus-visible, a:focus-visible {
  outline: 3px solid var(--lookalike-focus, #e8a200); outline-offset: 2px; }
.primary { border-color: transparent; background: var(--lookalike-accent, #0b57d0);
  color: var(--lookalike-accent-text, #fff); font-weight: 600; }
.close { min-width: 44px; padding: 0; font-size: 1.5rem; line-height: 1; }
.drop { display: grid; gap: .75rem; justify-items: center; padding: 1rem;
  border: 2px dashed var(--lookalike-border, #767676); border-radius: var(--lookalike-radius, 8px); text-align: center; }
.drop.dragging { border-color: var(--lookalike-accent, #0b57d0); }
.preview { max-width: 100%; max-height: 120px; border-radius: var(--lookalike-radius, 8px); }
.pick { display: flex; flex-wrap: wrap; gap: .5rem; justify-content: center; }
p { margin: 0; }
.muted { color: var(--lookalike-muted, #595959); }
.status:empty { display: none; }
.status.error { color: var(--lookalike-error, #b3261e); font-weight: 600; }
.chips { display: flex; flex-wrap: wrap; gap: .5rem; }
.chips button { border-radius: 999px; min-height: 36px; padding: .25em .9em; }
.chips button[aria-pressed="true"] { background: var(--lookalike-accent, #0b57d0);
  color: var(--lookalike-accent-text, #fff); border-color: transparent; }
form { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; }
label { display: grid; gap: .25rem; flex: 1 1 12rem; min-width: 0; }
input[type="search"] { width: 100%; min-height: 44px; padding: .5em .75em;
  border: 1px solid var(--lookalike-border, #767676); border-radius: var(--lookalike-radius, 8px);
  background: var(--lookalike-background, #fff); }
.results { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 1rem;
  margin: 0; padding: 0; list-style: none; }
.result { display: grid; gap: .25rem; align-content: start; min-width: 0; color: inherit; text-decoration: none; }
a.result:hover .name { text-decoration: underline; }
.result img { width: 100%; height: auto; aspect-ratio: 1; object-fit: cover; border-radius: var(--lookalike-radius, 8px);
  background: var(--lookalike-muted-background, #f2f2f2); }
.name { font-weight: 600; overflow-wrap: anywhere; }
.price { color: var(--lookalike-text, #1d1d1f); }
.result button { justify-self: start; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }
[hidden] { display: none !important; }
@media (max-width: 520px) {
  dialog { width: 100vw; max-height: 100%; height: 100%; border-radius: 0; }
  .results { grid-template-columns: repeat(2, minmax(0, 1fr)); gap: .75rem; }
}
`;

/** An error whose message is for the shopper. */
class ShopperError extends Error {}

function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name in node && !name.includes("-") && name !== "part" && name !== "role") node[name] = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function label(category) {
  return category.replace(/[-_]+/g, " ");
}

function megabytes(bytes) {
  return `${(bytes / 1_000_000).toFixed(bytes < 10_000_000 ? 1 : 0)} MB`;
}

/** The product's page: the `link` column (a product feed's), else `url` (a products.csv's); only http(s). */
export function productPage(extra) {
  const address = extra && (extra.link || extra.url);
  if (!address) return null;
  try {
    const parsed = new URL(address);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch (err) {
    return null;
  }
}

/** The price in the product's currency when the catalogue names one (a feed does), else as the catalogue has it. */
function priceText(extra) {
  const price = extra && extra.price ? String(extra.price).trim() : "";
  const amount = Number(price);
  if (price && extra.currency && Number.isFinite(amount)) {
    try {
      return new Intl.NumberFormat(document.documentElement.lang || undefined,
        { style: "currency", currency: extra.currency }).format(amount);
    } catch (err) {
      return `${price} ${extra.currency}`; // a currency code Intl does not know
    }
  }
  return price;
}

function fallbackMessage(status) {
  if (status === 413) return "That photo is too large. Please choose a smaller one.";
  if (status === 503) return UNAVAILABLE;
  return `Something went wrong (error ${status}). Please try again.`;
}

/**
 * What to upload: the photo itself when it is small, else a JPEG at most MAX_LONG_SIDE px long, drawn upright
 * (createImageBitmap applies the EXIF orientation). A file the browser cannot decode goes as it is: the server
 * reads more formats, and explains when it cannot.
 */
async function prepareUpload(file, maxUploadBytes) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (err) {
    if (file.size > maxUploadBytes) {
      throw new ShopperError(`This file is ${megabytes(file.size)}; the largest photo we accept is ${megabytes(maxUploadBytes)}.`);
    }
    return { blob: file, previewable: false };
  }
  try {
    const longSide = Math.max(bitmap.width, bitmap.height);
    if (longSide <= MAX_LONG_SIDE && file.size <= maxUploadBytes) return { blob: file, previewable: true };
    const scale = Math.min(1, MAX_LONG_SIDE / longSide);
    const canvas = h("canvas", {
      width: Math.max(1, Math.round(bitmap.width * scale)), height: Math.max(1, Math.round(bitmap.height * scale)),
    });
    const context = canvas.getContext("2d");
    context.imageSmoothingQuality = "high";
    context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const jpeg = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
    if (!jpeg) throw new ShopperError("Your browser could not prepare this photo. Please try another one.");
    return { blob: new File([jpeg], "photo.jpg", { type: "image/jpeg" }), previewable: true };
  } finally {
    bitmap.close();
  }
}

function firstFile(transfer) {
  const files = Array.from((transfer && transfer.files) || []);
  return files.find((f) => f.type.startsWith("image/")) || files[0] || null;
}

/** The dialog for one <lookalike-search> element: `root` is its shadow root, `opener` its button. */
export function createDialog(host, root, opener, gateway) {
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(STYLE);
  root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
  const touch = window.matchMedia("(pointer: coarse)").matches;
  const k = Math.min(50, Math.max(1, Number.parseInt(host.getAttribute("k"), 10) || RESULTS));
  const state = {
    catalog: null, maxUploadBytes: 20_000_000, photo: null, handle: null, category: host.getAttribute("category") || null,
    words: "", requestId: 0, previewUrl: null, lastPhotoAnswer: null,
  };

  // ---- the dialog's parts -------------------------------------------------------------------------------------
  const fileInput = h("input", { type: "file", accept: "image/*", hidden: true, tabIndex: -1 });
  const cameraInput = h("input", { type: "file", accept: "image/*", capture: "environment", hidden: true, tabIndex: -1 });
  const choose = h("button", { type: "button", className: "primary", part: "choose" }, "Choose a photo");
  const take = h("button", { type: "button", part: "take", hidden: !touch }, "Take a photo");
  const close = h("button", { type: "button", className: "close", part: "close", "aria-label": "Close" }, "\u00d7");
  const preview = h("img", { className: "preview", alt: "Your photo", hidden: true });
  const hint = h("p", { className: "muted", hidden: touch }, "Drop or paste a photo here, or");
  const drop = h("div", { className: "drop", part: "dropzone" }, preview, hint, h("div", { className: "pick" }, choose, take),
    fileInput, cameraInput);
  const note = h("p", { className: "muted", hidden: true });
  const status = h("p", { className: "status", part: "status", role: "status" });
  const decided = h("p", { className: "decided" });
  const chips = h("div", { className: "chips", role: "group", "aria-label": "Search another category" });
  const decision = h("div", { className: "decision", hidden: true }, decided, chips);
  const words = h("input", { type: "search", name: "q", part: "words", autocomplete: "off", enterKeyHint: "search",
    placeholder: host.getAttribute("placeholder") || "e.g. oak, velvet, round" });
  const form = h("form", { role: "search", "aria-label": "Narrow by words" },
    h("label", {}, h("span", {}, "Words (optional)"), words),
    h("button", { type: "submit", part: "search" }, "Search"));
  const resultsTitle = h("h3", { tabIndex: -1, hidden: true });
  const back = h("button", { type: "button", hidden: true }, "Back to your photo\u2019s matches");
  const results = h("ul", { className: "results", part: "results" });
  // Focus starts on the title: a control there could be pressed by the very keystroke that opened the dialog.
  const title = h("h2", { id: "lookalike-title", tabIndex: -1 }, "Search by photo");
  const dialog = h("dialog", { part: "dialog", "aria-labelledby": "lookalike-title", "aria-modal": "true" },
    h("div", { className: "inner" }, h("div", { className: "head" }, title, close), note, drop, status, decision,
      form, resultsTitle, back, results));
  root.append(dialog);

  // ---- talking to the gateway ---------------------------------------------------------------------------------
  const api = (path) => new URL(path, gateway);

  /** Why the gateway could not be read: reachable but silent toward this page means the site is not allowed. */
  async function unreachable() {
    try {
      const probe = await fetch(api("widget.js"), { cache: "no-cache", credentials: "omit" });
      return probe.ok ? NOT_ON_THIS_SITE : UNAVAILABLE;
    } catch (err) {
      return UNAVAILABLE;
    }
  }

  /** JSON from the gateway, or a ShopperError saying what went wrong. No cookie is sent or set. */
  async function call(path, options = {}, recover = null) {
    let response;
    try {
      response = await fetch(api(path), { ...options, credentials: "omit" });
    } catch (err) {
      throw new ShopperError(await unreachable());
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null; // not JSON, e.g. a proxy's error page: the status speaks instead
    }
    if (!response.ok) {
      const code = body && body.error ? body.error.code : "";
      if (recover && response.status === 410 && code === "photo_expired") return recover();
      throw new ShopperError(body && body.error ? body.error.message : fallbackMessage(response.status));
    }
    return body;
  }

  function showStatus(text, error = false) {
    status.textContent = text;
    status.className = error ? "status error" : "status";
  }

  /** Run one search: a newer one makes this one's answer moot; an error is shown, never a spinner left turning. */
  async function run(busyText, work) {
    const id = ++state.requestId;
    showStatus(busyText);
    results.setAttribute("aria-busy", "true");
    try {
      const answer = await work();
      if (id === state.requestId) showStatus(answer);
    } catch (err) {
      if (!(err instanceof ShopperError)) throw err;
      if (id === state.requestId) showStatus(err.message, true);
    } finally {
      if (id === state.requestId) results.removeAttribute("aria-busy");
    }
    return id === state.requestId;
  }

  async function loadCatalog() {
    state.catalog = await call("api/v1/catalog");
    if (state.catalog.max_upload_bytes) state.maxUploadBytes = state.catalog.max_upload_bytes;
    if (state.catalog.weights === "random") {
      note.textContent = "Demo: this search runs an untrained model, so its results are random.";
      note.hidden = false;
    }
    if (state.catalog.state !== "ready") throw new ShopperError(UNAVAILABLE);
  }

  // ---- results --------------------------------------------------------------------------------------------------

  /** Tell the gateway which result was clicked (other parts of Lookalike count them); never holds the click up. */
  function sendClick(queryId, item, position) {
    if (!queryId || typeof navigator.sendBeacon !== "function") return;
    try {
      const json = JSON.stringify({ type: "click", query_id: queryId, product: item.id, position });
      navigator.sendBeacon(api("api/v1/events"), new Blob([json], { type: "text/plain" }));
    } catch (err) {
      // analytics must never break the shopper's click
    }
  }

  function renderCard(item, position, queryId) {
    const image = h("img", { src: api(item.image_url).href, alt: "", loading: "lazy", width: 300, height: 300,
      part: "result-image" });
    const price = priceText(item.extra);
    const parts = [image, h("span", { className: "name", part: "result-name" }, item.name)];
    if (price) parts.push(h("span", { className: "price", part: "result-price" }, price));
    const page = productPage(item.extra);
    if (page) {
      const link = h("a", { className: "result", part: "result", href: page }, ...parts);
      link.addEventListener("click", () => sendClick(queryId, item, position));
      return h("li", {}, link);
    }
    const more = h("button", { type: "button", part: "more" }, "More like this",
      h("span", { className: "visually-hidden" }, `: ${item.name}`));
    more.addEventListener("click", () => moreLikeThis(item));
    return h("li", {}, h("div", { className: "result", part: "result" }, ...parts, more));
  }

  function renderResults(heading, body) {
    resultsTitle.textContent = heading;
    resultsTitle.hidden = false;
    results.replaceChildren(...body.results.map((item, n) => renderCard(item, n + 1, body.query_id)));
  }

  function renderDecision(body) {
    decided.textContent = `Looks like ${/^[aeiou]/i.test(label(body.category)) ? "an" : "a"} ${label(body.category)}`;
    const hadFocus = chips.contains(root.activeElement);
    const ordered = Object.entries(body.probabilities).sort((a, b) => b[1] - a[1]);
    chips.replaceChildren(...ordered.map(([category]) => {
      const chip = h("button", { type: "button", part: "chip", "aria-pressed": String(category === body.category) },
        label(category));
      chip.addEventListener("click", () => {
        if (category !== body.category || !back.hidden) searchPhoto(category);
      });
      return chip;
    }));
    decision.hidden = false;
    if (hadFocus) chips.querySelector('[aria-pressed="true"]').focus();
  }

  function showPhotoAnswer(body) {
    back.hidden = true;
    renderDecision(body);
    renderResults(body.q ? `Similar products matching \u201c${body.q}\u201d` : "Similar products", body);
  }

  /** The photo's search: uploaded the first time, then steered through its handle, with no second upload. */
  async function searchPhoto(category) {
    if (!state.photo) return;
    state.category = category;
    const photo = state.photo;
    const params = new URLSearchParams({ k: String(k) });
    if (category) params.set("category", category);
    if (state.words) params.set("q", state.words);
    const upload = () => {
      const data = new FormData();
      data.append("image", photo, photo.name || "photo.jpg");
      return call(`api/v1/search?${params}`, { method: "POST", body: data });
    };
    await run(category ? `Searching ${label(category)} products\u2026` : "Searching for similar products\u2026", async () => {
      let body;
      if (state.handle) {
        const steered = new URLSearchParams(params);
        steered.set("photo", state.handle);
        body = await call(`api/v1/search?${steered}`, { method: "POST" }, upload);
      } else {
        body = await upload();
      }
      if (photo !== state.photo) return "";
      state.handle = body.photo || null;
      state.lastPhotoAnswer = body;
      showPhotoAnswer(body);
      return body.results.length ? `Found ${body.results.length} similar products.` : "No similar products found.";
    });
  }

  async function searchWords() {
    const params = new URLSearchParams({ q: state.words, k: String(k) });
    await run("Searching\u2026", async () => {
      const body = await call(`api/v1/search/text?${params}`);
      decision.hidden = true;
      back.hidden = true;
      renderResults(`Products matching \u201c${body.q}\u201d`, body);
      return body.results.length ? `Found ${body.results.length} products.` : `No products match \u201c${body.q}\u201d.`;
    });
  }

  async function moreLikeThis(item) {
    const done = await run(`Finding products like ${item.name}\u2026`, async () => {
      const body = await call(`api/v1/items/${encodeURIComponent(item.id)}/similar?k=${k}`);
      renderResults(`More like ${item.name}`, body);
      back.hidden = !state.lastPhotoAnswer;
      return `Found ${body.results.length} products like ${item.name}.`;
    });
    if (done) resultsTitle.focus();
  }

  async function acceptFile(file) {
    if (!file) return;
    state.requestId += 1; // an answer still on its way is for the previous photo
    let upload;
    try {
      if (!state.catalog) await loadCatalog();
      upload = await prepareUpload(file, state.maxUploadBytes);
    } catch (err) {
      if (!(err instanceof ShopperError)) throw err;
      showStatus(err.message, true);
      return;
    }
    state.photo = upload.blob;
    state.handle = null;
    state.lastPhotoAnswer = null;
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = upload.previewable ? URL.createObjectURL(upload.blob) : null;
    preview.hidden = !state.previewUrl;
    if (state.previewUrl) preview.src = state.previewUrl;
    choose.textContent = "Choose another photo";
    await searchPhoto(host.getAttribute("category") || null);
  }

  // ---- wiring ---------------------------------------------------------------------------------------------------
  for (const input of [fileInput, cameraInput]) {
    input.addEventListener("change", () => {
      const file = input.files[0];
      input.value = ""; // the same photo chosen again searches again
      acceptFile(file);
    });
  }
  choose.addEventListener("click", () => fileInput.click());
  take.addEventListener("click", () => cameraInput.click());
  close.addEventListener("click", () => dialog.close());
  back.addEventListener("click", () => {
    showPhotoAnswer(state.lastPhotoAnswer);
    resultsTitle.focus();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.words = words.value.trim();
    if (state.photo) searchPhoto(state.category);
    else if (state.words) searchWords();
  });
  dialog.addEventListener("dragover", (event) => {
    if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
    event.preventDefault();
    drop.classList.add("dragging");
  });
  dialog.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) drop.classList.remove("dragging");
  });
  dialog.addEventListener("drop", (event) => {
    drop.classList.remove("dragging");
    const file = firstFile(event.dataTransfer);
    if (!file) return;
    event.preventDefault();
    acceptFile(file);
  });
  dialog.addEventListener("paste", (event) => {
    const file = firstFile(event.clipboardData);
    if (!file) return;
    event.preventDefault();
    acceptFile(file);
  });
  // Focus stays inside: Tab from the last control goes to the first, Shift+Tab from the first to the last.
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    const focusable = [...dialog.querySelectorAll("button, a[href], input:not([type=file])")]
      .filter((e) => !e.disabled && e.getClientRects().length);
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (event.shiftKey && (root.activeElement === first || !focusable.includes(root.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && root.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });
  dialog.addEventListener("close", () => opener.focus());

  return {
    open() {
      dialog.showModal();
      title.focus();
      if (!state.catalog) {
        run("", async () => {
          await loadCatalog();
          return "";
        });
      }
    },
  };
}

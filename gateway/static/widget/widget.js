// <lookalike-search>: photo search inside a store's own pages, with one script tag (docs/widget.md).
// This module draws the button only; the dialog's code loads on the first open. No framework, no eval, no inline
// styles: the styles go in through constructable stylesheets, so a strict Content-Security-Policy is enough.

// The gateway that served this file: the store configures nothing else.
const GATEWAY = new URL("./", import.meta.url);
// Served as the dialog's content-hashed name (gateway/widget_assets.py), cached for a year.
const DIALOG = "./widget/dialog.js";

const STYLE = `
:host { all: initial; display: inline-block; font-family: var(--lookalike-font, system-ui, sans-serif);
  color: var(--lookalike-text, #1d1d1f); line-height: 1.4; }
:host([hidden]) { display: none; }
.open { display: inline-flex; align-items: center; gap: .5em; min-height: 44px; padding: .5em 1em; border: 0;
  border-radius: var(--lookalike-radius, 8px); background: var(--lookalike-accent, #0b57d0);
  color: var(--lookalike-accent-text, #fff); font: inherit; font-weight: 600; cursor: pointer; }
.open:hover { filter: brightness(1.1); }
.open:focus-visible { outline: 3px solid var(--lookalike-focus, #e8a200); outline-offset: 2px; }
.open svg { width: 1.25em; height: 1.25em; flex: none; }
.message { display: block; margin-top: .25em; color: var(--lookalike-error, #b3261e); }
`;

let sheet = null;

function buttonSheet() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLE);
  }
  return sheet;
}

/** A camera outline, built node by node (no HTML parsing, so pages that require Trusted Types accept it too). */
function cameraIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const [tag, attributes] of [
    ["path", { d: "M4 7h3l2-3h6l2 3h3a1 1 0 0 1 1 1v11a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V8a1 1 0 0 1 1-1z" }],
    ["circle", { cx: "12", cy: "13", r: "4" }],
  ]) {
    const shape = document.createElementNS(ns, tag);
    for (const [name, value] of Object.entries(attributes)) shape.setAttribute(name, value);
    shape.setAttribute("fill", "none");
    shape.setAttribute("stroke", "currentColor");
    shape.setAttribute("stroke-width", "2");
    svg.append(shape);
  }
  return svg;
}

class LookalikeSearch extends HTMLElement {
  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.adoptedStyleSheets = [buttonSheet()];
    this.button = document.createElement("button");
    this.button.type = "button";
    this.button.className = "open";
    this.button.setAttribute("part", "button");
    this.button.setAttribute("aria-haspopup", "dialog");
    this.button.append(cameraIcon(), "Search by photo");
    this.button.addEventListener("click", () => this.open());
    this.message = document.createElement("span");
    this.message.className = "message";
    this.message.setAttribute("part", "message");
    this.message.setAttribute("role", "status");
    root.append(this.button, this.message);
    this.dialog = null;
  }

  /** Open the dialog, loading its code the first time. */
  async open() {
    if (!this.dialog) {
      this.button.setAttribute("aria-busy", "true");
      try {
        const { createDialog } = await import(DIALOG);
        this.dialog = createDialog(this, this.shadowRoot, this.button, GATEWAY);
      } catch (err) {
        this.message.textContent = "Photo search is unavailable right now. Please try again later.";
        return;
      } finally {
        this.button.removeAttribute("aria-busy");
      }
    }
    this.message.textContent = "";
    this.dialog.open();
  }
}

if (!customElements.get("lookalike-search")) customElements.define("lookalike-search", LookalikeSearch);

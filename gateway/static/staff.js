// The staff page: asks for the operator token once (kept in sessionStorage, for this tab only), then draws
// each panel from its JSON endpoint under /api/v1/staff/. Charts are SVG drawn here; every table has a CSV link.
"use strict";

(() => {
  const TOKEN_KEY = "lookalike-staff-token";
  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = ["#0b57d0", "#b3261e", "#146c2e", "#7c4dff", "#8a5300", "#00696f"];
  const $ = (id) => document.getElementById(id);

  const percent = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`);
  const number = (x, digits = 0) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
  const when = (iso) => new Date(iso).toISOString().slice(0, 16).replace("T", " ");

  function showTokenForm(message) {
    $("reports").hidden = true;
    $("token-form").hidden = false;
    $("token-error").hidden = !message;
    $("token-error").textContent = message || "";
    $("token").focus();
  }

  async function staff(report) {
    const days = $("days").value;
    const response = await fetch(`/api/v1/staff/${report}?days=${days}`, {
      headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` },
    });
    if (response.status === 401) {
      const error = new Error("That token was not accepted: enter the gateway's LOOKALIKE_ADMIN_TOKEN.");
      error.unauthorized = true;
      throw error;
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    return body;
  }

  function element(tag, attributes = {}, text = "") {
    const made = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
    if (text) made.textContent = text;
    return made;
  }

  function csvCell(value) {
    const text = value === null || value === undefined ? "" : String(value);
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }

  // A table of `rows` (arrays of cells) under `columns` ([label, numeric?]), with a CSV download of the same.
  function table(containerId, caption, columns, rows, fileName) {
    const container = $(containerId);
    container.replaceChildren();
    const tools = element("div", { class: "table-tools" });
    if (!rows.length) {
      container.append(element("p", { class: "empty" }, `${caption}: none.`));
      return;
    }
    const csv = [columns.map(([label]) => csvCell(label)).join(","),
      ...rows.map((row) => row.map(csvCell).join(","))].join("\r\n") + "\r\n";
    const link = element("a", { class: "button small", download: `${fileName}.csv`,
      href: URL.createObjectURL(new Blob([csv], { type: "text/csv" })) }, "Download CSV");
    link.setAttribute("aria-label", `Download "${caption}" as CSV`);
    tools.append(element("span", {}, `${rows.length} row${rows.length === 1 ? "" : "s"}`), link);
    const grid = element("table", { class: "data-table" });
    grid.append(element("caption", {}, caption));
    const head = element("tr");
    for (const [label] of columns) head.append(element("th", { scope: "col" }, label));
    const thead = element("thead");
    thead.append(head);
    grid.append(thead);
    const body = element("tbody");
    for (const row of rows) {
      const line = element("tr");
      row.forEach((cell, i) => line.append(element("td", columns[i][1] ? { class: "number" } : {},
        cell === null || cell === undefined ? "–" : String(cell))));
      body.append(line);
    }
    grid.append(body);
    container.append(grid, tools);
  }

  function svg(tag, attributes = {}, text = "") {
    const made = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
    if (text) made.textContent = text;
    return made;
  }

  // Stacked bars: `labels` along the x axis, one series per entry of `series` ({name: values}).
  function barChart(containerId, title, labels, series) {
    const container = $(containerId);
    container.replaceChildren();
    if (!labels.length) return;
    const width = 640, height = 220, left = 44, bottom = 36, top = 10;
    const names = Object.keys(series);
    const totals = labels.map((_, i) => names.reduce((sum, name) => sum + series[name][i], 0));
    const most = Math.max(1, ...totals);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
    chart.append(svg("title", {}, title));
    const step = (width - left - 8) / labels.length;
    const scale = (height - bottom - top) / most;
    chart.append(svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width - 4, y2: height - bottom }));
    chart.append(svg("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, number(most, most < 10 ? 1 : 0)));
    chart.append(svg("text", { x: left - 6, y: height - bottom, "text-anchor": "end" }, "0"));
    labels.forEach((label, i) => {
      let y = height - bottom;
      names.forEach((name, n) => {
        const h = series[name][i] * scale;
        if (h > 0) {
          y -= h;
          const barWidth = Math.max(1, Math.min(step * 0.7, 48));
          const bar = svg("rect", { x: left + i * step + (step - barWidth) / 2, y, width: barWidth, height: h,
            fill: COLOURS[n % COLOURS.length] });
          bar.append(svg("title", {}, `${label}, ${name}: ${number(series[name][i], 1)}`));
          chart.append(bar);
        }
      });
      if (labels.length <= 12 || i % Math.ceil(labels.length / 12) === 0) {
        chart.append(svg("text", { x: left + i * step + step / 2, y: height - bottom + 14, "text-anchor": "middle" },
          label));
      }
    });
    const legend = element("div", { class: "legend", "aria-hidden": "true" });
    names.forEach((name, n) => {
      const key = element("span", {}, name);
      key.style.setProperty("--swatch", COLOURS[n % COLOURS.length]);
      legend.append(key);
    });
    container.append(chart, legend);
  }

  function drawOverview(o) {
    const figures = [["Searches", o.searches], ["Sessions (per day)", o.sessions],
      ["No result", percent(o.no_result_share)], ["Click-through", percent(o.click_through_rate)],
      ["Mean click position", number(o.mean_click_position, 1)], ["Added to cart", o.add_to_cart],
      ["Purchases", o.purchases], ["Conversion", percent(o.conversion_rate)]];
    $("figures").replaceChildren(...figures.map(([label, value]) => {
      const box = element("div");
      box.append(element("dt", {}, label), element("dd", {}, String(value)));
      return box;
    }));
    const days = [...new Set(o.per_day.map((r) => r.day))].sort();
    const kinds = [...new Set(o.per_day.map((r) => r.kind))].sort();
    const series = Object.fromEntries(kinds.map((kind) => [kind, days.map((day) =>
      (o.per_day.find((r) => r.day === day && r.kind === kind) || { searches: 0 }).searches)]));
    barChart("per-day-chart", "Searches per day, by kind", days.map((d) => d.slice(5)), series);
    table("per-day-table", "Searches per day, by kind", [["Day"], ["Kind"], ["Searches", true]],
      o.per_day.map((r) => [r.day, r.kind, r.searches]), "searches-per-day");
    barChart("latency-chart", "Median latency per day, in ms", o.latency.map((r) => r.day.slice(5)),
      { "median ms": o.latency.map((r) => r.median_ms) });
    table("latency-table", "Latency per day", [["Day"], ["Searches", true], ["Median ms", true], ["p95 ms", true]],
      o.latency.map((r) => [r.day, r.searches, number(r.median_ms, 1), number(r.p95_ms, 1)]), "latency-per-day");
  }

  function drawUnmet(u) {
    table("no-results-table", "Words that found nothing", [["Words"], ["Searches", true]],
      u.no_results.map((r) => [r.words, r.searches]), "words-no-results");
    table("no-clicks-table", "Words whose results nobody clicked", [["Words"], ["Searches", true]],
      u.no_clicks.map((r) => [r.words, r.searches]), "words-no-clicks");
    table("weak-table", "Weak photo matches per category",
      [["Category"], ["Photo searches", true], ["Usual low", true], ["Below", true], ["Share", true]],
      u.weak_photos.map((r) => [r.category, r.photo_searches, number(r.usual_low, 2), r.below, percent(r.share)]),
      "weak-photo-matches");
    const nonEmpty = u.best_scores.some((b) => b.searches);
    if (nonEmpty) {
      barChart("scores-chart", "Best score of photo searches, histogram", u.best_scores.map((b) => b.low.toFixed(2)),
        { searches: u.best_scores.map((b) => b.searches) });
    } else {
      $("scores-chart").replaceChildren();
    }
    table("scores-table", "Best scores of photo searches", [["From", true], ["To", true], ["Searches", true]],
      u.best_scores.filter((b) => b.searches).map((b) => [b.low.toFixed(2), b.high.toFixed(2), b.searches]),
      "best-scores");
    table("switches-table", "Category switches", [["Decided"], ["Shopper chose"], ["Searches", true]],
      u.switches.map((r) => [r.decided, r.chosen, r.searches]), "category-switches");
  }

  function drawCatalogue(c) {
    $("catalogue-summary").textContent = c.index_version
      ? `Serving ${c.index_version} (weights: ${c.weights}${c.weights === "random" ? ", so matches mean nothing" : ""}).`
      : "No index is built yet: run `make index`.";
    table("categories-table", "Categories", [["Category"], ["Products", true], ["Photos", true],
      ["Recall@1", true], ["Recall@10", true]], c.categories.map((r) => [r.category, r.products, r.photos,
      percent(r.recall_at_1), percent(r.recall_at_10)]), "categories");
    table("versions-table", "Versions kept", [["Version"], ["Published (UTC)"], ["Products", true], ["Photos", true],
      ["Recall@1", true], ["Recall@10", true]], c.versions.map((v) => [v.version + (v.serving ? " (serving)" : ""),
      when(v.published_at), v.products, v.photos, percent(v.recall_at_1), percent(v.recall_at_10)]), "versions");
    const report = c.report || { unmapped: [], failed_photos: [], without_photo: [], unknown_values: {} };
    table("unmapped-table", "Products mapped to no category", [["Product"], ["Its category values"]],
      report.unmapped.map((r) => [r.id, r.values]), "unmapped-products");
    table("failed-table", "Photos that failed", [["Product"], ["Photo"], ["Why"], ["Product left out"]],
      report.failed_photos.map((r) => [r.product, r.photo, r.reason, r.product_left_out ? "yes" : "no"]),
      "failed-photos");
    table("without-photo-table", "Products without a photo", [["Product"]],
      report.without_photo.map((id) => [id]), "products-without-photo");
    table("unknown-values-table", "Values of no known form", [["Column"], ["Value"], ["Products", true]],
      Object.entries(report.unknown_values).flatMap(([column, values]) =>
        Object.entries(values).map(([value, n]) => [column, value, n])), "unknown-values");
  }

  async function load() {
    $("load-error").hidden = true;
    try {
      const [overview, unmet, catalogue] = await Promise.all([staff("overview"), staff("unmet"), staff("catalogue")]);
      $("token-form").hidden = true;
      $("reports").hidden = false;
      drawOverview(overview);
      drawUnmet(unmet);
      drawCatalogue(catalogue);
      document.body.dataset.loaded = "true";
    } catch (error) {
      if (error.unauthorized) {
        sessionStorage.removeItem(TOKEN_KEY);
        showTokenForm(error.message);
      } else {
        $("reports").hidden = false;
        $("load-error").hidden = false;
        $("load-error").textContent = `The reports could not be loaded: ${error.message}`;
      }
    }
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    load();
  });
  $("days").addEventListener("change", load);
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenForm("");
  });

  if (sessionStorage.getItem(TOKEN_KEY)) load(); else showTokenForm("");
})();

// Lookalike's page: upload a photo, show the decided category and the similar products.
"use strict";

const form = document.getElementById("search-form");
const input = document.getElementById("photo");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");

function showStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

async function loadCatalogInfo() {
  try {
    const info = await (await fetch("/api/v1/catalog")).json();
    document.getElementById("weights-banner").hidden = info.weights !== "random";
  } catch (err) {
    showStatus("The search service is not reachable right now.", true);
  }
}

function renderResults(body) {
  const percent = Math.round(body.confidence * 100);
  document.getElementById("category").textContent = `Looks like a ${body.category}: ${percent}%`;
  document.getElementById("decision").hidden = false;
  results.replaceChildren(...body.results.map((item) => {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = item.image_url;
    img.alt = item.name;
    img.loading = "lazy";
    const name = document.createElement("p");
    name.className = "name";
    name.textContent = item.name;
    const score = document.createElement("p");
    score.className = "score";
    score.textContent = `Similarity ${Math.round(item.score * 100)}%`;
    li.append(img, name, score);
    return li;
  }));
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = input.files[0];
  if (!file) return;
  document.getElementById("preview").src = URL.createObjectURL(file);
  showStatus("Searching…");
  const data = new FormData();
  data.append("image", file);
  try {
    const response = await fetch("/api/v1/search?k=12", { method: "POST", body: data });
    const body = await response.json();
    if (!response.ok) {
      showStatus(body.error ? body.error.message : "Something went wrong.", true);
      return;
    }
    showStatus("");
    renderResults(body);
  } catch (err) {
    showStatus("The search service is not reachable right now. Please try again.", true);
  }
});

loadCatalogInfo();

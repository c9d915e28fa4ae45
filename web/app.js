// Anime review search page: plain browser JavaScript, no build step, no external assets.
// Talks to the JSON API beside it (/api/v1/...). All text from the API is inserted with
// textContent, never as HTML, so review text cannot inject markup.
"use strict";

const PAGE_SIZE = 10;
const API = "api/v1";

const $ = (id) => document.getElementById(id);
const form = $("search-form");
const queryInput = $("q");
const statusBox = $("status");
const errorBox = $("error");
const resultsList = $("results");
const pager = $("pager");
const context = $("context");

const state = {
  lastSearch: null, // {params, data} of the current search page, to return to after "more like this"
  inFlight: null, // AbortController of the request being waited for
};

// ---- small helpers -----------------------------------------------------------------------------
function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

// Links and images from the API are used only when they point at MyAnimeList over https (the server's
// rule, scraping/urls.py safe_mal_url): a javascript:, data: or foreign URL in a catalogue never becomes a link.
function safeUrl(raw) {
  if (typeof raw !== "string" || !raw) return null;
  let url;
  try {
    url = new URL(raw);
  } catch (_) {
    return null;
  }
  const host = url.hostname.toLowerCase();
  const mal = host === "myanimelist.net" || host.endsWith(".myanimelist.net");
  return url.protocol === "https:" && mal && !url.username && !url.password && !url.port ? url.href : null;
}

// Same crude stemming as the server's evidence module, so highlighted words are the ones it matched.
function stem(word) {
  for (const suffix of ["ing", "ies", "es", "s", "ed"]) {
    if (word.length > suffix.length + 3 && word.endsWith(suffix)) return word.slice(0, -suffix.length);
  }
  return word;
}

// The snippet as text nodes with <mark> around the words whose stem is a query term.
function highlighted(text, terms) {
  const wanted = new Set(terms);
  const fragment = document.createDocumentFragment();
  for (const part of text.split(/([A-Za-z0-9']+)/)) {
    if (!part) continue;
    if (/^[A-Za-z0-9']+$/.test(part) && wanted.has(stem(part.toLowerCase()))) {
      fragment.append(el("mark", { text: part }));
    } else {
      fragment.append(document.createTextNode(part));
    }
  }
  return fragment;
}

// Show "working…" while a request is out; a superseded request's end does not end a newer one's wait.
function setLoading(message) {
  if (!message && state.inFlight) return;
  if (message) statusBox.textContent = message;
  statusBox.classList.toggle("loading", Boolean(message));
  resultsList.setAttribute("aria-busy", message ? "true" : "false");
  $("search-button").disabled = Boolean(message);
}

function showError(message) {
  errorBox.hidden = !message;
  errorBox.textContent = message || "";
}

// GET a JSON document from the API; throws an Error carrying the API's message on any failure.
// An exclusive request (search, "more like this") cancels the previous one, so a slow answer
// can never overwrite a newer one.
async function getJSON(path, params, exclusive = true) {
  const controller = new AbortController();
  if (exclusive) {
    if (state.inFlight) state.inFlight.abort();
    state.inFlight = controller;
  }
  const url = params ? `${path}?${params.toString()}` : path;
  let response;
  try {
    response = await fetch(url, { signal: controller.signal, headers: { Accept: "application/json" } });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Error("Cannot reach the server. Check that it is running and try again.");
  } finally {
    if (state.inFlight === controller) state.inFlight = null;
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    if (response.status === 429) {
      const wait = response.headers.get("Retry-After") || "1";
      throw new Error(`Too many requests. Please wait ${wait} s and try again.`);
    }
    const message = body && body.error ? body.error.message : `The server answered ${response.status}.`;
    throw new Error(message);
  }
  return body;
}

// ---- filters -----------------------------------------------------------------------------------
function checkboxChips(container, values, name) {
  container.replaceChildren();
  for (const value of values) {
    const box = el("input", { type: "checkbox", value, name });
    container.append(el("label", { class: "chip" }, [box, el("span", { text: value })]));
  }
}

async function loadMeta() {
  try {
    const meta = await getJSON(`${API}/meta`, null, false);
    checkboxChips($("genre-list"), meta.genres || [], "genre");
    checkboxChips($("type-list"), meta.types || [], "type");
    const select = $("aggregation");
    for (const name of meta.aggregations || []) {
      select.append(el("option", { value: name, text: name, selected: name === meta.default_aggregation }));
    }
    if (meta.year_range) {
      $("year_min").placeholder = String(meta.year_range[0]);
      $("year_max").placeholder = String(meta.year_range[1]);
    }
  } catch (err) {
    if (err.name !== "AbortError") showError(`Filters are unavailable: ${err.message}`);
  }
}

// Filter fields as query parameters (shared by search and "more like this").
function filterParams() {
  const params = new URLSearchParams();
  for (const box of document.querySelectorAll("#filters input[type=checkbox][name]:checked")) {
    params.append(box.name, box.value);
  }
  for (const id of ["year_min", "year_max", "min_score"]) {
    const value = $(id).value.trim();
    if (value) params.set(id, value);
  }
  if ($("nsfw").checked) params.set("nsfw", "true");
  const active = [...params.keys()].length;
  $("filter-count").hidden = active === 0;
  $("filter-count").textContent = String(active);
  return params;
}

// ---- rendering ---------------------------------------------------------------------------------
function thumbnail(result) {
  const initials = result.title.split(/\s+/).slice(0, 2).map((w) => w[0] || "").join("").toUpperCase();
  const placeholder = el("div", { class: "placeholder", text: initials });
  placeholder.style.setProperty("--hue", String((result.anime_id * 47) % 360));
  const src = safeUrl(result.image_url);
  if (!src) return placeholder;
  const img = el("img", { src, alt: "", loading: "lazy", referrerPolicy: "no-referrer" });
  img.addEventListener("error", () => img.replaceWith(placeholder)); // offline or a dead link: keep the layout
  return img;
}

// The reviewer's verdict beside a snippet, written as recommender/verdict.py describe() writes it:
// "reviewer's score 9/10 · Recommended", "Not Recommended", or nothing when unknown.
function verdictText(item) {
  const parts = [];
  if (Number.isInteger(item.review_score)) parts.push(`reviewer's score ${item.review_score}/10`);
  if (typeof item.verdict === "string" && item.verdict) parts.push(item.verdict);
  return parts.join(" · ");
}

// One result card. ``labels`` names the score and what ``count`` counts, which differ between a search
// (matching reviews among the top N) and "more like this" (the anime's reviews in the index).
function card(result, terms, labels) {
  const node = $("card-template").content.firstElementChild.cloneNode(true);
  node.dataset.animeId = String(result.anime_id);
  node.querySelector(".thumb").append(thumbnail(result));
  const link = node.querySelector(".card-title a");
  const href = safeUrl(result.url) || `https://myanimelist.net/anime/${encodeURIComponent(result.anime_id)}`;
  link.href = href;
  link.textContent = result.title;
  const facts = [result.type, result.year, result.mal_score != null ? `MAL ★ ${result.mal_score}` : null];
  node.querySelector(".facts").textContent = facts.filter((f) => f != null && f !== "").join(" · ");
  const plural = result.count === 1 ? "" : "s";
  node.querySelector(".match").textContent =
    `${labels.score} ${Number(result.score).toFixed(3)} · ${result.count} ${labels.count}${plural}`;
  const genres = node.querySelector(".genres");
  for (const genre of result.genres || []) genres.append(el("li", { text: genre }));
  const evidence = node.querySelector(".evidence");
  for (const item of result.evidence || []) {
    const quote = el("blockquote", {}, [highlighted(item.snippet, terms)]);
    const children = [quote];
    const said = verdictText(item);
    if (said) children.push(el("span", { class: item.negative ? "verdict negative" : "verdict", text: said }));
    const reviewUrl = safeUrl(item.url);
    if (reviewUrl) {
      children.push(el("a", { href: reviewUrl, target: "_blank", rel: "noopener noreferrer", text: "read review" }));
    }
    evidence.append(el("li", {}, children));
  }
  const more = node.querySelector(".more-like");
  more.setAttribute("aria-label", `More like ${result.title}`);
  more.addEventListener("click", () => showSimilar(result.anime_id, result.title));
  return node;
}

const SEARCH_LABELS = { score: "match", count: "matching review" };
const SIMILAR_LABELS = { score: "similarity", count: "review" };

function renderResults(results, terms, labels) {
  resultsList.replaceChildren(...results.map((r) => card(r, terms, labels)));
}

function renderPager(data) {
  const pages = Math.max(1, data.pages || 1);
  pager.hidden = data.total === 0 || pages <= 1;
  $("page-info").textContent = `Page ${data.page} of ${pages} (${data.total} anime)`;
  $("prev-page").disabled = data.page <= 1;
  $("next-page").disabled = data.page >= pages;
}

// ---- actions -----------------------------------------------------------------------------------
async function runSearch(page = 1) {
  const query = queryInput.value.trim();
  if (!query) {
    showError("Describe what you want to watch first.");
    queryInput.focus();
    return;
  }
  const params = filterParams();
  params.set("q", query);
  params.set("limit", String(PAGE_SIZE));
  params.set("page", String(page));
  if ($("aggregation").value) params.set("aggregation", $("aggregation").value);
  showError("");
  setLoading("Searching reviews…");
  try {
    const data = await getJSON(`${API}/search`, params);
    state.lastSearch = { params, data };
    showSearch(data);
    history.replaceState(null, "", `?${new URLSearchParams({ q: query, page: String(page) })}`);
  } catch (err) {
    if (err.name !== "AbortError") {
      statusBox.textContent = "";
      showError(err.message);
    }
  } finally {
    setLoading("");
  }
}

function showSearch(data) {
  context.hidden = true;
  renderResults(data.results, data.terms || [], SEARCH_LABELS);
  renderPager(data);
  statusBox.textContent = data.total
    ? `${data.total} anime matched in ${Math.round(data.timing_ms.total || 0)} ms.`
    : "No anime matched. Try other words or fewer filters.";
}

async function showSimilar(animeId, title) {
  showError("");
  setLoading(`Finding anime like ${title}…`);
  try {
    const params = filterParams();
    params.set("limit", String(PAGE_SIZE));
    const data = await getJSON(`${API}/anime/${encodeURIComponent(animeId)}/similar`, params);
    context.hidden = false;
    $("context-title").textContent = `More like ${data.anime ? data.anime.title : title}`;
    $("back-button").hidden = !state.lastSearch;
    pager.hidden = true;
    renderResults(data.results, [], SIMILAR_LABELS);
    statusBox.textContent = data.results.length ? "" : "Nothing similar passes the filters.";
    window.scrollTo({ top: 0, behavior: "smooth" });
  } catch (err) {
    if (err.name !== "AbortError") {
      statusBox.textContent = "";
      showError(err.message);
    }
  } finally {
    setLoading("");
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  runSearch(1);
});
$("prev-page").addEventListener("click", () => runSearch((state.lastSearch?.data.page || 2) - 1));
$("next-page").addEventListener("click", () => runSearch((state.lastSearch?.data.page || 0) + 1));
$("back-button").addEventListener("click", () => {
  if (state.lastSearch) showSearch(state.lastSearch.data);
});
$("clear-filters").addEventListener("click", () => {
  for (const box of document.querySelectorAll("#filters input[type=checkbox]")) box.checked = false;
  for (const id of ["year_min", "year_max", "min_score"]) $(id).value = "";
  filterParams();
});
$("filters").addEventListener("change", () => filterParams());

// A shared link (?q=...&page=...) runs its search once the filter choices are loaded.
(async function start() {
  await loadMeta();
  const initial = new URLSearchParams(location.search);
  if (initial.get("q")) {
    queryInput.value = initial.get("q");
    runSearch(Math.max(1, parseInt(initial.get("page") || "1", 10) || 1));
  }
})();

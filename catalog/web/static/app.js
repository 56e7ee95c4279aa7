// SpectralEarth patch browser: footprint map, search by box and dates, thumbnails,
// item view with the spectrum of a clicked pixel. Talks only to the server it came from.
"use strict";

const COLLECTION = "spectralearth-patches";
const DETAIL_ZOOM = 9;        // below: aggregated counts; from here: footprints
const PAGE = 24;              // results per page
const COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

const $ = (id) => document.getElementById(id);
const state = { box: null, drawing: false, next: null, selected: null };

const map = L.map("map", { minZoom: 2, maxZoom: 15, worldCopyJump: false }).setView([30, 10], 2);
const land = L.geoJSON(null, { style: { color: "#8a8a7a", weight: 1, fillColor: "#efe9d8", fillOpacity: 1 }, interactive: false }).addTo(map);
const overview = L.layerGroup().addTo(map);
const resultsLayer = L.geoJSON(null, { style: { color: "#1f77b4", weight: 1, fillOpacity: 0.15 } }).addTo(map);
const selectedLayer = L.geoJSON(null, { style: { color: "#d62728", weight: 3, fillOpacity: 0.25 } }).addTo(map);
let boxLayer = null;

function status(text) { $("status").textContent = text || ""; }

async function getJSON(url, options) {
  const r = await fetch(url, options);
  if (!r.ok) {
    let msg = r.statusText;
    try { const b = await r.json(); msg = b.description || b.detail || JSON.stringify(b); } catch (e) { /* not JSON */ }
    throw new Error(`${r.status}: ${msg}`);
  }
  return r.json();
}

function viewBbox() {
  const b = map.getBounds();
  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
  return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90), clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90)];
}

// ---------------------------------------------------------------- the map of all footprints
let overviewSeq = 0;  // only the latest refresh draws: an older response arriving late is dropped
async function refreshOverview() {
  const seq = ++overviewSeq;
  const bbox = viewBbox();
  if (!(bbox[0] < bbox[2] && bbox[1] < bbox[3])) return;
  try {
    if (map.getZoom() < DETAIL_ZOOM) {
      const agg = await getJSON(`/browse/api/aggregate?bbox=${bbox.map((v) => v.toFixed(5)).join(",")}&cells=24`);
      if (seq !== overviewSeq) return;
      overview.clearLayers();
      const max = Math.max(1, ...agg.cells.map((c) => c.count));
      for (const c of agg.cells) {
        const r = 6 + 18 * Math.sqrt(c.count / max);
        const m = L.circleMarker([c.lat, c.lon], { radius: r, color: "#7a1f1f", weight: 1, fillColor: "#d62728", fillOpacity: 0.75, className: "agg" });
        m.bindTooltip(String(c.count), { permanent: true, direction: "center", className: "agg-label" });
        m.on("click", () => map.setView([c.lat, c.lon], Math.min(map.getZoom() + 3, DETAIL_ZOOM)));
        overview.addLayer(m);
      }
    } else {
      const url = `/search?collections=${COLLECTION}&bbox=${bbox.map((v) => v.toFixed(5)).join(",")}&limit=500&fields=id,geometry,bbox,collection`;
      const fc = await getJSON(url);
      if (seq !== overviewSeq) return;
      overview.clearLayers();
      const layer = L.geoJSON(fc, { style: { color: "#555", weight: 1, fillColor: "#d62728", fillOpacity: 0.2 } });
      layer.eachLayer((l) => l.on("click", () => openItem(l.feature.id)));
      overview.addLayer(layer);
    }
  } catch (e) { status(`map: ${e.message}`); }
}
map.on("moveend", refreshOverview);

// ---------------------------------------------------------------- drawing a search box
$("draw-box").addEventListener("click", () => {
  state.drawing = !state.drawing;
  $("draw-box").classList.toggle("active", state.drawing);
  $("map").classList.toggle("drawing", state.drawing);  // the map's controls let the drag through while drawing
  if (state.drawing) { map.dragging.disable(); status("drag a box on the map"); } else { map.dragging.enable(); status(""); }
});
let dragStart = null;
map.on("mousedown", (e) => { if (state.drawing) { dragStart = e.latlng; } });
map.on("mousemove", (e) => {
  if (!state.drawing || !dragStart) return;
  const bounds = L.latLngBounds(dragStart, e.latlng);
  if (boxLayer) boxLayer.setBounds(bounds); else boxLayer = L.rectangle(bounds, { color: "#f5a300", weight: 2, fillOpacity: 0.05, interactive: false }).addTo(map);
});
map.on("mouseup", (e) => {
  if (!state.drawing || !dragStart) return;
  const b = L.latLngBounds(dragStart, e.latlng);
  dragStart = null;
  state.drawing = false;
  $("draw-box").classList.remove("active");
  $("map").classList.remove("drawing");
  map.dragging.enable();
  state.box = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()];
  status("");
  search();
});

// ---------------------------------------------------------------- search and results
function datetimeParam() {
  const from = $("date-from").value, to = $("date-to").value;
  if (!from && !to) return null;
  return `${from ? from + "T00:00:00Z" : ".."}/${to ? to + "T23:59:59Z" : ".."}`;
}

async function search(url) {
  if (!url) {
    const p = new URLSearchParams({ collections: COLLECTION, limit: String(PAGE) });
    const bbox = state.box || viewBbox();
    p.set("bbox", bbox.map((v) => v.toFixed(5)).join(","));
    const dt = datetimeParam();
    if (dt) p.set("datetime", dt);
    url = `/search?${p}`;
  }
  status("searching...");
  try {
    const fc = await getJSON(url);
    status("");
    showResults(fc);
  } catch (e) { status(`search: ${e.message}`); }
}
$("search").addEventListener("click", () => search());
$("next-page").addEventListener("click", () => state.next && search(state.next));

function showResults(fc) {
  const grid = $("results");
  grid.innerHTML = "";
  resultsLayer.clearLayers();
  resultsLayer.addData(fc);
  const total = fc.numberMatched ?? fc.context?.matched;
  $("result-count").textContent = `(${fc.features.length}${total != null ? " of " + total : ""})`;
  for (const f of fc.features) {
    const cell = document.createElement("div");
    cell.className = "thumb";
    cell.dataset.id = f.id;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = f.id;
    img.src = `/browse/api/thumbnail/${encodeURIComponent(f.id)}.png`;
    const n = f.properties["spectralearth:view_count"];
    const label = document.createElement("div");
    label.textContent = `${n} view${n === 1 ? "" : "s"} · ${(f.properties.start_datetime || "").slice(0, 10)}`;
    cell.append(img, label);
    cell.addEventListener("click", () => openItem(f.id));
    grid.append(cell);
  }
  const next = (fc.links || []).find((l) => l.rel === "next");
  state.next = next ? new URL(next.href).pathname + new URL(next.href).search : null;
  $("next-page").hidden = !state.next;
}

// ---------------------------------------------------------------- the item view
async function openItem(id) {
  let item;
  try { item = await getJSON(`/browse/api/item/${encodeURIComponent(id)}`); } catch (e) { status(`item: ${e.message}`); return; }
  state.selected = item;
  document.querySelectorAll(".thumb").forEach((c) => c.classList.toggle("selected", c.dataset.id === id));
  selectedLayer.clearLayers();
  selectedLayer.addData(item);
  const p = item.properties;
  $("item-view").hidden = false;
  $("item-title").textContent = item.id;
  $("item-meta").textContent = `${p["spectralearth:view_count"]} views, ${p.start_datetime.slice(0, 10)} – ${p.end_datetime.slice(0, 10)} · ${p["proj:code"]} · cube version ${p["cube:version"]}`;
  const dates = $("item-dates");
  dates.innerHTML = "";
  p["spectralearth:view_datetimes"].forEach((t, i) => {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.style.background = COLORS[i % COLORS.length];
    li.append(sw, `${t.replace("T", " ").replace("Z", "")} · ${p["spectralearth:view_tiles"][i]}`);
    dates.append(li);
  });
  $("download").href = `/browse/api/download/${encodeURIComponent(item.id)}.tif`;
  $("spectrum").innerHTML = "";
  const canvas = $("item-thumb");
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const img = new Image();
  img.onload = () => { ctx.drawImage(img, 0, 0, canvas.width, canvas.height); canvas.dataset.loaded = item.id; };
  img.src = `/browse/api/thumbnail/${encodeURIComponent(item.id)}.png`;
  canvas.dataset.px = p["proj:shape"][0];
}

$("item-thumb").addEventListener("click", async (ev) => {
  const item = state.selected;
  if (!item) return;
  const canvas = ev.currentTarget;
  const rect = canvas.getBoundingClientRect();
  const px = Number(canvas.dataset.px) || 128;
  const col = Math.min(px - 1, Math.floor(((ev.clientX - rect.left) / rect.width) * px));
  const row = Math.min(px - 1, Math.floor(((ev.clientY - rect.top) / rect.height) * px));
  try {
    const s = await getJSON(`/browse/api/spectrum/${encodeURIComponent(item.id)}?row=${row}&col=${col}`);
    drawSpectrum(s);
  } catch (e) { status(`spectrum: ${e.message}`); }
});

function drawSpectrum(s) {
  const W = 560, H = 260, L0 = 50, R0 = 10, T0 = 22, B0 = 34;
  const wl = s.wavelength_nm;
  const vals = s.views.flatMap((v) => v.reflectance.filter((x) => x !== null));
  const ymax = Math.max(0.05, ...vals) * 1.05;
  const xmin = Math.min(...wl), xmax = Math.max(...wl);
  const X = (w) => L0 + ((w - xmin) / (xmax - xmin)) * (W - L0 - R0);
  const Y = (r) => H - B0 - (r / ymax) * (H - T0 - B0);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const el = (tag, attrs, text) => { const e = document.createElementNS(ns, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); if (text != null) e.textContent = text; svg.append(e); return e; };
  el("line", { x1: L0, y1: H - B0, x2: W - R0, y2: H - B0, class: "axis" });
  el("line", { x1: L0, y1: T0, x2: L0, y2: H - B0, class: "axis" });
  for (let w = 500; w <= xmax; w += 250) { el("text", { x: X(w), y: H - B0 + 14, "text-anchor": "middle" }, String(w)); }
  for (let k = 0; k <= 4; k++) { const r = (ymax * k) / 4; el("text", { x: L0 - 4, y: Y(r) + 4, "text-anchor": "end" }, r.toFixed(2)); }
  el("text", { x: (L0 + W) / 2, y: H - 4, "text-anchor": "middle" }, "wavelength (nm)");
  el("text", { x: 12, y: T0 - 8 }, `reflectance at row ${s.row}, col ${s.col}`);
  s.views.forEach((v, i) => {
    // one polyline per run of valid values (gaps where bands are nodata)
    let run = [];
    const flush = () => { if (run.length > 1) el("polyline", { points: run.join(" "), fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.5, class: "view-line", "data-datetime": v.datetime }); run = []; };
    v.reflectance.forEach((r, j) => { if (r === null) flush(); else run.push(`${X(wl[j]).toFixed(1)},${Y(r).toFixed(1)}`); });
    flush();
    el("text", { x: W - R0 - 4, y: T0 + 12 * i, "text-anchor": "end", fill: COLORS[i % COLORS.length] }, v.datetime.slice(0, 10));
  });
  const box = $("spectrum");
  box.innerHTML = "";
  box.append(svg);
  box.dataset.row = s.row;
  box.dataset.col = s.col;
}

// ---------------------------------------------------------------- start
(async function start() {
  try {
    const [g, info] = await Promise.all([getJSON("/browse/api/land.geojson"), getJSON("/browse/api/info")]);
    land.addData(g);
    if (info.patches) {
      $("info").textContent = `${info.patches.toLocaleString("en")} patches · cube ${info.version}`;
      const [w, s, e, n] = info.bbox;
      map.fitBounds([[s, w], [n, e]], { padding: [30, 30], maxZoom: DETAIL_ZOOM - 1 });
    } else {
      $("info").textContent = "no published patches";
    }
  } catch (e) { status(`start: ${e.message}`); }
  await refreshOverview();
  document.body.dataset.ready = "1";
})();

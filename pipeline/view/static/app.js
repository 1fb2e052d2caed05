// maskray view: overview, gallery, frame and video pages, routed by the URL's #fragment.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const view = document.getElementById("view");
let config = null;
let timer = null;  // the overview's refresh or the video's playback

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  q.set("token", TOKEN);
  return q.toString();
}

async function api(path, params) {
  const response = await fetch(`/api/${path}?${query(params)}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// The frame's picture as an ImageBitmap, or {missing: message} when the source is gone.
async function picture(source, frame, max, crop) {
  const response = await fetch(`/api/image?${query({source, frame, max, crop})}`);
  if (!response.ok) {
    let note = "source not available";
    try { note = (await response.json()).error || note; } catch (e) { /* not JSON */ }
    return {missing: note};
  }
  return createImageBitmap(await response.blob());
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

const fmt = (x, digits = 3) => (x === null || x === undefined ? "" : Number(x).toFixed(digits));
const fileName = (source) => source.split("/").pop();

function colourOf(inst) {
  const index = inst.track_id !== null && inst.track_id !== undefined ? inst.track_id : inst.instance;
  return config.palette[index % config.palette.length];
}

function frameLink(source, frame) { return `#/frame?${new URLSearchParams({source, frame})}`; }

// ---- overview ----
async function showOverview() {
  const data = await api("overview");
  const s = data.status, t = data.totals;
  const of = (done, total) => (total === null || total === undefined ? `${done}` : `${done} / ${total}`);
  const maxCount = Math.max(1, ...data.categories.map((c) => c.n));
  const maxBin = Math.max(1, ...data.histogram);
  view.replaceChildren(
    el("h2", {}, "Overview"),
    el("p", {id: "state"}, `Job ${s.job_id || "?"}: ${s.state}${s.message ? " (" + s.message + ")" : ""}` +
       (s.phase ? `, ${s.phase}` : "") + (s.frames_per_s ? `, ${fmt(s.frames_per_s, 1)} frames/s` : "")),
    el("table", {},
       el("tr", {}, el("th", {}, "shards"), el("td", {}, of(s.shards_done, s.shards_total))),
       el("tr", {}, el("th", {}, "frames"), el("td", {}, of(s.frames_done !== undefined ? s.frames_done : t.frames, s.frames_total))),
       el("tr", {}, el("th", {}, "sources"), el("td", {}, t.sources)),
       el("tr", {}, el("th", {}, "instances"), el("td", {}, t.instances || 0)),
       el("tr", {}, el("th", {}, "errors"), el("td", {}, t.errors))),
    el("h3", {}, "Instances per category"),
    el("table", {id: "categories"}, ...data.categories.map((c) => el("tr", {},
       el("td", {}, el("a", {href: `#/gallery?${new URLSearchParams({category: c.category})}`}, c.category)),
       el("td", {}, c.n), el("td", {}, `mean score ${fmt(c.mean_score, 2)}`),
       el("td", {}, el("span", {class: "bar", style: `width:${200 * c.n / maxCount}px`}))))),
    el("h3", {}, "Scores"),
    el("div", {class: "hist", title: "instances per score bin, 0 to 1"},
       ...data.histogram.map((n, i) => el("div", {style: `height:${90 * n / maxBin}px`,
                                                  title: `${(i / data.histogram.length).toFixed(2)}+: ${n}`}))),
    el("h3", {}, `Errors (${t.errors})`),
    el("table", {}, ...data.errors.map((e) => el("tr", {}, el("td", {}, fileName(e.source)),
                                                  el("td", {}, e.frame), el("td", {}, e.error)))));
  if (s.state === "running") timer = setTimeout(() => route(), 3000);
}

// ---- gallery ----
const FILTERS = ["category", "min_score", "max_score", "source", "track", "where", "sort"];

async function showGallery(params) {
  const page = Number(params.get("page") || 0);
  const chosen = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || ""]));
  const form = el("form", {class: "filters", id: "filters"},
    el("label", {}, "category", el("select", {name: "category"}, el("option", {value: ""}, "all"),
       ...config.categories.map((c) => el("option", {value: c}, c)))),
    el("label", {}, "min score", el("input", {name: "min_score", type: "number", step: "0.05", min: 0, max: 1, size: 5})),
    el("label", {}, "max score", el("input", {name: "max_score", type: "number", step: "0.05", min: 0, max: 1, size: 5})),
    el("label", {}, "source", el("select", {name: "source"}, el("option", {value: ""}, "all"),
       ...config.sources.map((s) => el("option", {value: s.source}, fileName(s.source))))),
    el("label", {}, "track", el("input", {name: "track", type: "number", min: 0, size: 5})),
    el("label", {}, "SQL WHERE", el("input", {name: "where", placeholder: "mask_area > 500 AND x1 < 100"})),
    el("label", {}, "sort", el("select", {name: "sort"}, el("option", {value: "score"}, "best score"),
       el("option", {value: "instances"}, "instance count"), el("option", {value: "time"}, "source and time"))),
    el("button", {type: "submit"}, "Apply"));
  for (const k of FILTERS) if (chosen[k]) form.elements[k].value = chosen[k];
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = {};
    for (const k of FILTERS) if (form.elements[k].value) next[k] = form.elements[k].value;
    location.hash = `#/gallery?${new URLSearchParams(next)}`;
  });
  form.elements.category.addEventListener("change", () => form.requestSubmit());
  const grid = el("div", {class: "grid", id: "grid"});
  const status = el("p", {id: "gallery-status"}, "Loading…");
  const pager = el("div", {class: "pager"});
  view.replaceChildren(el("h2", {}, "Gallery"), form, status, grid, pager);
  let data;
  try {
    data = await api("gallery", Object.assign({}, chosen, {page, per_page: 24}));
  } catch (error) {
    status.textContent = error.message; status.className = "error";
    return;
  }
  status.textContent = data.frames.length ? `page ${page + 1}` : "no frame matches";
  const turn = (to) => { params.set("page", to); location.hash = `#/gallery?${params}`; };
  if (page > 0) pager.append(el("button", {onclick: () => turn(page - 1)}, "← previous"));
  if (data.more) pager.append(el("button", {onclick: () => turn(page + 1)}, "next →"));
  for (const f of data.frames) {
    const canvas = el("canvas");
    const card = el("div", {class: "card", "data-source": f.source, "data-frame": f.frame,
                            onclick: () => { location.hash = frameLink(f.source, f.frame); }},
      canvas,
      el("div", {class: "caption", title: f.source},
         `${fileName(f.source)}${f.time === null ? "" : " frame " + f.frame} · ${f.matches} ` +
         `instance${f.matches === 1 ? "" : "s"} · best ${fmt(f.top_score, 2)}`),
      el("div", {class: "caption categories"}, [...new Set(f.instances.map((i) => i.category))].join(", ")));
    grid.append(card);
    drawThumb(canvas, f);
  }
}

async function drawThumb(canvas, f) {
  const scale = Math.min(1, 320 / Math.max(f.width, f.height));
  canvas.width = Math.max(1, Math.round(f.width * scale));
  canvas.height = Math.max(1, Math.round(f.height * scale));
  const ctx = canvas.getContext("2d");
  const image = await picture(f.source, f.frame, 320);
  if (image.missing) blankFrame(ctx, image.missing); else ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  paintInstances(ctx, f.instances, f.height, scale, {colourOf});
  canvas.dataset.drawn = "1";
}

// ---- frame and video ----
async function showFrame(params) {
  const source = params.get("source"), frameNumber = Number(params.get("frame") || 0);
  const data = await api("frame", {source, frame: frameNumber});
  const canvas = el("canvas", {id: "frame-canvas", width: data.width, height: data.height});
  // A small frame is shown larger (its pixels stay sharp); a large one fits the page.
  canvas.style.width = `${Math.max(data.width, Math.min(3 * data.width, 768))}px`;
  const hidden = new Set((params.get("hide") || "").split(",").filter(Boolean));
  const side = el("div", {class: "side"});
  const hover = el("div", {id: "instance-row"}, "Hover or click an instance.");
  const strip = el("div", {class: "strip", id: "strip"});
  let pinned = null;
  const image = await picture(source, frameNumber, 0);
  const shown = () => data.instances.filter((i) => !hidden.has(i.category));
  let labels = null;

  function draw(hot) {
    const ctx = canvas.getContext("2d");
    if (image.missing) blankFrame(ctx, image.missing); else ctx.drawImage(image, 0, 0);
    const instances = shown();
    if (document.getElementById("show-masks").checked) {
      labels = paintInstances(ctx, instances, data.height, 1, {colourOf, labels: true, skeleton: config.skeleton});
    } else labels = null;
    drawTrails(ctx, data.trails || [], hidden, instances);
    if (hot) { ctx.strokeStyle = "#fff"; ctx.lineWidth = 3; ctx.strokeRect(hot.x1, hot.y1, hot.x2 - hot.x1, hot.y2 - hot.y1); }
    canvas.dataset.drawn = String(frameNumber);
  }

  function describe(inst) {
    if (!inst) { hover.textContent = "Hover or click an instance."; return; }
    const rows = Object.entries(inst).filter(([k]) => k !== "mask_rle" && k !== "keypoints")
      .map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, typeof v === "number" && !Number.isInteger(v) ? fmt(v) : v)));
    hover.replaceChildren(el("table", {}, ...rows));
    for (const tr of side.querySelectorAll("tr[data-instance]")) tr.classList.toggle("hot", Number(tr.dataset.instance) === inst.instance);
  }

  function under(event) {
    if (!labels) return null;
    const box = canvas.getBoundingClientRect();
    const x = Math.floor((event.clientX - box.left) * canvas.width / box.width);
    const y = Math.floor((event.clientY - box.top) * canvas.height / box.height);
    const label = labels[y * canvas.width + x];
    return label ? shown()[label - 1] : null;
  }

  canvas.addEventListener("mousemove", (event) => { if (!pinned) { const i = under(event); describe(i); draw(i); } });
  canvas.addEventListener("click", (event) => {
    pinned = under(event); describe(pinned); draw(pinned);
    if (pinned && pinned.track_id !== null && pinned.track_id !== undefined) showStrip(strip, source, pinned.track_id);
  });

  const categories = [...new Set(data.instances.map((i) => i.category))].sort();
  const toggles = el("div", {id: "toggles"}, el("label", {}, el("input", {type: "checkbox", id: "show-masks", checked: "",
    onchange: () => draw()}), " masks"), " ",
    ...categories.map((c) => el("label", {}, el("input", {type: "checkbox", "data-category": c,
      ...(hidden.has(c) ? {} : {checked: ""}),
      onchange: (event) => { if (event.target.checked) hidden.delete(c); else hidden.add(c); draw(); }}), ` ${c} `)));
  const list = el("table", {id: "instances"}, el("tr", {}, el("th", {}, "#"), el("th", {}, "category"),
    el("th", {}, "score"), el("th", {}, "track")),
    ...data.instances.map((i) => el("tr", {"data-instance": i.instance,
      onmouseenter: () => { describe(i); draw(i); },
      onclick: () => { pinned = i; describe(i); if (i.track_id !== null) showStrip(strip, source, i.track_id); }},
      el("td", {}, i.instance), el("td", {}, i.category), el("td", {}, fmt(i.score)), el("td", {}, i.track_id ?? ""))));
  side.append(el("p", {}, el("strong", {}, fileName(source)), ` frame ${frameNumber}`,
    data.time !== null ? ` (${fmt(data.time, 2)} s)` : "", ` · ${data.width}×${data.height}`),
    data.status === "error" ? el("p", {class: "error"}, data.error) : "", toggles, list, el("h4", {}, "Instance"), hover,
    strip);

  const parts = [el("h2", {}, data.is_image ? "Frame" : "Video")];
  if (!data.is_image) parts.push(videoControls(source, frameNumber, data));
  parts.push(el("div", {class: "frame-page"}, el("div", {}, canvas), side));
  view.replaceChildren(...parts);
  draw();
}

function drawTrails(ctx, trails, hidden, instances) {
  const present = new Map(instances.map((i) => [i.track_id, i]));
  const paths = new Map();
  for (const p of trails) { if (!paths.has(p.track_id)) paths.set(p.track_id, []); paths.get(p.track_id).push(p); }
  for (const [track, points] of paths) {
    const inst = present.get(track);
    if (!inst || points.length < 2) continue;
    ctx.strokeStyle = `rgb(${colourOf(inst).join(",")})`; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(points[0].x, points[0].y);
    for (const p of points.slice(1)) ctx.lineTo(p.x, p.y);
    ctx.stroke();
  }
}

function videoControls(source, frameNumber, data) {
  const go = (frame) => { location.hash = `${frameLink(source, frame)}&video=1${playing() ? "&play=1" : ""}`; };
  const playing = () => new URLSearchParams(location.hash.split("?")[1] || "").get("play") === "1";
  const controls = el("div", {class: "controls"},
    el("button", {id: "previous", onclick: () => data.previous !== null && go(data.previous),
                  ...(data.previous === null ? {disabled: ""} : {})}, "◀ previous"),
    el("button", {id: "play", onclick: () => {
      const params = new URLSearchParams(location.hash.split("?")[1] || "");
      if (playing()) params.delete("play"); else params.set("play", "1");
      location.hash = `#/frame?${params}`;
    }}, playing() ? "❚❚ pause" : "▶ play"),
    el("button", {id: "next", onclick: () => data.next !== null && go(data.next),
                  ...(data.next === null ? {disabled: ""} : {})}, "next ▶"),
    el("span", {id: "position"}, `frame ${frameNumber} (${data.position + 1} of ${data.processed} processed)`));
  if (playing() && data.next !== null) timer = setTimeout(() => go(data.next), 150);
  return controls;
}

async function showStrip(strip, source, track) {
  const rows = await api("track", {source, track});
  const step = Math.max(1, Math.ceil(rows.length / 30));
  strip.replaceChildren(el("div", {}, `track ${track}: frames ${rows[0].frame}–${rows[rows.length - 1].frame}`),
    ...rows.filter((_, i) => i % step === 0).map((r) => el("img", {
      title: `frame ${r.frame}, ${r.category} ${fmt(r.score, 2)}`, onclick: () => { location.hash = frameLink(source, r.frame); },
      src: `/api/image?${query({source, frame: r.frame, max: 96, crop: [r.x1, r.y1, r.x2, r.y2].map(Math.round).join(",")})}`})));
}

// ---- routing ----
async function route() {
  clearTimeout(timer);
  const [path, search] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(search || "");
  try {
    if (!config) {
      config = await api("config");
      document.getElementById("output").textContent = config.output;
    }
    if (path === "/gallery") await showGallery(params);
    else if (path === "/frame") await showFrame(params);
    else await showOverview();
  } catch (error) {
    view.replaceChildren(el("p", {class: "error", id: "error"}, error.message));
  }
  document.body.dataset.route = path;
  document.body.dataset.ready = String(Date.now());
}

window.addEventListener("hashchange", route);
route();

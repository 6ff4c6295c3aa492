// The studio page: pick or create a shoot, upload straight to the object store with the presigned
// PUT the server hands out for each photo, and follow each photo's renditions over server-sent events.
"use strict";
const cfg = window.DARKROOM;
const $ = (sel) => document.querySelector(sel);
const TYPES = { jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", webp: "image/webp", tif: "image/tiff",
  tiff: "image/tiff", heic: "image/heic", heif: "image/heif", avif: "image/avif", gif: "image/gif" };
const PARALLEL = 3;

let shoot = null;     // the selected shoot {shootId, title, ...}
let events = null;    // its EventSource
const cards = new Map(); // file id -> card element
const sent = new Map();  // file -> [bytes sent, bytes total], for the total progress

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options,
    headers: { "Content-Type": "application/json", ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// -- shoots ---------------------------------------------------------------------------------------

async function loadShoots(select) {
  const { shoots } = await api("/api/shoots");
  const list = $("#shoots");
  list.replaceChildren();
  for (const s of shoots) {
    const li = document.createElement("li");
    li.textContent = s.title;
    li.dataset.shoot = s.shootId;
    li.onclick = () => selectShoot(s);
    list.append(li);
  }
  const wanted = select || decodeURIComponent(location.hash.replace(/^#shoot=/, ""));
  const found = shoots.find((s) => s.shootId === wanted);
  if (found) selectShoot(found);
  return shoots;
}

$("#new-shoot").onsubmit = async (e) => {
  e.preventDefault();
  $("#shoot-error").textContent = "";
  try {
    const created = await api("/api/shoots", { method: "POST",
      body: JSON.stringify({ title: $("#title").value, clientEmail: $("#client-email").value }) });
    e.target.reset();
    selectShoot(created);  // the read model lists it once the invites consumer has it
    setTimeout(() => loadShoots(created.shootId), 2000);
  } catch (err) { $("#shoot-error").textContent = err.message; }
};

async function selectShoot(s) {
  if (shoot && shoot.shootId === s.shootId) { Object.assign(shoot, s); showShoot(); return; }
  shoot = { ...s };
  location.hash = "shoot=" + encodeURIComponent(s.shootId);
  cards.clear(); sent.clear();
  $("#cards").replaceChildren(); $("#dead").replaceChildren();
  showShoot();
  listen(s.shootId);
  const { photos, analytics } = await api(`/api/shoots/${s.shootId}/photos`);
  for (const p of photos) showRendition({ fileId: p.fileId, rendition: p.rendition, url: p.url }, true);
  showAnalytics(analytics);
}

function showShoot() {
  $("#shoot").hidden = false;
  $("#shoot-title").textContent = shoot.title;
  $("#shoot-id").textContent = shoot.shootId;
  $("#shoot-client").textContent = shoot.clientEmail || "?";
  const link = $("#gallery-link");
  link.hidden = !shoot.galleryUrl;
  if (shoot.galleryUrl) link.href = shoot.galleryUrl;
  for (const li of document.querySelectorAll("#shoots li")) li.classList.toggle("selected", li.dataset.shoot === shoot.shootId);
}

function showAnalytics(a) {
  $("#views").textContent = a.views;
  $("#downloads").textContent = a.downloads;
  for (const [fileId, counts] of Object.entries(a.photos || {})) {
    const card = cards.get(fileId);
    if (card) card.querySelector(".counts").textContent = `${counts.views} views · ${counts.downloads} downloads`;
  }
}

async function refreshAnalytics() {
  if (shoot) showAnalytics(await api(`/api/shoots/${shoot.shootId}/analytics`));
}
setInterval(() => refreshAnalytics().catch(() => {}), 3000);
// The shoot list (and a new shoot's gallery link, once its invite exists) comes from the read models.
setInterval(() => loadShoots(shoot && shoot.shootId).catch(() => {}), 10000);

// -- live progress ----------------------------------------------------------------------------

function listen(shootId) {
  if (events) events.close();
  $("#live").textContent = "live: connecting…"; $("#live").className = "";
  events = new EventSource(`/api/shoots/${shootId}/events`);
  events.onmessage = (e) => onItem(JSON.parse(e.data));
  events.onerror = () => { $("#live").textContent = "live: reconnecting…"; $("#live").className = ""; };
}

function onItem(item) {
  if (item.type === "feed") {
    $("#live").textContent = item.ready ? "live" : `live: waiting for Kafka (${item.error || "starting"})`;
    $("#live").className = item.ready ? "ok" : "";
  } else if (item.type === "file.uploaded") {
    status(card(item.fileId), "uploaded, processing…");
  } else if (item.type === "file.processed") {
    showRendition(item, false);
  } else if (item.type === "gallery.updated" && item.change === "added") {
    const c = card(item.fileId); c.classList.add("done"); status(c, "in the gallery");
    $("#photo-count").textContent = item.photoCount;
  } else if (item.type === "dead-letter") {
    const c = card(item.fileId); c.classList.add("dead"); status(c, `${item.stage}: ${item.reason}`);
    const li = document.createElement("li");
    li.textContent = `${item.fileId} · ${item.stage} · ${item.errorClass}: ${item.reason}`;
    $("#dead").append(li);
  } else if (item.type === "gallery.viewed" || item.type === "file.downloaded") {
    setTimeout(() => refreshAnalytics().catch(() => {}), 500);
  }
}

function card(fileId, name) {
  let c = cards.get(fileId);
  if (!c) {
    c = document.createElement("div");
    c.className = "card"; c.dataset.file = fileId;
    c.innerHTML = '<div class="frame"></div><div class="name"></div><progress max="1" value="0"></progress>' +
      '<div class="status muted"></div><div class="counts muted"></div>';
    c.querySelector(".name").textContent = name || fileId;
    c.querySelector(".name").title = fileId;
    $("#cards").append(c);
    cards.set(fileId, c);
  }
  return c;
}

function status(c, text) { c.querySelector(".status").textContent = text; }

// Shows the thumb when it exists, else whatever rendition came first.
function showRendition(item, done) {
  const c = card(item.fileId);
  if (done) { c.classList.add("done"); c.querySelector("progress").value = 1; status(c, "in the gallery"); }
  else status(c, `${item.rendition} ready (${item.width}×${item.height})`);
  if (!item.url) return;
  let img = c.querySelector("img");
  if (img && img.dataset.rendition === "thumb") return;
  if (!img) { img = document.createElement("img"); img.alt = item.fileId; c.querySelector(".frame").append(img); }
  img.dataset.rendition = item.rendition;
  img.src = item.url;
}

// -- uploads ----------------------------------------------------------------------------------

function totalProgress() {
  let done = 0, total = 0;
  for (const [a, b] of sent.values()) { done += a; total += b; }
  $("#total").max = total || 1; $("#total").value = done;
  $("#total-text").textContent = `${(done / 1048576).toFixed(1)} of ${(total / 1048576).toFixed(1)} MB`;
}

// The server signs a PUT of this one key; the bytes go straight to the store.
function put(file, upload, c) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(upload.method, upload.url);
    for (const [name, value] of Object.entries(upload.headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => {
      c.querySelector("progress").value = e.loaded / (e.total || 1);
      sent.set(file, [e.loaded, file.size]); totalProgress();
    };
    xhr.onload = () => (xhr.status < 300 ? resolve()
      : reject(new Error(`the store refused it (${xhr.status} ${(xhr.responseText.match(/<Code>(.*?)<\/Code>/) || [])[1] || ""})`)));
    xhr.onerror = () => reject(new Error("the store could not be reached"));
    xhr.send(file);
  });
}

async function uploadOne(file) {
  const ext = file.name.split(".").pop().toLowerCase();
  if (!TYPES[ext]) return;  // not a photo (e.g. a sidecar file in a dropped folder)
  sent.set(file, [0, file.size]); totalProgress();
  let c = null;
  try {
    // The photo keeps its own name; the server checks it and says which file id ingest will give it.
    const upload = await api(`/api/shoots/${shoot.shootId}/uploads`, { method: "POST",
      body: JSON.stringify({ name: file.name, size: file.size }) });
    c = card(upload.fileId, file.name);
    status(c, "uploading…");
    await put(file, upload, c);
    sent.set(file, [file.size, file.size]); totalProgress();
    if (!c.classList.contains("done") && !c.querySelector("img")) status(c, "uploaded, waiting for ingest…");
  } catch (err) {
    c = c || card(`failed-${file.name}`, file.name);
    c.classList.add("dead"); status(c, err.message);
  }
}

async function upload(files) {
  if (!shoot) return;
  const queue = [...files];
  const worker = async () => { while (queue.length) await uploadOne(queue.shift()); };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
}

// Folders dropped on the page: walk them (the File System Entry API) and upload every photo.
async function filesOf(entry) {
  if (entry.isFile) return [await new Promise((ok, fail) => entry.file(ok, fail))];
  const reader = entry.createReader(), out = [];
  for (;;) {
    const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!batch.length) return out;
    for (const child of batch) out.push(...await filesOf(child));
  }
}

const drop = $("#drop");
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = async (e) => {
  e.preventDefault(); drop.classList.remove("over");
  const entries = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  const files = entries.length ? (await Promise.all(entries.map(filesOf))).flat() : [...e.dataTransfer.files];
  upload(files);
};
$("#files").onchange = (e) => { upload([...e.target.files]); e.target.value = ""; };

loadShoots().catch((err) => { $("#shoot-error").textContent = err.message; });

// The client's gallery: thumbnails (over their placeholder when the read model has one), a viewer
// for the `web` rendition, and the `proof` download. Links are presigned and short-lived.
"use strict";
const cfg = window.DARKROOM;
const $ = (sel) => document.querySelector(sel);

function facts(photo) {
  const parts = [`${photo.width}×${photo.height}`];
  if (photo.capture && typeof photo.capture === "object") {
    for (const [name, value] of Object.entries(photo.capture)) if (value !== null && value !== "") parts.push(`${name}: ${value}`);
  }
  return parts.join(" · ");
}

function open(photo) {
  $("#viewer-img").src = photo.web;
  $("#viewer-img").alt = photo.name;
  $("#viewer-caption").textContent = [photo.name, facts(photo)].filter(Boolean).join(" · ");
  const download = $("#download");
  download.hidden = !photo.downloads.includes("proof");
  download.href = `${cfg.base}/photos/${encodeURIComponent(photo.fileId)}/proof`;
  $("#viewer").classList.add("open");
  fetch(`${cfg.base}/photos/${encodeURIComponent(photo.fileId)}/viewed`, { method: "POST" });
}

$("#close").onclick = () => $("#viewer").classList.remove("open");
document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("#viewer").classList.remove("open"); });

async function load() {
  const response = await fetch(`${cfg.base}/photos`);
  const { photos } = await response.json();
  $("#count").textContent = `${photos.length} photo${photos.length === 1 ? "" : "s"}`;
  $("#empty").hidden = photos.length > 0;
  const grid = $("#photos");
  grid.replaceChildren();
  for (const photo of photos) {
    const figure = document.createElement("figure");
    figure.className = "photo"; figure.dataset.file = photo.fileId;
    const frame = document.createElement("div");
    frame.className = "frame";
    // The photo's average colour (from its BlurHash) fills the frame until the thumbnail arrives.
    if (/^#[0-9a-f]{6}$/.test(photo.placeholderColour || "")) frame.style.background = photo.placeholderColour;
    const img = document.createElement("img");
    img.loading = "lazy"; img.src = photo.thumb; img.alt = photo.name;
    frame.append(img);
    const caption = document.createElement("figcaption");
    caption.textContent = facts(photo);
    figure.append(frame, caption);
    figure.onclick = () => open(photo);
    grid.append(figure);
  }
}

load();

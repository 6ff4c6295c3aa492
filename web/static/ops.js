// The operations page: `darkroom fleet status` and `darkroom dlq list` as a table, refreshed, with redrive.
"use strict";
const $ = (sel) => document.querySelector(sel);

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.append(cell); else td.textContent = cell ?? "-";
    tr.append(td);
  }
  return tr;
}

async function refresh() {
  const response = await fetch("/api/ops", { credentials: "same-origin" });
  if (!response.ok) { $("#supervisor").textContent = `status unavailable (${response.status})`; return; }
  const { fleet, deadLetters } = await response.json();
  const perStage = deadLetters.perStage || {};
  const body = $("#stages tbody");
  body.replaceChildren();
  if (!fleet || fleet.error) {
    $("#supervisor").textContent = fleet ? fleet.error : "No fleet has run in this data dir (`darkroom fleet up`).";
  } else {
    const s = fleet.supervisor;
    $("#supervisor").textContent = `supervisor ${s.pid}: ${s.state}, up ${s.up} (state updated ${s.updated})`;
    for (const [name, st] of Object.entries(fleet.stages)) {
      const pids = st.workers.map((w) => (w.state === "running" ? `${w.pid} (${w.port}, ${w.ready ? "ready" : "not ready"})` : `#${w.slot} ${w.state}`)).join(", ");
      body.append(row([name, st.running, `${st.min}..${st.max}`, st.lag, st.throughput_per_s == null ? null : st.throughput_per_s.toFixed(1),
        perStage[name] || 0, pids]));
    }
  }
  $("#dlq-error").textContent = deadLetters.error || "";
  const letters = $("#letters tbody");
  const checked = new Set([...document.querySelectorAll("#letters input:checked")].map((i) => i.value));
  letters.replaceChildren();
  for (const l of deadLetters.letters) {
    const box = document.createElement("input");
    box.type = "checkbox"; box.value = l.id; box.checked = checked.has(l.id);
    box.onchange = () => { $("#redrive").disabled = !document.querySelector("#letters input:checked"); };
    letters.append(row([box, l.id, l.at, l.stage, l.errorClass, l.reason, l.key]));
  }
  $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

$("#redrive").onclick = async () => {
  const ids = [...document.querySelectorAll("#letters input:checked")].map((i) => i.value);
  const response = await fetch("/api/ops/redrive", { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ids }) });
  const body = await response.json();
  $("#redrive-result").textContent = response.ok ? `redriven: ${body.redriven.map((r) => r.id).join(", ")}` : body.error;
  refresh();
};

refresh();
setInterval(refresh, 5000);

// Live updates: each element with data-live subscribes to that server-sent event
// stream and inserts the rows it sends (HTML rendered and escaped by the server).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const target of document.querySelectorAll("[data-live]")) {
    const source = new EventSource(target.dataset.live);
    const newestFirst = target.dataset.order === "newest-first";
    source.addEventListener(target.dataset.liveEvent, (message) => {
      const holder = document.createElement("tbody");
      holder.innerHTML = message.data;
      const row = holder.firstElementChild;
      if (!row) return;
      const key = row.dataset.key;
      if (key && target.querySelector(`[data-key="${CSS.escape(key)}"]`)) return;
      row.classList.add("fresh");
      if (newestFirst) target.prepend(row); else target.append(row);
    });
    source.addEventListener("summary", (message) => {
      const panel = document.getElementById("summary");
      if (panel) panel.outerHTML = message.data;
    });
  }
});

// Live updates: each element with data-live follows that server-sent event stream and
// inserts the rows it sends (HTML rendered and escaped by the server). A stream is
// closed while its tab is hidden or left (browsers allow few connections per server),
// and opened again from the last event it delivered. A stream the server refuses (it serves
// a capped number at once: HTTP 503) leaves the page as it is, saying live updates are
// paused, and is tried again later.
"use strict";
(() => {
  const streams = [];
  const RETRY_MS = 30000;
  let retry = null;

  function paused(on) {
    for (const dot of document.querySelectorAll(".live-dot")) dot.classList.toggle("paused", on);
    for (const note of document.querySelectorAll(".live-paused")) note.hidden = !on;
  }

  function open(target) {
    const url = new URL(target.dataset.live, window.location.href);
    if (target.dataset.lastId) url.searchParams.set("after", target.dataset.lastId);
    const source = new EventSource(url);
    const newestFirst = target.dataset.order === "newest-first";
    source.addEventListener(target.dataset.liveEvent, (message) => {
      if (message.lastEventId) target.dataset.lastId = message.lastEventId;
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
    source.addEventListener("open", () => paused(false));
    source.addEventListener("error", () => {
      // CLOSED: the server refused the stream (a network error reconnects by itself).
      if (source.readyState !== EventSource.CLOSED) return;
      paused(true);
      if (retry === null) {
        retry = setTimeout(() => {
          retry = null;
          if (streams.length) {
            stop();
            start();
          }
        }, RETRY_MS);
      }
    });
    return source;
  }

  function start() {
    for (const target of document.querySelectorAll("[data-live]")) {
      streams.push(open(target));
    }
  }

  function stop() {
    if (retry !== null) clearTimeout(retry);
    retry = null;
    while (streams.length) streams.pop().close();
  }

  document.addEventListener("DOMContentLoaded", start);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) stop();
    else if (!streams.length) start();
  });
  window.addEventListener("pagehide", stop);
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && !streams.length) start();
  });
})();

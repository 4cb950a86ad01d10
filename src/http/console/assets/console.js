// autoseen console: the live page's feed (server-sent events on the session cookie). No other script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const feed = document.getElementById("feed");
  const status = document.getElementById("live-status");
  if (!feed) return;
  const source = new EventSource("/ui/live/events");
  source.onopen = () => { status.textContent = "connected: new happenings appear at the top"; };
  source.onerror = () => { status.textContent = "disconnected; retrying…"; };
  source.addEventListener("missed", (e) => { status.textContent = `fell behind: ${e.data} happenings not shown`; });
  source.addEventListener("happening", (e) => {
    const h = JSON.parse(e.data);
    const row = document.createElement("tr");
    row.dataset.what = h.what;
    for (const value of [new Date(h.at).toLocaleTimeString(), h.session, h.chat, h.message_id, h.what, h.rule, h.detail]) {
      const cell = document.createElement("td");
      cell.textContent = value ?? "";
      row.appendChild(cell);
    }
    feed.prepend(row);
    while (feed.rows.length > 500) feed.deleteRow(-1);
  });
});

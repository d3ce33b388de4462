/* The demo's admin page: every user's live sessions (refreshed every 2 s), revoke one
   session or all of a user's, and the audit trail as a live feed (polled every 2 s with
   the cursor of the answer before: only the records after it come). */
(function () {
  "use strict";
  function $(id) { return document.getElementById(id); }
  function when(ms) { return new Date(ms).toLocaleTimeString(); }
  function cell(row, text, label) {
    var td = document.createElement("td");
    td.textContent = text;
    if (label) td.dataset.label = label;
    row.appendChild(td);
    return td;
  }
  function button(text, onClick) {
    var b = document.createElement("button");
    b.className = "ghost small";
    b.type = "button";
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }

  async function revoke(target) {
    target.reason = $("reason").value || "admin";
    var response = await fetch("/admin/revoke", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(target)
    });
    var body = await response.json();
    var result = $("admin-result");
    result.className = "result " + (response.ok ? "ok" : "bad");
    result.textContent = response.ok
      ? "Revoked " + body.revoked + " session(s)."
      : body.error + ": " + body.message;
    load();
  }

  async function load() {
    var response = await fetch("/admin/sessions", { credentials: "same-origin" });
    if (response.status === 401) { location.href = "/admin/login"; return; }
    if (!response.ok) return;
    var body = await response.json();
    var tbody = $("admin-sessions");
    tbody.textContent = "";
    if (!body.users.length) {
      var empty = document.createElement("tr");
      cell(empty, "No live sessions.").colSpan = 6;
      tbody.appendChild(empty);
    }
    body.users.forEach(function (entry) {
      entry.sessions.forEach(function (s, index) {
        var row = document.createElement("tr");
        row.dataset.sessionId = s.id;
        row.dataset.user = entry.user;
        var who = cell(row, entry.user, "User");
        if (index === 0 && entry.sessions.length > 1) {
          who.appendChild(document.createTextNode(" "));
          who.appendChild(button("Revoke all", function () { revoke({ user: entry.user }); }));
        }
        cell(row, s.browser + " on " + s.os, "Device");
        cell(row, s.place || "unknown", "Place");
        cell(row, when(s.last_seen), "Last seen");
        cell(row, String(s.live_tabs), "Live tabs");
        cell(row, "").appendChild(button("Revoke", function () { revoke({ session: s.id }); }));
        tbody.appendChild(row);
      });
    });
  }

  var FEED_ROWS = 200;
  var feedCursor = null;

  function device(d) {
    if (!d || !d.browser) return "";
    return d.browser + " on " + d.os;
  }

  function record(r) {
    var row = document.createElement("tr");
    row.dataset.id = r.id;
    row.dataset.event = r.event;
    row.dataset.actor = r.actor;
    row.dataset.user = r.user || "";
    cell(row, when(r.at), "Time");
    cell(row, r.event, "Event");
    cell(row, r.user || "-", "User");
    cell(row, r.session || "-", "Session");
    var what = device(r.device);
    if (r.by && device(r.by) && device(r.by) !== what) what += " (by " + device(r.by) + ")";
    var dev = cell(row, what || "-", "Device");
    var place = cell(row, r.place || "-", "Place");
    if (r.new_device) { dev.appendChild(document.createTextNode(" ")); dev.appendChild(mark("new device")); }
    if (r.new_place) { place.appendChild(document.createTextNode(" ")); place.appendChild(mark("new place")); }
    cell(row, r.actor, "Actor");
    cell(row, r.reason || "", "Reason");
    return row;
  }

  function mark(text) {
    var span = document.createElement("span");
    span.className = "pill bad small";
    span.textContent = text;
    return span;
  }

  async function feed() {
    var url = "/admin/audit" + (feedCursor ? "?cursor=" + encodeURIComponent(feedCursor) : "");
    var response = await fetch(url, { credentials: "same-origin" });
    if (response.status === 400) { feedCursor = null; return; }  // start again from the newest
    if (!response.ok) return;
    var body = await response.json();
    var tbody = $("admin-audit");
    if (feedCursor === null) tbody.textContent = "";
    feedCursor = body.cursor;
    body.records.forEach(function (r) {  // oldest first: each goes on top
      if (!tbody.querySelector("tr[data-id='" + CSS.escape(r.id) + "']")) {
        tbody.insertBefore(record(r), tbody.firstChild);
      }
    });
    while (tbody.children.length > FEED_ROWS) tbody.removeChild(tbody.lastChild);
  }

  load();
  feed();
  setInterval(function () { load(); feed(); }, 2000);
})();

/* The demo's admin page: every user's live sessions (refreshed every 2 s), revoke one
   session or all of a user's, and this worker's security events. */
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

  async function events() {
    var response = await fetch("/admin/events", { credentials: "same-origin" });
    if (!response.ok) return;
    var body = await response.json();
    var list = $("admin-events");
    list.textContent = "";
    body.events.slice(0, 50).forEach(function (e) {
      var item = document.createElement("li");
      var line;
      try { line = JSON.parse(e.line); } catch (err) { line = { event: "message", message: e.line }; }
      var fields = Object.keys(line).filter(function (k) { return k !== "event"; })
        .map(function (k) { return k + "=" + JSON.stringify(line[k]); }).join(" ");
      item.textContent = when(e.at) + "  " + line.event + "  " + fields;
      list.appendChild(item);
    });
  }

  load();
  events();
  setInterval(function () { load(); events(); }, 2000);
})();

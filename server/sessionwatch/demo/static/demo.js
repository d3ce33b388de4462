/* The demo page: sessions table, protected action, policy switcher and an event log.
   Everything shown comes from the server; text is set with textContent only. */
(function () {
  "use strict";
  var prefix = document.currentScript.getAttribute("data-prefix") || "/_sessionwatch";
  var $ = function (id) { return document.getElementById(id); };

  function when(ms) {
    if (!ms) return "–";
    var seconds = Math.round((Date.now() - ms) / 1000);
    if (seconds < 10) return "just now";
    if (seconds < 90) return seconds + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    return new Date(ms).toLocaleString();
  }

  // Each cell carries its column's name: on a phone the rows are stacked (demo.css).
  function cell(row, text) {
    var td = document.createElement("td");
    var head = document.querySelectorAll(".sessions th")[row.children.length];
    if (head && head.textContent) td.setAttribute("data-label", head.textContent);
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function log(type, detail, note) {
    var item = document.createElement("li");
    var by = detail && detail.by ? " — " + detail.by.browser + " on " + detail.by.os : "";
    item.textContent = new Date().toLocaleTimeString() + "  " + type + by + (note || "");
    $("events").prepend(item);
    while ($("events").children.length > 30) $("events").lastChild.remove();
  }

  // Relative times ("2 min ago") are re-rendered here: the list itself is fetched only
  // when something happened (ready, a sign-in, a session unknown to the table), and its
  // "Live tabs" follow the server's presence events, never a periodic request.
  function times() {
    document.querySelectorAll("#sessions [data-at]").forEach(function (td) {
      td.textContent = when(Number(td.getAttribute("data-at")));
    });
  }
  function timed(row, ms) {
    cell(row, when(ms)).setAttribute("data-at", String(ms || 0));
  }

  var counted = {}; // session id -> "at" of the count shown (two processes may tell it out of order)
  function rowOf(id) {
    var rows = $("sessions").rows;
    for (var i = 0; i < rows.length; i++) if (rows[i].dataset.sessionId === id) return rows[i];
    return null;
  }

  async function loadSessions() {
    var response = await fetch(prefix + "/sessions", { credentials: "same-origin" });
    if (!response.ok) return;
    var body = await response.json();
    var tbody = $("sessions");
    tbody.textContent = "";
    counted = {};
    body.sessions.forEach(function (s) {
      var row = document.createElement("tr");
      row.dataset.sessionId = s.id;
      var device = cell(row, s.browser + " on " + s.os);
      if (s.current) {
        var badge = document.createElement("span");
        badge.className = "pill small";
        badge.textContent = "this device";
        device.appendChild(document.createTextNode(" "));
        device.appendChild(badge);
      }
      cell(row, s.place || "unknown");
      timed(row, s.created);
      timed(row, s.last_seen);
      cell(row, String(s.live_tabs)).className = "live-tabs";
      var actions = cell(row, "");
      if (!s.current) {
        var button = document.createElement("button");
        button.className = "ghost small";
        button.type = "button";
        button.textContent = "Sign out";
        button.setAttribute("data-sessionwatch-protected", "");
        button.addEventListener("click", async function () {
          await fetch(prefix + "/sessions/" + encodeURIComponent(s.id), { method: "DELETE" });
          loadSessions();
        });
        actions.appendChild(button);
      }
      tbody.appendChild(row);
    });
  }

  $("transfer").addEventListener("submit", async function (event) {
    event.preventDefault();
    var amount = Number(new FormData(event.target).get("amount"));
    var response = await fetch("/api/transfer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ amount: amount })
    });
    var body = await response.json().catch(function () { return {}; });
    $("transfer-result").textContent = response.ok ? body.message : "Refused (" + response.status + "): " + (body.message || body.error);
    $("transfer-result").className = "result " + (response.ok ? "ok" : "bad");
  });

  $("revoke-others").addEventListener("click", async function () {
    var response = await fetch(prefix + "/sessions/revoke-others", { method: "POST" });
    if (response.ok) loadSessions();
  });

  $("policy").addEventListener("submit", async function (event) {
    event.preventDefault();
    var form = new FormData(event.target);
    var response = await fetch("/policy", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ tabs: form.get("tabs"), devices: form.get("devices"), on_limit: form.get("on_limit") })
    });
    $("policy-result").textContent = response.ok ? "Applied to new claims and sign-ins." : "Refused (" + response.status + ")";
  });

  // SessionWatch.on, not document listeners: this script may run after the claim answer,
  // and on() hands a late listener the current state's events at once.
  var states = { active: "active", superseded: "superseded", evicted: "evicted", revoked: "revoked",
                 logged_out: "signed out", expired: "expired" };
  // A session that ended (here or elsewhere) is no longer "Signed in as …": the header
  // says so and offers the sign-in page instead of a sign-out that has nothing to end.
  var ended = { evicted: "Signed out: another device took over.", revoked: "Signed out from another device.",
                logged_out: "Signed out.", expired: "Signed out: the session expired." };
  function showSignedOut(state) {
    var account = $("account");
    if (!account || !ended[state]) return;
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = ended[state];
    var link = document.createElement("a");
    link.href = "/login";
    link.textContent = "Sign in";
    link.style.color = "inherit"; // CSSOM, allowed by the demo's style-src 'self'
    account.replaceChildren(who, link);
  }
  function showState(state) {
    if (!states[state]) return;
    $("tab-state").textContent = states[state];
    $("tab-state").className = "pill " + (state === "active" ? "ok" : "bad");
    showSignedOut(state);
  }
  var own = null; // this tab's session id (from "ready")
  SessionWatch.on("presence", function (detail) {
    var row = rowOf(detail.id);
    log("presence", null, " — " + detail.live_tabs + " live tab(s) " + (detail.id === own ? "in this session" : "in another session"));
    if (!row) return loadSessions(); // a session the table does not show yet
    if (counted[detail.id] > detail.at) return; // an older count, told late
    counted[detail.id] = detail.at;
    row.querySelector(".live-tabs").textContent = String(detail.live_tabs);
  });
  ["claimed", "ready", "superseded", "evicted", "revoked", "logged_out", "expiring", "extended", "expired", "signed_in"]
    .forEach(function (type) {
      SessionWatch.on(type, function (detail) {
        detail = detail || {};
        log(type, detail);
        // this tab's own generation; a superseded event carries the newer tab's
        if ((type === "claimed" || type === "ready") && detail.gen) $("tab-gen").textContent = String(detail.gen);
        if (detail.expires_at) $("tab-expires").textContent = new Date(detail.expires_at).toLocaleTimeString();
        if (type === "ready") {
          own = detail.session || own;
          loadSessions();
        }
        if (type === "signed_in") loadSessions(); // its tabs' presence follows as events
      });
    });
  SessionWatch.on("state", function (detail) { showState(detail.state); });
  showState(SessionWatch.state());

  loadSessions();
  setInterval(times, 15000);
})();

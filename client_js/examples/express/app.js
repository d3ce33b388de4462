"use strict";
// The Express upstream of the proxy demo: no sessionwatch code but its login and logout
// calls to the session API. nginx says who the user is (X-SessionWatch-User) and
// refuses stale tabs (409) before a request gets here.
// PORT, SESSIONWATCH_URL and SESSIONWATCH_API_KEY come from the environment.
const express = require("express");
const { SessionAPI, SessionAPIError } = require("sessionwatch-node");

const PASSWORD = "demo";
const api = new SessionAPI(process.env.SESSIONWATCH_URL, process.env.SESSIONWATCH_API_KEY);
const app = express();
app.disable("x-powered-by");
app.use(express.urlencoded({ extended: false, limit: "4kb" }));
app.use(express.json({ limit: "4kb" }));

function currentUser(req) {
  const raw = req.get("X-SessionWatch-User") || "";
  try {
    return decodeURIComponent(raw) || null;
  } catch (error) {
    return null;
  }
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
}

function page(user, error) {
  const body = user
    ? '<p>Signed in as <strong id="user">' + escape(user) + "</strong> (Express).</p>" +
      '<p><button id="transfer" type="button" data-sessionwatch-protected>Transfer 10 coins</button> ' +
      '<span id="result" aria-live="polite"></span></p>' +
      '<form method="post" action="/logout"><button type="submit" data-sessionwatch-skip>Sign out</button></form>' +
      "<script>document.getElementById('transfer').addEventListener('click', async () => {" +
      "const a = await fetch('/api/transfer', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{\"amount\":10}'});" +
      "const b = await a.json().catch(() => ({}));" +
      "document.getElementById('result').textContent = a.status + ' ' + (b.message || b.error || '');});</script>"
    : '<form method="post" action="/login">' + (error ? '<p id="error">' + escape(error) + "</p>" : "") +
      '<label>User <input name="username"></label> <label>Password <input name="password" type="password"> (it is "demo")</label> ' +
      '<button type="submit">Sign in</button></form>';
  const script = user ? '<script src="/_sessionwatch/client.js" defer data-signin-url="/login"></script>' : "";
  return '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Express behind nginx</title>' +
    script + "</head><body><h1>Express behind nginx</h1>" + body + "</body></html>";
}

app.get("/", (req, res) => {
  const user = currentUser(req);
  if (!user) return res.redirect("/login");
  res.send(page(user));
});

app.get("/login", (req, res) => res.send(page(null)));

app.post("/login", async (req, res, next) => {
  const username = String(req.body.username || "").trim();
  if (!username || username.length > 64 || req.body.password !== PASSWORD) {
    return res.status(401).send(page(null, "Wrong user or password."));
  }
  try {
    const result = await api.login(username, {
      cookie: req.get("Cookie"),
      userAgent: req.get("User-Agent"),
      clientIp: req.get("X-Real-IP") || req.socket.remoteAddress
    });
    res.append("Set-Cookie", result.cookie.set_cookie);
    res.redirect(303, "/");
  } catch (error) {
    if (error instanceof SessionAPIError && error.code === "session_limit_reached") {
      return res.status(403).send(page(null, "You already have " + error.body.limit + " active session(s)."));
    }
    next(error);
  }
});

app.post("/logout", async (req, res, next) => {
  try {
    const result = await api.logout(req.get("Cookie") || "");
    res.append("Set-Cookie", result.cookie.set_cookie);
    res.redirect(303, "/login");
  } catch (error) {
    next(error);
  }
});

app.post("/api/transfer", (req, res) => {
  const user = currentUser(req);
  if (!user) return res.status(401).json({ error: "not_signed_in", message: "Sign in first." });
  const amount = req.body && req.body.amount !== undefined ? req.body.amount : 10;
  if (typeof amount !== "number" || !(amount > 0 && amount <= 1e6)) {
    return res.status(400).json({ error: "bad_request", message: "amount must be 0-1,000,000" });
  }
  res.json({ ok: true, user: user, message: "Transferred " + amount + " coins." });
});

// The same small answer with or without a user (the benchmark's route).
app.all("/api/ping", (req, res) => res.json({ pong: true }));

app.get("/healthz", (req, res) => res.type("text/plain").send("ok"));

app.listen(Number(process.env.PORT || 3000), "127.0.0.1");

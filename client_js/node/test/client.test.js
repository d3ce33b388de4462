"use strict";
// The client against a real HTTP server on a free loopback port (node:http).
const test = require("node:test");
const assert = require("node:assert");
const http = require("node:http");
const { SessionAPI, SessionAPIError } = require("..");

function serve(handler) {
  return new Promise((resolve) => {
    const server = http.createServer(handler);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

test("sends the bearer key and the JSON body, drops absent fields", async () => {
  let seen;
  const server = await serve((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      seen = { method: req.method, url: req.url, auth: req.headers.authorization, body: JSON.parse(body) };
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify({ session: "p1", cookie: { set_cookie: "session=x" } }));
    });
  });
  try {
    const api = new SessionAPI("http://127.0.0.1:" + server.address().port, "k".repeat(32));
    const result = await api.login("alice", { cookie: "session=old", userAgent: "UA" });
    assert.strictEqual(result.session, "p1");
    assert.deepStrictEqual(seen, {
      method: "POST", url: "/_sessionwatch/api/v1/login", auth: "Bearer " + "k".repeat(32),
      body: { user: "alice", cookie: "session=old", user_agent: "UA" }
    });
  } finally {
    server.close();
  }
});

test("a refusal rejects with its status and code", async () => {
  const server = await serve((req, res) => {
    res.statusCode = 401;
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ error: "api_key_invalid", message: "This API key is not valid." }));
  });
  try {
    const api = new SessionAPI("http://127.0.0.1:" + server.address().port, "wrong-key");
    await assert.rejects(api.sessions("alice"), (error) => {
      assert.ok(error instanceof SessionAPIError);
      assert.strictEqual(error.status, 401);
      assert.strictEqual(error.code, "api_key_invalid");
      return true;
    });
  } finally {
    server.close();
  }
});

test("an unreachable service rejects with code unreachable", async () => {
  const server = await serve(() => {});
  const port = server.address().port;
  await new Promise((resolve) => server.close(resolve));
  const api = new SessionAPI("http://127.0.0.1:" + port, "key", { timeout: 2000 });
  await assert.rejects(api.logout("session=x"), (error) => error.code === "unreachable" && error.status === 0);
});

test("refuses a non-http base URL and a missing key", () => {
  assert.throws(() => new SessionAPI("file:///etc/passwd", "key"), TypeError);
  assert.throws(() => new SessionAPI("http://127.0.0.1:1", ""), TypeError);
});

test("sessions() follows next_cursor until the last page", async () => {
  const urls = [];
  const server = await serve((req, res) => {
    urls.push(req.url);
    const cursor = new URL(req.url, "http://x").searchParams.get("cursor");
    const page = cursor ? { sessions: [{ id: "b" }], next_cursor: null } : { sessions: [{ id: "a" }], next_cursor: "c1" };
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ user: "alice", ...page }));
  });
  try {
    const api = new SessionAPI("http://127.0.0.1:" + server.address().port, "k".repeat(32));
    assert.deepStrictEqual((await api.sessions("alice")).map((s) => s.id), ["a", "b"]);
    assert.deepStrictEqual(urls, [
      "/_sessionwatch/api/v1/sessions?user=alice&limit=100",
      "/_sessionwatch/api/v1/sessions?user=alice&limit=100&cursor=c1"
    ]);
  } finally {
    server.close();
  }
});

test("completeLogin and reauthenticated post the chooser's choice and the re-authentication", async () => {
  const seen = [];
  const server = await serve((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      seen.push({ url: req.url, body: JSON.parse(body) });
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify({ session: "p2", user: "alice" }));
    });
  });
  try {
    const api = new SessionAPI("http://127.0.0.1:" + server.address().port, "k".repeat(32));
    assert.strictEqual((await api.completeLogin("tok", ["p1"], { cookie: "session=a" })).session, "p2");
    assert.strictEqual((await api.reauthenticated("session=b")).user, "alice");
    assert.deepStrictEqual(seen, [
      { url: "/_sessionwatch/api/v1/complete-login", body: { pending: "tok", evict: ["p1"], cookie: "session=a" } },
      { url: "/_sessionwatch/api/v1/reauthenticated", body: { cookie: "session=b" } }
    ]);
  } finally {
    server.close();
  }
});

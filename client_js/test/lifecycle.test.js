"use strict";
// Loading, settings, the first claim, start/stop, polling without WebSocket, re-verifying
// on visibility/online/bfcache, the heartbeat, and the module forms.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const vm = require("node:vm");
const fs = require("node:fs");
const { createTab, Clock, Server, SOURCE_PATH } = require("./harness");

test("the claim request: POST JSON {} with same-origin credentials, no token", async () => {
  const tab = createTab();
  const [claim] = tab.server.requests;
  assert.equal(claim.url, "https://app.example.com/_sessionwatch/claim");
  assert.equal(claim.method, "POST");
  assert.equal(claim.headers.get("content-type"), "application/json");
  assert.equal(claim.body, "{}");
  assert.equal(claim.init.credentials, "same-origin");
  assert.equal(claim.tab, null);
  await tab.flush();
  assert.equal(tab.socket.url, "wss://app.example.com/_sessionwatch/ws");
});

test("ws:// on an http page, same host and port", async () => {
  const tab = createTab({ url: "http://localhost:5000/x", script: { src: "http://localhost:5000/_sessionwatch/client.js" } });
  await tab.flush();
  assert.equal(tab.socket.url, "ws://localhost:5000/_sessionwatch/ws");
});

test("exactly one global; loading the file twice changes nothing", async () => {
  let before;
  const tab = createTab({ beforeLoad: ({ window }) => (before = Object.keys(window)) });
  const after = Object.keys(tab.window);
  assert.deepEqual(
    after.filter((k) => !before.includes(k)),
    ["SessionWatch"]
  );
  assert.deepEqual(
    before.filter((k) => !after.includes(k)),
    []
  );
  const api = tab.window.SessionWatch;
  const wrapped = tab.window.fetch;
  tab.document.currentScript = tab.document.head.querySelector("script"); // as a second <script> tag would
  vm.runInContext(fs.readFileSync(SOURCE_PATH, "utf8"), tab.window);
  assert.equal(tab.window.SessionWatch, api);
  assert.equal(tab.window.fetch, wrapped, "not wrapped twice");
  await tab.flush();
  assert.equal(tab.server.calls("/_sessionwatch/claim").length, 1, "not started twice");
  assert.equal(api.version, "0.1.0");
});

test("data-autostart=false waits for start(); start() options win over data-*", async () => {
  const tab = createTab({ script: { data: { autostart: "false", prefix: "/from-data" } } });
  await tab.flush();
  assert.equal(tab.server.requests.length, 0);
  assert.equal(tab.api.state(), "stopped");
  tab.api.start({ prefix: "/from-options/" });
  assert.equal(tab.server.requests[0].path, "/from-options/claim");
  assert.equal(tab.server.requests.length, 2, "the claim, then the stylesheet");
  tab.api.start({ prefix: "/from-options", signinUrl: "/enter" }); // running: re-configures in place
  await tab.flush();
  assert.equal(tab.server.requests.length, 2, "same server: no new claim");
});

test("data-prefix, and the prefix of the script's own URL", async () => {
  const clock = new Clock();
  const a = createTab({ clock, server: new Server(clock).mount("/sw"), script: { data: { prefix: "/sw/" } } });
  assert.equal(a.server.requests[0].path, "/sw/claim");
  await a.flush();
  assert.equal(a.socket.url, "wss://app.example.com/sw/ws");
  const b = createTab({ script: { src: "https://app.example.com/auth/_sw/client.js?v=3" } });
  assert.equal(b.server.requests[0].path, "/auth/_sw/claim");
  const c = createTab({ script: { src: "https://cdn.example.net/auth/_sw/client.js" } });
  assert.equal(c.server.requests[0].path, "/_sessionwatch/claim", "another origin's path is not ours");
  const d = createTab({ script: { src: "https://app.example.com/static/sessionwatch.js" } });
  assert.equal(d.server.requests[0].path, "/_sessionwatch/claim");
});

test("as an ES module (no currentScript) nothing starts by itself", async () => {
  const tab = createTab({ script: null });
  await tab.flush();
  assert.equal(tab.server.requests.length, 0);
  assert.equal(tab.api.state(), "stopped");
  assert.equal(tab.api.token(), null);
  tab.api.start();
  await tab.ready();
  assert.equal(tab.api.state(), "active");
  assert.equal(tab.api.token(), tab.server.token(1));
});

test("stop(): socket closed, timers and channel gone, no token, state stopped", async () => {
  const tab = await (async () => {
    const t = createTab();
    await t.ready();
    return t;
  })();
  const socket = tab.socket;
  tab.api.stop();
  await tab.flush();
  assert.equal(socket.closedWith, 1000);
  assert.equal(tab.api.state(), "stopped");
  assert.equal(tab.api.token(), null);
  assert.equal(tab.clock.pending().length, 0);
  assert.equal(tab.bus.size, 0, "channel closed");
  await tab.clock.advance(3600000);
  assert.equal(tab.sockets.length, 1);
  tab.api.start();
  await tab.ready();
  assert.equal(tab.api.token(), tab.server.token(2), "a new start claims anew");
});

test("without fetch (or Promise, URL…) it quits silently but keeps its API", async () => {
  const tab = createTab({ without: ["fetch"] });
  await tab.flush();
  assert.equal(tab.api.state(), "unsupported");
  assert.equal(tab.sockets.length, 0);
  assert.doesNotThrow(() => tab.api.stop());
  await assert.rejects(tab.api.claim());
  await assert.rejects(tab.api.extend());
});

test("without WebSocket: poll GET /state with the token every pollInterval and on focus", async () => {
  const tab = createTab({ without: ["WebSocket"], script: { data: { pollInterval: "10" } } });
  await tab.flush();
  assert.equal(tab.api.state(), "active");
  await tab.clock.advance(30000);
  const checks = tab.server.calls("/_sessionwatch/state");
  assert.equal(checks.length, 3);
  assert.ok(checks.every((r) => r.tab === tab.server.token(1)));
  tab.fire("focus");
  await tab.flush();
  assert.equal(tab.server.calls("/_sessionwatch/state").length, 4);
  tab.server.gen = 2; // another tab claimed
  await tab.clock.advance(10000);
  assert.equal(tab.api.state(), "superseded");
  assert.equal(tab.bannerState, "superseded");
});

for (const [body, state, detail] of [
  [{ error: "expired" }, "expired", { reason: "expired" }],
  [{ error: "no_session" }, "expired", { reason: "no_session" }],
  [{ error: "revoked", reason: "revoked" }, "revoked", { reason: "revoked" }],
  [{ error: "revoked", reason: "admin" }, "revoked", { reason: "admin" }],
  [{ error: "revoked", reason: "evicted" }, "evicted", { by: null }],
  [{ error: "revoked", reason: "logged_out" }, "logged_out", {}],
  [{ error: "logged_out" }, "logged_out", {}],
  [{ error: "evicted" }, "evicted", { by: null }],
]) {
  test(`polling: 401 ${JSON.stringify(body)} → ${state}`, async () => {
    const tab = createTab({ without: ["WebSocket"] });
    await tab.flush();
    tab.server.routes["GET /_sessionwatch/state"] = () => ({ status: 401, body });
    await tab.clock.advance(30000);
    assert.equal(tab.api.state(), state);
    const event = tab.events(state)[0];
    for (const [k, v] of Object.entries(detail)) assert.deepEqual(event.detail[k], v);
    assert.equal(tab.bannerState, state);
    await tab.clock.advance(300000);
    assert.equal(tab.server.calls("/_sessionwatch/state").length, 1, "polling stopped");
  });
}

test("polling: an invalid token is replaced by a new claim (like close 4007)", async () => {
  const tab = createTab({ without: ["WebSocket"] });
  await tab.flush();
  tab.server.routes["GET /_sessionwatch/state"] = () => ({ status: 200, body: { tab: "invalid" } });
  await tab.clock.advance(30000);
  assert.equal(tab.server.calls("/_sessionwatch/claim").length, 2);
  assert.equal(tab.api.token(), tab.server.token(2));
});

test("visible again: hello re-verifies on an open socket; hidden does nothing", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  const visibility = (value) => {
    tab.document.visibilityState = value;
    tab.document.dispatchEvent({ type: "visibilitychange", target: tab.document });
  };
  visibility("hidden");
  assert.equal(socket.sent.length, 1);
  visibility("visible");
  assert.equal(socket.sent.length, 2);
  assert.deepEqual(socket.sent[1], { type: "hello", v: 1, tab: tab.api.token() });
  socket.message({ type: "superseded", gen: 2, by: null }); // the truth arrives as the answer
  await tab.flush();
  assert.equal(tab.api.state(), "superseded");
});

test("online / visible with the socket down: reconnect now instead of waiting", async () => {
  const tab = createTab();
  tab.setRandom(0.999);
  const socket = await tab.ready();
  socket.serverClose(1006);
  await tab.flush();
  assert.ok(tab.clock.pending()[0].delay > 4000);
  tab.fire("online");
  await tab.flush();
  assert.equal(tab.sockets.length, 2);
  assert.equal(tab.clock.pending().length, 0, "the scheduled retry was dropped");
});

test("back/forward cache: pagehide closes the socket, pageshow(persisted) reconnects", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  tab.fire("pagehide", { persisted: true });
  await tab.flush();
  assert.equal(socket.closedWith, 1000);
  assert.equal(tab.clock.pending().length, 0, "no retry while in the cache");
  tab.fire("pageshow", { persisted: false });
  await tab.flush();
  assert.equal(tab.sockets.length, 1, "a normal pageshow is the first load");
  tab.fire("pageshow", { persisted: true });
  await tab.flush();
  assert.equal(tab.sockets.length, 2);
  tab.socket.accept();
  assert.deepEqual(tab.socket.sent, [{ type: "hello", v: 1, tab: tab.api.token() }]);
});

test("heartbeat: a ping every 20 s even while the server talks; no answer in 10 s → reconnect", async () => {
  const tab = createTab();
  tab.setRandom(0);
  const socket = await tab.ready();
  const pings = () => socket.sent.filter((m) => m.type === "ping").length;
  for (let i = 0; i < 4; i++) {
    await tab.clock.advance(5000);
    socket.message({ type: "extended", expires_at: tab.server.expiresAt + i + 1 }); // server traffic
  }
  assert.equal(pings(), 1, "server traffic does not postpone the client's ping (the server needs our frames)");
  socket.message({ type: "pong" });
  await tab.clock.advance(19999);
  assert.equal(pings(), 1);
  await tab.clock.advance(1);
  assert.equal(pings(), 2, "20 s after the answer");
  await tab.clock.advance(9999);
  assert.equal(socket.closedWith, null);
  await tab.clock.advance(1);
  assert.equal(socket.closedWith, 1000, "a silent line is dropped");
  assert.equal(tab.sockets.length, 2, "and replaced");
  assert.equal(tab.api.state(), "active");
});

test("heartbeat timers never nest deeper than 2 (Chrome throttles chains of 5+ in hidden tabs)", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  // HTML timer nesting: a timer set while a level-n timer callback runs has level n + 1;
  // one set from an event handler (onmessage) has level 1.
  let current = 0, deepest = 0;
  const setTimeout = tab.window.setTimeout;
  tab.window.setTimeout = (fn, delay) => {
    const level = current + 1;
    deepest = Math.max(deepest, level);
    return setTimeout(() => {
      const saved = current;
      current = level;
      try {
        fn();
      } finally {
        current = saved;
      }
    }, delay);
  };
  // re-arm once from a frame so the wrapped setTimeout is used, then run 10 ping rounds
  socket.message({ type: "pong" });
  for (let i = 0; i < 10; i++) {
    await tab.clock.advance(20000);
    socket.message({ type: "pong" });
  }
  assert.ok(socket.sent.filter((m) => m.type === "ping").length >= 10);
  assert.ok(deepest <= 2, `timers nested ${deepest} deep`);
});

test("require() gives the API (Node, no DOM: unsupported, but callable)", () => {
  const api = require(path.join(__dirname, "..", "sessionwatch.js"));
  assert.equal(api.version, "0.1.0");
  assert.equal(globalThis.SessionWatch, api);
  assert.equal(api.state(), "stopped");
  api.start();
  assert.equal(api.state(), "unsupported");
  for (const name of ["start", "stop", "on", "off", "claim", "extend", "token", "state"]) {
    assert.equal(typeof api[name], "function", name);
  }
});

test("sessionwatch.mjs re-exports the same API", async () => {
  const mod = await import(path.join(__dirname, "..", "sessionwatch.mjs"));
  assert.equal(mod.default, globalThis.SessionWatch);
  for (const name of ["start", "stop", "on", "off", "claim", "extend", "token", "state"]) {
    assert.equal(mod[name], mod.default[name], name);
  }
  assert.equal(mod.version, "0.1.0");
});

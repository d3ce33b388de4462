"use strict";
// Close codes, docs/protocol.md §3: terminal codes stop, 4007 reclaims, 4013 reconnects at
// once, 4011 waits for focus, 4006 falls back to HTTP, everything else backs off.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { createTab, Clock, Server } = require("./harness");

for (const [code, state, text] of [
  [4002, "expired", /expired/],
  [4003, "revoked", /signed out/],
  [4004, "logged_out", /signed out/],
  [4005, "evicted", /new sign-in on another device/],
]) {
  test(`close ${code} without a message → ${state}, banner, no reconnect`, async () => {
    const tab = createTab();
    const socket = await tab.ready();
    socket.serverClose(code);
    await tab.flush();
    assert.equal(tab.api.state(), state);
    assert.equal(tab.events(state).length, 1);
    assert.equal(tab.events(state)[0].detail.code, code);
    assert.equal(tab.bannerState, state);
    assert.match(tab.bannerText, text);
    assert.ok(tab.button("sign-in"), "Sign in again is offered");
    assert.equal(tab.clock.pending().length, 0, "no timer left: nothing will retry");
    await tab.clock.advance(3600000);
    tab.fire("focus");
    tab.fire("online");
    await tab.flush();
    assert.equal(tab.sockets.length, 1);
    assert.equal(tab.server.calls("/_sessionwatch/claim").length, 1);
  });
}

test("close 4007 → claim again at once, then hello with the new token", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  socket.serverClose(4007);
  await tab.flush();
  assert.deepEqual(
    tab.clock.pending().map((t) => t.delay),
    [0],
    "the reconnect is due at once"
  );
  await tab.clock.advance(0);
  assert.equal(tab.server.calls("/_sessionwatch/claim").length, 2);
  assert.equal(tab.api.token(), tab.server.token(2));
  assert.equal(tab.sockets.length, 2);
  tab.socket.accept();
  assert.deepEqual(tab.socket.sent, [{ type: "hello", v: 1, tab: tab.server.token(2) }]);
});

test("close 4007 twice without ready falls back to backoff (no tight loop)", async () => {
  const tab = createTab();
  tab.setRandom(0.5);
  const socket = await tab.ready();
  socket.serverClose(4007);
  await tab.flush();
  await tab.clock.advance(0);
  tab.socket.accept();
  tab.socket.serverClose(4007);
  await tab.flush();
  assert.deepEqual(tab.clock.pending().map((t) => t.delay), [5000], "0.5 × 10 s");
});

test("close 4013 (session rotated) → reconnect at once with the same token, no claim", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  const token = tab.api.token();
  socket.serverClose(4013);
  await tab.flush();
  assert.deepEqual(tab.clock.pending().map((t) => t.delay), [0]);
  await tab.clock.advance(0);
  assert.equal(tab.sockets.length, 2);
  tab.socket.accept();
  assert.deepEqual(tab.socket.sent, [{ type: "hello", v: 1, tab: token }]);
  assert.equal(tab.server.calls("/_sessionwatch/claim").length, 1);
  tab.socket.message({ type: "ready", v: 1, gen: 1, expires_at: 1, session: "S1-rotated", user: "u1" });
  await tab.flush();
  assert.equal(tab.api.state(), "active");
});

test("close 4011 → no retries until the page regains focus", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  socket.serverClose(4011);
  await tab.flush();
  assert.equal(tab.clock.pending().length, 0);
  await tab.clock.advance(3600000);
  assert.equal(tab.sockets.length, 1);
  tab.fire("focus");
  await tab.flush();
  assert.equal(tab.sockets.length, 2);
});

test("close 4011 also resumes when the page becomes visible again", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  socket.serverClose(4011);
  await tab.flush();
  tab.document.visibilityState = "hidden";
  tab.document.dispatchEvent({ type: "visibilitychange", target: tab.document });
  assert.equal(tab.sockets.length, 1);
  tab.document.visibilityState = "visible";
  tab.document.dispatchEvent({ type: "visibilitychange", target: tab.document });
  await tab.flush();
  assert.equal(tab.sockets.length, 2);
});

for (const code of [1000, 1001, 1005, 1006, 1007, 1008, 1009, 1011, 1013, 4009, 4010, 4012, 4014, 4999]) {
  test(`close ${code} after ready → reconnect with backoff`, async () => {
    const tab = createTab();
    tab.setRandom(0.5);
    const socket = await tab.ready();
    socket.serverClose(code);
    await tab.flush();
    assert.deepEqual(tab.clock.pending().map((t) => t.delay), [2500]);
    assert.equal(tab.api.state(), "active");
    await tab.clock.advance(2500);
    assert.equal(tab.sockets.length, 2);
    assert.equal(tab.server.calls("/_sessionwatch/claim").length, 1, "the token is kept");
  });
}

test("close 4006 (unsupported version) → stop the socket, poll GET /state instead", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  socket.serverClose(4006);
  await tab.flush();
  await tab.clock.advance(600000);
  assert.equal(tab.sockets.length, 1, "no new socket");
  const checks = tab.server.calls("/_sessionwatch/state");
  assert.equal(checks.length, 20, "one check every 30 s");
  assert.ok(checks.every((r) => r.tab === tab.api.token()));
});

test("a refused handshake whose GET /state answers 401 ends the tab", async () => {
  const clock = new Clock();
  const server = new Server(clock);
  const tab = createTab({ clock, server });
  await tab.flush();
  server.routes["GET /_sessionwatch/state"] = () => ({ status: 401, body: { error: "revoked", reason: "password_changed" } });
  tab.socket.serverClose(1006);
  await tab.flush();
  assert.equal(tab.api.state(), "revoked");
  assert.equal(tab.events("revoked")[0].detail.reason, "password_changed");
  assert.match(tab.bannerText, /password changed/);
  assert.equal(clock.pending().length, 0);
});

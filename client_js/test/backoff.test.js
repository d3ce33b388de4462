"use strict";
// Reconnect schedule (RFC 6455 §7.2.3): first retry after a random 0–5 s, then truncated
// exponential backoff with full jitter, upper bound min(60 s, 5 s × 2^attempt), reset by "ready".
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { createTab, Clock, Server } = require("./harness");

/** The one pending timer after a close is the reconnect; returns its delay. */
function reconnectDelay(tab) {
  const timers = tab.clock.pending();
  assert.equal(timers.length, 1, "exactly one timer (the reconnect) is pending");
  return timers[0].delay;
}

/** Fires the pending reconnect; the new socket opens but gets no "ready", then drops. */
async function failAgain(tab, code = 1011) {
  const before = tab.sockets.length;
  await tab.clock.advance(reconnectDelay(tab));
  assert.equal(tab.sockets.length, before + 1, "the reconnect opened a new socket");
  tab.socket.accept();
  tab.socket.serverClose(code);
  await tab.flush();
}

test("first retry comes after a random delay in [0, 5 s]", async () => {
  for (const [random, expected] of [
    [0, 0],
    [0.5, 2500],
    [0.999, 4995],
  ]) {
    const tab = createTab();
    tab.setRandom(random);
    const socket = await tab.ready();
    socket.serverClose(1011);
    await tab.flush();
    const delay = reconnectDelay(tab);
    assert.ok(delay >= 0 && delay <= 5000, `delay ${delay} within [0, 5000]`);
    assert.equal(delay, expected);
    assert.equal(tab.sockets.length, 1, "nothing reconnects before the delay");
    await tab.clock.advance(delay);
    assert.equal(tab.sockets.length, 2);
  }
});

test("the bound doubles per attempt and is capped at 60 s", async () => {
  const tab = createTab();
  tab.setRandom(0.999);
  const socket = await tab.ready();
  socket.serverClose(1001);
  await tab.flush();
  const delays = [reconnectDelay(tab)];
  for (let i = 0; i < 6; i++) {
    await failAgain(tab);
    delays.push(reconnectDelay(tab));
  }
  const bounds = [5000, 10000, 20000, 40000, 60000, 60000, 60000];
  assert.deepEqual(
    delays.map((d) => Math.round(d)),
    bounds.map((b) => Math.round(b * 0.999))
  );
  assert.equal(tab.api.state(), "active", "a dropped socket does not change the tab's state");
});

test("full jitter: the delay is random × bound, anywhere from 0", async () => {
  for (const random of [0, 0.25, 0.75]) {
    const tab = createTab();
    tab.setRandom(random);
    const socket = await tab.ready();
    socket.serverClose(1011);
    await tab.flush();
    await failAgain(tab);
    await failAgain(tab);
    await failAgain(tab); // attempt 3: bound 40 s
    assert.equal(reconnectDelay(tab), random * 40000);
  }
});

test("ready resets the schedule; an open socket without ready does not", async () => {
  const tab = createTab();
  tab.setRandom(0.999);
  const socket = await tab.ready();
  socket.serverClose(1011);
  await tab.flush();
  await failAgain(tab);
  await failAgain(tab);
  assert.ok(reconnectDelay(tab) > 19000, "attempt 3 waits up to 40 s");
  await tab.clock.advance(reconnectDelay(tab));
  tab.socket.accept();
  tab.socket.message({ type: "ready", v: 1, gen: 1, expires_at: tab.server.expiresAt, session: "S1", user: "u1" });
  await tab.flush();
  tab.socket.serverClose(1011);
  await tab.flush();
  assert.equal(reconnectDelay(tab), 4995, "back to the first window");
});

test("a refused handshake asks GET /state, then backs off", async () => {
  const tab = createTab();
  tab.setRandom(0.5);
  await tab.flush();
  tab.socket.serverClose(1006); // never opened
  await tab.flush();
  const checks = tab.server.calls("/_sessionwatch/state", "GET");
  assert.equal(checks.length, 1);
  assert.equal(checks[0].tab, tab.api.token());
  assert.equal(reconnectDelay(tab), 2500);
});

test("a failed claim is retried on the same schedule", async () => {
  const clock = new Clock();
  const server = new Server(clock);
  const claim = server.routes["POST /_sessionwatch/claim"];
  server.routes["POST /_sessionwatch/claim"] = () => "network-error";
  const tab = createTab({ clock, server });
  tab.setRandom(0.999);
  await tab.flush();
  assert.equal(tab.api.state(), "starting");
  assert.equal(reconnectDelay(tab), 4995, "first retry within 5 s");
  await clock.advance(4995);
  assert.equal(server.calls("/_sessionwatch/claim").length, 2);
  assert.equal(reconnectDelay(tab), 9990, "second retry within 10 s");
  server.routes["POST /_sessionwatch/claim"] = () => ({ status: 503, body: { error: "backend_unavailable" } });
  await clock.advance(9990);
  assert.equal(reconnectDelay(tab), 19980, "a 503 is retried too");
  server.routes["POST /_sessionwatch/claim"] = claim;
  await clock.advance(19980);
  assert.equal(server.calls("/_sessionwatch/claim").length, 4);
  assert.equal(tab.api.state(), "active");
  assert.equal(tab.api.token(), server.token(1));
  assert.equal(tab.sockets.length, 1, "the socket opens only once a token exists");
});

test("a claim refused with 403 (origin not allowed) is not retried", async () => {
  const clock = new Clock();
  const server = new Server(clock);
  server.routes["POST /_sessionwatch/claim"] = () => ({ status: 403, body: { error: "origin_not_allowed" } });
  const warn = console.warn;
  const warnings = [];
  console.warn = (...args) => warnings.push(args.join(" "));
  try {
    const tab = createTab({ clock, server });
    await tab.flush();
    await clock.advance(600000);
    assert.equal(server.calls("/_sessionwatch/claim").length, 1);
    assert.equal(tab.api.state(), "stopped");
    assert.equal(tab.sockets.length, 0);
    assert.match(warnings.join("\n"), /403/);
  } finally {
    console.warn = warn;
  }
});

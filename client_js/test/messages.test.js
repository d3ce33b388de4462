"use strict";
// Every server message of docs/protocol.md §3 → state, document attribute, DOM event, banner.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { createTab, Clock, Server } = require("./harness");

const plain = (value) => JSON.parse(JSON.stringify(value));
const by = (extra = {}) => ({ browser: "Chrome 120", os: "Windows 10", place: "203.0.113.0/24", at: 0, same_browser: false, ...extra });

test("the usual start: claimed, then ready after hello", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  assert.deepEqual(socket.sent, [{ type: "hello", v: 1, tab: tab.server.token(1) }]);
  assert.deepEqual(tab.eventTypes(), ["state", "state", "claimed", "ready"]);
  assert.deepEqual(
    tab.events("state").map((e) => plain(e.detail)),
    [
      { state: "starting", previous: "stopped" },
      { state: "active", previous: "starting" },
    ]
  );
  assert.equal(tab.events("claimed")[0].detail.tab, tab.server.token(1));
  assert.equal(tab.api.state(), "active");
  assert.equal(tab.document.documentElement.getAttribute("data-sessionwatch-state"), "active");
  assert.equal(tab.bannerState, null);
});

const CASES = [
  { message: () => ({ type: "superseded", gen: 2, by: by() }), state: "superseded", banner: "superseded" },
  { message: () => ({ type: "evicted", by: by() }), state: "evicted", banner: "evicted" },
  { message: () => ({ type: "revoked", reason: "admin" }), state: "revoked", banner: "revoked" },
  { message: () => ({ type: "logged_out" }), state: "logged_out", banner: "logged_out" },
  { message: () => ({ type: "expired" }), state: "expired", banner: "expired" },
  { message: (tab) => ({ type: "expiring", in: 60, expires_at: tab.clock.now + 60000 }), state: "active", banner: "expiring" },
  { message: (tab) => ({ type: "extended", expires_at: tab.server.expiresAt + 60000 }), state: "active", banner: null },
  { message: () => ({ type: "signed_in", by: by() }), state: "active", banner: null, toast: true },
  { message: () => ({ type: "presence", id: "s.1", live_tabs: 3, at: 5 }), state: "active", banner: null },
];

for (const { message, state, banner, toast } of CASES) {
  test(`server message ${message({ clock: {}, server: {} }).type} → state ${state}, event, banner ${banner}`, async () => {
    const tab = createTab();
    const socket = await tab.ready();
    const sent = message(tab);
    const before = tab.events().length;
    socket.message(sent);
    await tab.flush();
    assert.equal(tab.api.state(), state);
    assert.equal(tab.document.documentElement.getAttribute("data-sessionwatch-state"), state);
    const own = tab.events(sent.type);
    assert.equal(own.length, 1, `one sessionwatch:${sent.type} event`);
    assert.deepEqual(plain(own[0].detail), sent);
    assert.equal(own[0].cancelable, true);
    const fresh = tab.events().slice(before).map((e) => e.type);
    assert.equal(fresh.includes("sessionwatch:state"), state !== "active", "a state event exactly when the state changed");
    assert.equal(tab.bannerState, banner);
    assert.equal(!!tab.toast, !!toast);
    const terminal = ["evicted", "revoked", "logged_out", "expired"].includes(state);
    if (terminal) {
      assert.equal(socket.closedWith, 1000, "the client closes the socket of an ended session");
      await tab.clock.advance(10 * 60000);
      assert.equal(tab.sockets.length, 1, "and never reconnects");
    } else {
      assert.equal(socket.closedWith, null);
    }
  });
}

test("pong is taken silently", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  const before = tab.events().length;
  socket.message({ type: "pong" });
  await tab.flush();
  assert.equal(tab.events().length, before);
  assert.equal(tab.api.state(), "active");
});

test("unknown types and malformed frames are ignored", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  const before = tab.events().length;
  for (const frame of [
    { type: "from_the_future", gen: 99 },
    { type: "Superseded", gen: 99 },
    { type: 5 },
    { gen: 99 },
    "not json",
    "[1,2]",
    "null",
    '"superseded"',
  ]) {
    socket.message(frame);
  }
  await tab.flush();
  assert.equal(tab.events().length, before, "no events");
  assert.equal(tab.api.state(), "active");
  assert.equal(socket.closedWith, null, "the socket stays open");
  assert.equal(socket.sent.length, 1, "nothing answered");
  assert.equal(tab.sockets.length, 1);
});

test("unknown types change nothing in a superseded tab either", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  socket.message({ type: "superseded", gen: 2, by: null });
  await tab.flush();
  const before = tab.events().length;
  socket.message({ type: "from_the_future" });
  socket.message({ type: "hello", v: 1, tab: "2.x" });
  await tab.flush();
  assert.equal(tab.api.state(), "superseded");
  assert.equal(tab.bannerState, "superseded");
  assert.equal(tab.events().length, before);
});

test("superseded for our own or an older generation is ignored", async () => {
  const clock = new Clock();
  const server = new Server(clock);
  server.gen = 4; // the claim at load gets gen 5
  const tab = createTab({ clock, server });
  const socket = await tab.ready();
  socket.message({ type: "superseded", gen: 5, by: by() });
  socket.message({ type: "superseded", gen: 3, by: by() });
  await tab.flush();
  assert.equal(tab.api.state(), "active");
  assert.equal(tab.events("superseded").length, 0);
  socket.message({ type: "superseded", gen: 6, by: by() });
  await tab.flush();
  assert.equal(tab.api.state(), "superseded");
});

test("a repeated superseded (e.g. after a reconnect) is not announced twice", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  socket.message({ type: "superseded", gen: 2, by: by() });
  socket.message({ type: "superseded", gen: 2, by: by() });
  await tab.flush();
  assert.equal(tab.events("superseded").length, 1);
  socket.message({ type: "superseded", gen: 3, by: by({ browser: "Firefox 121" }) });
  await tab.flush();
  assert.equal(tab.events("superseded").length, 2, "a newer claimer is news");
  assert.match(tab.bannerText, /Firefox 121/);
});

test("a terminal message followed by its close code is handled once", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  socket.message({ type: "evicted", by: by() });
  socket.serverClose(4005);
  await tab.flush();
  assert.equal(tab.events("evicted").length, 1);
  assert.deepEqual(
    tab.events("state").map((e) => e.detail.state),
    ["starting", "active", "evicted"]
  );
});

test("terminal states are final: later messages change nothing", async () => {
  const tab = createTab();
  const socket = await tab.ready();
  const onmessage = socket.onmessage;
  socket.message({ type: "revoked", reason: "revoked" });
  await tab.flush();
  assert.equal(socket.onmessage, null, "the client detached from the socket");
  onmessage({ data: JSON.stringify({ type: "ready", v: 1, gen: 1 }) }); // a late frame anyway
  onmessage({ data: JSON.stringify({ type: "expired" }) });
  await tab.flush();
  assert.equal(tab.api.state(), "revoked");
  assert.equal(tab.events("expired").length, 0);
  await assert.rejects(tab.api.claim(), /not running/);
});

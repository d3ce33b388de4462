"use strict";
// Issue 16, defect 1: a page script that loads after the claim answer must not miss it.
// on() delivers the last event of its type in the current state at once, and state() tells.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { createTab } = require("./harness");

test("a listener added 500 ms after ready still sees ready, claimed and the state", async () => {
  const tab = createTab();
  await tab.ready();
  await tab.clock.advance(500);
  const seen = [];
  for (const type of ["claimed", "ready", "state", "superseded"]) {
    tab.api.on(type, (detail, event) => seen.push([type, detail.gen ?? detail.state, event]));
  }
  assert.deepEqual(seen, [
    ["claimed", 1, null],
    ["ready", 1, null],
    ["state", "active", null],
  ]);
  assert.equal(tab.api.state(), tab.api.State.ACTIVE);
});

test("a late listener gets only what belongs to the current state", async () => {
  const tab = createTab();
  await tab.ready();
  tab.socket.message({ type: "superseded", gen: 2, by: null });
  await tab.flush();
  const seen = [];
  for (const type of ["ready", "claimed", "superseded", "state"]) tab.api.on(type, (detail) => seen.push(type));
  assert.deepEqual(seen, ["superseded", "state"], "no stale ready from before the supersede");
  seen.length = 0;
  tab.socket.message({ type: "revoked", reason: "revoked" });
  await tab.flush();
  assert.deepEqual(seen, ["state"], "live events keep coming as usual");
});

test("an expiring warning that was answered by extended is not replayed", async () => {
  const tab = createTab();
  await tab.ready();
  tab.socket.message({ type: "expiring", in: 60, expires_at: tab.server.expiresAt });
  await tab.flush();
  tab.socket.message({ type: "extended", expires_at: tab.server.expiresAt + 60000 });
  await tab.flush();
  const seen = [];
  tab.api.on("expiring", () => seen.push("expiring"));
  tab.api.on("extended", () => seen.push("extended"));
  assert.deepEqual(seen, ["extended"]);
});

test("a late listener that throws is reported, the client goes on", async () => {
  const tab = createTab();
  await tab.ready();
  const off = tab.api.on("ready", () => {
    throw new Error("listener bug");
  });
  assert.equal(typeof off, "function");
  const reported = tab.clock.pending();
  assert.equal(reported.length >= 1, true, "rethrown from a timer, not into the caller");
  assert.equal(tab.api.state(), "active");
});

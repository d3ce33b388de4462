"use strict";
// Same browser, instantly: BroadcastChannel("sessionwatch") can mark an older tab stale and
// move countdowns, but never make a tab active; the server stays the authority.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { createTab, Clock, Server } = require("./harness");

function browser() {
  const clock = new Clock();
  const server = new Server(clock);
  const bus = new Set();
  return { clock, server, bus, open: () => createTab({ clock, server, bus }) };
}

/** Posts as if from another tab (a raw channel on the same bus). */
async function postFromElsewhere(env, message) {
  const tab = env.tabs ? env.tabs[0] : null;
  const Channel = (tab || env).window.BroadcastChannel;
  const channel = new Channel("sessionwatch");
  channel.postMessage(message);
  channel.close();
  await (tab || env).flush();
}

test("a newer claim in another tab marks this tab superseded before any server push", async () => {
  const env = browser();
  const a = env.open();
  const socketA = await a.ready();
  const b = env.open();
  await b.flush(); // B's claim answered (gen 2) and broadcast
  assert.equal(a.api.state(), "superseded");
  assert.equal(a.bannerState, "superseded");
  assert.equal(a.bannerText, "This app is open in another tab.");
  const detail = a.events("superseded")[0].detail;
  assert.equal(detail.gen, 2);
  assert.equal(detail.via, "broadcast");
  assert.equal(socketA.sent.length, 1, "only the first hello");
  // ...and the server is asked to confirm
  const checks = env.server.calls("/_sessionwatch/state");
  assert.equal(checks.length, 1);
  assert.equal(checks[0].tab, env.server.token(1));
  assert.equal(b.api.state(), "active");
  // the server's push that follows is not news
  socketA.message({ type: "superseded", gen: 2, by: null });
  await a.flush();
  assert.equal(a.events("superseded").length, 1);
});

test("the server decides: if GET /state says active, the tab is active again", async () => {
  // e.g. tabs_per_session=None: every claimed tab stays valid and no push comes
  const env = browser();
  const a = env.open();
  await a.ready();
  env.server.routes["GET /_sessionwatch/state"] = () => ({
    status: 200,
    body: { session: "S1", user: "u1", expires_at: 1, gen: 2, tab: "active" },
  });
  env.open();
  await a.flush();
  assert.equal(a.api.state(), "active");
  assert.equal(a.bannerState, null);
  assert.deepEqual(a.eventTypes().slice(-3), ["superseded", "state", "ready"]);
});

test("a claim under a many-tabs policy (exclusive: false) does not flash a banner", async () => {
  // The default harness claim has no `exclusive` (read as true): the first test above is
  // the control that the same two tabs do flash "superseded" then.
  const env = browser();
  const claim = env.server.routes["POST /_sessionwatch/claim"];
  env.server.routes["POST /_sessionwatch/claim"] = (req) => {
    const answer = claim(req);
    answer.body.exclusive = false;
    return answer;
  };
  const a = env.open();
  await a.ready();
  const b = env.open();
  await b.flush();
  assert.equal(b.api.state(), "active");
  assert.equal(a.api.state(), "active");
  assert.equal(a.events("superseded").length, 0);
  assert.equal(env.server.calls("/_sessionwatch/state").length, 0);
});

test("broadcast messages never make a tab active", async () => {
  const env = browser();
  const a = env.open();
  const socket = await a.ready();
  socket.message({ type: "superseded", gen: 2, by: null });
  await a.flush();
  env.tabs = [a];
  for (const message of [
    { type: "claimed", session: "S1", gen: 1 },
    { type: "claimed", session: "S1", gen: 99 },
    { type: "ready", session: "S1", gen: 99 },
    { type: "active", session: "S1" },
    { type: "extended", session: "S1", expires_at: a.clock.now + 3600000 },
  ]) {
    await postFromElsewhere(env, message);
    assert.equal(a.api.state(), "superseded", JSON.stringify(message));
  }
  assert.equal(a.bannerState, "superseded");
  assert.equal(a.api.token(), env.server.token(1), "no claim was made on anyone's behalf");
  assert.equal(env.server.calls("/_sessionwatch/claim").length, 1);
});

test("an older or equal claim leaves the active tab alone", async () => {
  const env = browser();
  env.server.gen = 4;
  const a = env.open();
  await a.ready();
  env.tabs = [a];
  await postFromElsewhere(env, { type: "claimed", session: "S1", gen: 4 });
  await postFromElsewhere(env, { type: "claimed", session: "S1", gen: 5 });
  await postFromElsewhere(env, { type: "claimed", session: "S1", gen: "9" });
  assert.equal(a.api.state(), "active");
  assert.equal(a.events("superseded").length, 0);
  assert.equal(env.server.calls("/_sessionwatch/state").length, 0);
});

test("messages about other sessions are ignored", async () => {
  const env = browser();
  const a = env.open();
  await a.ready();
  env.tabs = [a];
  await postFromElsewhere(env, { type: "claimed", session: "S2", gen: 99 });
  await postFromElsewhere(env, { type: "claimed", gen: 99 });
  await postFromElsewhere(env, { type: "extended", session: "S2", expires_at: a.clock.now + 3600000 });
  await postFromElsewhere(env, null);
  await postFromElsewhere(env, "claimed");
  assert.equal(a.api.state(), "active");
  assert.equal(a.events("superseded").length + a.events("extended").length, 0);
});

test("Stay signed in in one tab moves the other tabs' countdowns", async () => {
  const env = browser();
  // Both tabs stay valid here (policy tabs_per_session=None): A is marked stale by B's
  // claim, then the server says otherwise.
  env.server.routes["GET /_sessionwatch/state"] = () => ({ status: 200, body: { tab: "active", session: "S1" } });
  const a = env.open();
  await a.ready();
  const b = env.open();
  await b.flush();
  assert.equal(a.api.state(), "active");
  const warning = { type: "expiring", in: 60, expires_at: a.clock.now + 60000 };
  a.socket.message(warning);
  await b.ready();
  b.socket.message(warning);
  await a.flush();
  assert.equal(a.bannerState, "expiring");
  assert.equal(b.bannerState, "expiring");
  await b.api.extend();
  await a.flush();
  assert.equal(b.bannerState, null);
  assert.equal(a.bannerState, null, "A followed through the channel, without a server push");
  assert.equal(a.events("extended").at(-1).detail.expires_at, env.server.expiresAt);
});

test("without BroadcastChannel the client relies on the server", async () => {
  const clock = new Clock();
  const server = new Server(clock);
  const a = createTab({ clock, server, without: ["BroadcastChannel"] });
  const socket = await a.ready();
  createTab({ clock, server, without: ["BroadcastChannel"] });
  await a.flush();
  assert.equal(a.api.state(), "active", "nobody told A yet");
  socket.message({ type: "superseded", gen: 2, by: { browser: "Chrome 120", os: "Linux", place: "", at: clock.now, same_browser: true } });
  await a.flush();
  assert.equal(a.api.state(), "superseded");
});

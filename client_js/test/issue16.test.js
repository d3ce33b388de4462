"use strict";
// Issue 16 as a user meets it: what stays usable in a stale tab (defect 2), which texts a
// tab shows (defect 5), translations, and the bundle-safe start (defect 6).
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { createTab, Clock, Server } = require("./harness");

const by = (extra = {}) => ({ browser: "Firefox 121", os: "Android 14", place: "", at: 0, same_browser: false, ...extra });

async function send(tab, message) {
  tab.socket.message(message);
  await tab.flush();
}

// ---- defect 2: sign-out works from any tab state ------------------------------------------

for (const [name, message] of [
  ["superseded", { type: "superseded", gen: 2, by: null }],
  ["revoked", { type: "revoked", reason: "revoked" }],
  ["logged_out", { type: "logged_out" }],
  ["expired", { type: "expired" }],
]) {
  test(`${name}: a POST form or button marked data-sessionwatch-skip stays enabled`, async () => {
    const tab = createTab();
    const logout = tab.element("form", { method: "post", action: "/logout" });
    const signOut = tab.element("button", { type: "submit", "data-sessionwatch-skip": "" }, logout);
    const skipForm = tab.element("form", { method: "post", action: "/logout", "data-sessionwatch-skip": "" });
    const inSkipForm = tab.element("button", { type: "submit" }, skipForm);
    const save = tab.element("form", { method: "post", action: "/save" });
    const saveButton = tab.element("button", { type: "submit" }, save);
    await tab.ready();
    await send(tab, message);
    assert.equal(tab.api.state(), name);
    assert.equal(signOut.disabled, false, "the header's Sign out (the demo's markup)");
    assert.equal(inSkipForm.disabled, false, "a button inside a skipped form");
    assert.equal(saveButton.disabled, true, "other POST buttons are still locked");
  });
}

// ---- defect 5: the right texts -------------------------------------------------------------

test("Not you? is offered only when the newer tab is in another browser", async () => {
  const tab = createTab();
  await tab.ready();
  await send(tab, { type: "superseded", gen: 2, by: by({ same_browser: true }) });
  assert.equal(tab.button("sign-out-others"), null, "same browser: the same person");
  await send(tab, { type: "superseded", gen: 3, by: by() });
  assert.ok(tab.button("sign-out-others"), "another browser may be someone else");
  const other = createTab();
  await other.ready();
  await send(other, { type: "superseded", gen: 2, by: null });
  assert.equal(other.button("sign-out-others"), null, "told by BroadcastChannel: this browser");
});

test("a New sign-in toast goes when the tab ends, and none comes after", async () => {
  const tab = createTab();
  await tab.ready();
  await send(tab, { type: "signed_in", by: by() });
  assert.ok(tab.toast, "shown while the tab is active");
  await send(tab, { type: "revoked", reason: "revoked" });
  assert.equal(tab.toast, null, "no 'Not you?' on a revoked tab");
  tab.socket && tab.socket.message && tab.socket.message({ type: "signed_in", by: by() });
  await tab.flush();
  assert.equal(tab.toast, null);
});

test("the evicted tab drops the toast of the sign-in that evicted it", async () => {
  const tab = createTab();
  await tab.ready();
  await send(tab, { type: "signed_in", by: by() });
  await send(tab, { type: "evicted", by: by() });
  assert.equal(tab.toast, null);
  assert.match(tab.bannerText, /new sign-in on Firefox 121 on Android 14/);
});

// ---- translations ---------------------------------------------------------------------------

for (const [source, options, expected] of [
  ["<html lang>", { lang: "fr" }, "Cette application est ouverte dans un autre onglet."],
  ["navigator.language", { navigator: { language: "es-MX" } }, "Esta aplicación está abierta en otra pestaña."],
  ["navigator.language", { navigator: { language: "ja-JP" } }, "このアプリは別のタブで開かれています。"],
  ["<html lang> before navigator", { lang: "de-AT", navigator: { language: "fr" } }, "Diese App ist in einem anderen Tab geöffnet."],
]) {
  test(`translations chosen from ${source}: ${expected}`, async () => {
    const tab = createTab(options);
    await tab.ready();
    await send(tab, { type: "superseded", gen: 2, by: null });
    assert.equal(tab.bannerText, expected);
    assert.equal(tab.host.getAttribute("lang"), expected.startsWith("Diese") ? "de" : expected.startsWith("Cette") ? "fr" : expected.startsWith("Esta") ? "es" : "ja");
  });
}

test("an unbundled language stays English, lang=en, and loads nothing", async () => {
  const tab = createTab({ lang: "pt-BR", navigator: { language: "pt-BR" } });
  await tab.ready();
  await send(tab, { type: "superseded", gen: 2, by: null });
  assert.equal(tab.bannerText, "This app is open in another tab.");
  assert.equal(tab.host.getAttribute("lang"), "en");
  assert.equal(tab.server.requests.filter((r) => r.path.includes("/i18n/")).length, 0);
});

test("plural-safe: the countdown uses the language's plural forms", async () => {
  const tab = createTab({ lang: "fr" });
  await tab.ready();
  await send(tab, { type: "expiring", in: 2, expires_at: tab.clock.now + 2000 });
  assert.equal(tab.bannerText, "Vous serez déconnecté(e) dans 2 secondes.");
  await tab.clock.advance(1000);
  assert.equal(tab.bannerText, "Vous serez déconnecté(e) dans 1 seconde.");
  assert.equal(tab.box.querySelector("[role=timer]").textContent, "1", "only the number is a timer");
});

test("English plural forms can be given per string", async () => {
  const tab = createTab({ script: { data: { strings: '{"expiring":{"one":"Signing out in {n} second.","other":"Signing out in {n} seconds."}}' } } });
  await tab.ready();
  await send(tab, { type: "expiring", in: 2, expires_at: tab.clock.now + 2000 });
  assert.equal(tab.bannerText, "Signing out in 2 seconds.");
  await tab.clock.advance(1000);
  assert.equal(tab.bannerText, "Signing out in 1 second.");
});

test("a bad lang option does not break the texts", async () => {
  const tab = createTab({ script: { data: { lang: "not a tag!", strings: '{"expiring":{"one":"{n} second","other":"{n} seconds"}}' } } });
  await tab.ready();
  await send(tab, { type: "expiring", in: 3, expires_at: tab.clock.now + 3000 });
  assert.equal(tab.bannerText, "3 seconds");
});

test("a translation that fails to load leaves English", async () => {
  const clock = new Clock();
  const server = new Server(clock);
  server.routes["GET /_sessionwatch/i18n/de.json"] = () => "network-error";
  const tab = createTab({ clock, server, lang: "de" });
  await tab.ready();
  await send(tab, { type: "superseded", gen: 2, by: null });
  assert.equal(tab.bannerText, "This app is open in another tab.");
  assert.equal(tab.host.getAttribute("lang"), "en");
});

// ---- defect 6: bundle-safe start --------------------------------------------------------------

test("inside a bundle (another file name) nothing starts and the bundle's data-* are not read", async () => {
  const tab = createTab({ script: { src: "https://app.example.com/static/app.3f9a.js", data: { prefix: "/theirs" } } });
  await tab.flush();
  assert.equal(tab.api.state(), "stopped");
  assert.equal(tab.server.requests.length, 0);
  tab.api.start({ signinUrl: "/enter" });
  await tab.ready();
  assert.equal(tab.server.requests[0].path, "/_sessionwatch/claim", "data-prefix of the bundle's tag ignored");
  await send(tab, { type: "expired" });
  tab.button("sign-in").click();
  assert.match(tab.assigned[0], /^https:\/\/app\.example\.com\/enter\?next=/);
});

test("its own tag autostarts: client.js, sessionwatch.js, sessionwatch.min.js, or data-sessionwatch", async () => {
  for (const src of [
    "https://app.example.com/_sessionwatch/client.js",
    "https://app.example.com/static/sessionwatch.js?v=2",
    "https://app.example.com/static/sessionwatch.min.js",
  ]) {
    const tab = createTab({ script: { src } });
    assert.equal(tab.api.state(), "starting", src);
  }
  const marked = createTab({ script: { src: "https://app.example.com/static/sw.3f9a.js", data: { sessionwatch: "" } } });
  assert.equal(marked.api.state(), "starting");
});

test("start(options) after an autostart re-configures instead of being ignored", async () => {
  const tab = createTab();
  await tab.ready();
  tab.api.start({ signinUrl: "/enter", mode: "overlay", strings: { expired: "Gone." } });
  await tab.flush();
  assert.equal(tab.server.calls("/_sessionwatch/claim").length, 1, "same server: the claim stands");
  await send(tab, { type: "expired" });
  assert.equal(tab.bannerText, "Gone.");
  assert.equal(tab.box.getAttribute("data-sw-mode"), "overlay");
  tab.button("sign-in").click();
  assert.match(tab.assigned[0], /\/enter\?next=/);
});

test("start(options) with another prefix moves the client to that server", async () => {
  const clock = new Clock();
  const tab = createTab({ clock, server: new Server(clock).mount("/auth") });
  await tab.ready();
  tab.api.start({ prefix: "/auth" });
  await tab.flush();
  assert.equal(tab.server.calls("/auth/claim").length, 1);
  assert.equal(tab.socket.url, "wss://app.example.com/auth/ws");
});

// ---- issue 25: the device or place the server marks new for its user ----------------------

test("a takeover and a sign-in from a new device or place say so beside Not you?", async () => {
  const tab = createTab();
  await tab.ready();
  await send(tab, { type: "signed_in", by: by({ new_device: true, new_place: true }) });
  assert.match(tab.toast.textContent, /Firefox 121 on Android 14 \(new device\) \(new place\)/);
  await send(tab, { type: "superseded", gen: 2, by: by({ new_place: true }) });
  assert.ok(tab.button("sign-out-others"));
  assert.match(tab.bannerText, /on Firefox 121 on Android 14 \(new place\), /);
  const known = createTab();
  await known.ready();
  await send(known, { type: "superseded", gen: 2, by: by({ new_device: false, new_place: false }) });
  assert.doesNotMatch(known.bannerText, /new/);
});

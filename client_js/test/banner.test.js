"use strict";
// The built-in UI: Shadow DOM banner, texts (textContent only), buttons, overlay, protected
// elements, countdown, toast, preventDefault, and the stable hooks for end-to-end tests.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { createTab } = require("./harness");

const XSS = "<img src=x onerror=alert(1)>";
const by = (extra = {}) => ({ browser: "Chrome 120", os: "Windows 10", place: "203.0.113.0/24", at: 0, same_browser: false, ...extra });

async function activeTab(options) {
  const tab = createTab(options);
  await tab.ready();
  return tab;
}

async function send(tab, message) {
  tab.socket.message(message);
  await tab.flush();
}

function allElements(root) {
  return [root, ...root.descendants()];
}

test("hooks: <sessionwatch-banner> with an open shadow root, data-sw-state, data-sw-action", async () => {
  const tab = await activeTab();
  assert.equal(tab.bannerState, null, "nothing is shown while all is well");
  assert.equal(tab.box.hidden, true);
  assert.equal(tab.box.getAttribute("role"), "alert", "the live region exists before it speaks");
  assert.equal(tab.host.hidden, false, "the stylesheet came: the host shows (its box stays hidden)");
  await send(tab, { type: "superseded", gen: 2, by: by({ same_browser: true }) });
  assert.equal(tab.host.localName, "sessionwatch-banner");
  assert.equal(tab.host.parentNode, tab.document.body, "at the end of <body>, where checkers look");
  assert.equal(tab.shadow.mode, "open");
  assert.equal(tab.box.getAttribute("role"), "alert");
  assert.equal(tab.box.getAttribute("data-sw-state"), "superseded");
  assert.equal(tab.box.getAttribute("data-sw-mode"), "banner");
  assert.deepEqual(
    tab.box.querySelectorAll("button").map((b) => [b.getAttribute("data-sw-action"), b.getAttribute("type"), b.textContent]),
    [["use-here", "button", "Use here"]],
    "no Not you? for a tab of the same browser"
  );
  assert.equal(tab.bannerText, "This app is open in another tab.");
  assert.equal(tab.document.documentElement.getAttribute("data-sessionwatch-state"), "superseded");
});

function key(tab, init) {
  const event = new tab.window.Event("keydown", { cancelable: true, ...init });
  tab.document.dispatchEvent(event);
  return event;
}

test("focus stays where the user types; the first Tab goes to the banner, later ones move on", async () => {
  const tab = await activeTab();
  const input = tab.element("textarea", { name: "q" });
  input.focus();
  await send(tab, { type: "superseded", gen: 2, by: null });
  assert.equal(tab.document.activeElement, input, "no focus theft: the draft keeps its keys");
  assert.equal(key(tab, { key: "a" }).defaultPrevented, false);
  assert.equal(key(tab, { key: "Tab", shiftKey: true }).defaultPrevented, false, "Shift+Tab goes back as usual");
  assert.equal(tab.document.activeElement, input);
  assert.equal(key(tab, { key: "Tab" }).defaultPrevented, true);
  assert.equal(tab.document.activeElement, tab.host);
  assert.equal(tab.shadow.activeElement, tab.button("use-here"));
  assert.equal(key(tab, { key: "Tab" }).defaultPrevented, false, "only the first Tab");
  tab.server.gen = 2;
  tab.button("use-here").click();
  await tab.flush();
  assert.equal(tab.bannerState, null);
  assert.equal(tab.document.activeElement, input);
});

test("texts go through textContent only: markup in device data stays literal", async () => {
  const tab = await activeTab();
  await send(tab, { type: "superseded", gen: 2, by: by({ browser: XSS, os: "<b>os</b>", at: tab.clock.now }) });
  assert.equal(tab.bannerText, `This app was opened on ${XSS} on <b>os</b>, just now.`);
  await send(tab, { type: "signed_in", by: by({ browser: XSS }) });
  assert.match(tab.toast.textContent, /New sign-in: <img src=x onerror=alert\(1\)> on Windows 10\./);
  await send(tab, { type: "evicted", by: by({ os: XSS, browser: "" }) });
  assert.equal(tab.bannerText, `You were signed out because of a new sign-in on ${XSS}.`);
  const tags = new Set(allElements(tab.shadow).map((el) => el.localName));
  assert.ok(!tags.has("img") && !tags.has("b"), `no element came from data: ${[...tags]}`);
});

test("superseded from another device names it and says when", async () => {
  const tab = await activeTab();
  await send(tab, { type: "superseded", gen: 2, by: by({ at: tab.clock.now - 150000 }) });
  assert.equal(tab.bannerText, "This app was opened on Chrome 120 on Windows 10, 2 min ago.");
  await send(tab, { type: "superseded", gen: 3, by: by({ at: tab.clock.now - 3 * 3600000, os: "" }) });
  assert.equal(tab.bannerText, "This app was opened on Chrome 120, 3 h ago.");
  await send(tab, { type: "superseded", gen: 4, by: by({ at: tab.clock.now + 5000 }) });
  assert.match(tab.bannerText, /just now\.$/, "a clock ahead of ours still reads just now");
});

test("Use here: new claim, hello with the new token on the same socket, banner gone", async () => {
  const tab = await activeTab();
  const socket = tab.socket;
  const save = tab.element("button", { "data-sessionwatch-protected": "" });
  tab.server.gen = 2; // another tab claimed gen 2
  await send(tab, { type: "superseded", gen: 2, by: by({ same_browser: true }) });
  assert.equal(save.disabled, true, "protected elements are disabled while superseded");
  tab.button("use-here").click();
  await tab.flush();
  assert.equal(tab.server.calls("/_sessionwatch/claim").length, 2);
  assert.equal(tab.api.token(), tab.server.token(3));
  assert.equal(tab.sockets.length, 1, "same socket");
  assert.deepEqual(socket.sent.at(-1), { type: "hello", v: 1, tab: tab.server.token(3) });
  assert.equal(tab.api.state(), "active");
  assert.equal(tab.bannerState, null);
  assert.equal(save.disabled, false);
  assert.deepEqual(
    [...tab.bus][0].posted.map((m) => [m.type, m.session, m.gen]),
    [
      ["claimed", "S1", 1],
      ["claimed", "S1", 3],
    ],
    "other tabs of this browser hear of the claim"
  );
  assert.equal(tab.events("claimed").at(-1).detail.gen, 3);
  // the old tab's superseded push about our own claim (gen 3) must not undo it
  await send(tab, { type: "superseded", gen: 3, by: by({ same_browser: true }) });
  assert.equal(tab.api.state(), "active");
  await send(tab, { type: "ready", v: 1, gen: 3, expires_at: 1, session: "S1", user: "u1" });
  assert.equal(tab.api.state(), "active");
});

test("Not you? opens reauthUrl with next and revoke_others=1; Sign in again opens signinUrl", async () => {
  const tab = await activeTab({ script: { data: { reauthUrl: "/account/reauth?x=1" } } });
  await send(tab, { type: "superseded", gen: 2, by: by() });
  tab.button("sign-out-others").click();
  assert.deepEqual(tab.assigned, ["https://app.example.com/account/reauth?x=1&next=%2Fapp%2Fpage%3Fx%3D1%23h&revoke_others=1"]);
  await send(tab, { type: "expired" });
  tab.button("sign-in").click();
  assert.equal(tab.assigned[1], "https://app.example.com/login?next=%2Fapp%2Fpage%3Fx%3D1%23h");
});

test("a javascript: signinUrl is never navigated to", async () => {
  const tab = await activeTab({ script: { data: { signinUrl: "javascript:alert(1)" } } });
  await send(tab, { type: "expired" });
  tab.button("sign-in").click();
  assert.deepEqual(tab.assigned, []);
});

test("terminal states: distinct texts, one Sign in again button", async () => {
  const texts = new Set();
  for (const message of [
    { type: "evicted", by: by() },
    { type: "revoked", reason: "revoked" },
    { type: "revoked", reason: "admin" },
    { type: "revoked", reason: "password_changed" },
    { type: "revoked", reason: "some_app_reason" },
    { type: "logged_out" },
    { type: "expired" },
  ]) {
    const tab = await activeTab();
    await send(tab, message);
    assert.equal(tab.bannerState, message.type);
    assert.deepEqual(
      tab.box.querySelectorAll("button").map((b) => b.getAttribute("data-sw-action")),
      ["sign-in"]
    );
    texts.add(tab.bannerText);
  }
  assert.equal(texts.size, 6, [...texts].join(" | ")); // an unknown reason reads like "revoked"
  assert.ok(texts.has("You were signed out because of a new sign-in on Chrome 120 on Windows 10."));
  assert.ok(texts.has("An administrator signed you out."));
});

test("mode banner: protected elements are disabled, already-disabled ones left alone", async () => {
  const tab = await activeTab();
  const post = tab.element("form", { method: "post" });
  const submit = tab.element("button", {}, post);
  const text = tab.element("input", { type: "text" }, post);
  const marked = tab.element("a", { "data-sessionwatch-protected": "" });
  const other = tab.element("button", {});
  const already = tab.element("button", { disabled: "" }, post);
  await send(tab, { type: "revoked", reason: "revoked" });
  assert.deepEqual([submit.disabled, marked.disabled, text.disabled, other.disabled], [true, true, false, false]);
  assert.equal(tab.document.body.inert, false, "banner mode keeps the page usable (copy your draft)");
  tab.api.stop();
  assert.deepEqual([submit.disabled, marked.disabled, already.disabled], [false, false, true]);
});

test("mode overlay: modal, the page inert, the banner outside it", async () => {
  const tab = await activeTab({ script: { data: { mode: "overlay" } } });
  await send(tab, { type: "logged_out" });
  assert.equal(tab.box.getAttribute("data-sw-mode"), "overlay");
  assert.match(tab.shadow.querySelector(".dock").className, /overlay/);
  assert.equal(tab.box.getAttribute("role"), "alertdialog");
  assert.equal(tab.box.getAttribute("aria-modal"), "true");
  assert.equal(tab.document.body.inert, true);
  assert.ok(!tab.document.body.contains(tab.host));
  assert.equal(tab.shadow.activeElement, null, "focus moves only when the user asks");
  key(tab, { key: "Tab" });
  assert.equal(tab.shadow.activeElement, tab.button("sign-in"));
});

test("superseded is never modal, whatever the mode", async () => {
  const tab = await activeTab({ script: { data: { mode: "overlay" } } });
  await send(tab, { type: "superseded", gen: 2, by: null });
  assert.equal(tab.box.getAttribute("data-sw-mode"), "banner");
  assert.equal(tab.document.body.inert, false);
});

test("preventDefault() on the DOM event suppresses the built-in UI", async () => {
  const tab = await activeTab();
  const save = tab.element("button", { "data-sessionwatch-protected": "" });
  const seen = [];
  tab.document.addEventListener("sessionwatch:superseded", (event) => {
    seen.push(event.detail.gen);
    event.preventDefault();
  });
  await send(tab, { type: "superseded", gen: 2, by: by() });
  assert.deepEqual(seen, [2]);
  assert.equal(tab.api.state(), "superseded", "the state still changes");
  assert.equal(tab.bannerState, null);
  assert.equal(save.disabled, false);
  // without a listener the same message shows the banner
  const control = await activeTab();
  await send(control, { type: "superseded", gen: 2, by: by() });
  assert.equal(control.bannerState, "superseded");
});

test("preventDefault() from an on() listener works too, for terminal states", async () => {
  const tab = await activeTab({ script: { data: { mode: "overlay" } } });
  const off = tab.api.on("expired", (detail, event) => event.preventDefault());
  await send(tab, { type: "expired" });
  assert.equal(tab.api.state(), "expired");
  assert.equal(tab.bannerState, null);
  assert.equal(tab.document.body.inert, false);
  assert.equal(typeof off, "function");
});

test("on() listeners get the detail; the returned function and off() unsubscribe", async () => {
  const tab = await activeTab();
  const a = [], b = [];
  const unsubscribe = tab.api.on("signed_in", (detail) => a.push(detail.by.browser));
  const listener = (detail) => b.push(detail.by.browser);
  tab.api.on("signed_in", listener);
  tab.api.on("signed_in", () => {
    throw new Error("a broken listener does not stop the others");
  });
  await send(tab, { type: "signed_in", by: by({ browser: "One" }) });
  unsubscribe();
  tab.api.off("signed_in", listener);
  await send(tab, { type: "signed_in", by: by({ browser: "Two" }) });
  assert.deepEqual(a, ["One"]);
  assert.deepEqual(b, ["One"]);
  // the broken listener's error is rethrown asynchronously (reported, not swallowed)
  await assert.rejects(tab.clock.advance(1), /a broken listener/);
});

test("expiring: live countdown, Stay signed in extends, countdown at 0 asks the server", async () => {
  const tab = await activeTab();
  await send(tab, { type: "expiring", in: 60, expires_at: tab.clock.now + 60000 });
  assert.equal(tab.bannerState, "expiring");
  assert.equal(tab.bannerText, "You will be signed out in 60 s.");
  assert.equal(tab.box.querySelector("[role=timer]").textContent, "60");
  await tab.clock.advance(1000);
  assert.equal(tab.bannerText, "You will be signed out in 59 s.");
  await tab.clock.advance(5000);
  assert.equal(tab.bannerText, "You will be signed out in 54 s.");
  assert.equal(tab.api.state(), "active");
  tab.button("stay").click();
  await tab.flush();
  const extend = tab.server.calls("/_sessionwatch/extend", "POST");
  assert.equal(extend.length, 1);
  assert.equal(extend[0].tab, tab.api.token());
  assert.equal(tab.bannerState, null);
  assert.equal(tab.events("extended").at(-1).detail.expires_at, tab.server.expiresAt);
  // a second warning, left to run out
  await send(tab, { type: "expiring", in: 3, expires_at: tab.clock.now + 3000 });
  tab.server.routes["GET /_sessionwatch/state"] = () => ({ status: 401, body: { error: "expired" } });
  await tab.clock.advance(3000);
  assert.equal(tab.api.state(), "expired");
  assert.equal(tab.bannerState, "expired");
});

test("extended from the server hides the countdown; an older deadline is ignored", async () => {
  const tab = await activeTab();
  const now = tab.clock.now;
  await send(tab, { type: "expiring", in: 60, expires_at: now + 60000 });
  await send(tab, { type: "extended", expires_at: now + 30000 });
  assert.equal(tab.bannerState, "expiring", "old news");
  assert.equal(tab.events("extended").length, 0);
  await send(tab, { type: "extended", expires_at: now + 1800000 });
  assert.equal(tab.bannerState, null);
  assert.equal(tab.events("extended").length, 1);
});

test("signed_in: a toast with Not you?, dismissed after 10 s or by its button", async () => {
  const tab = await activeTab();
  await send(tab, { type: "signed_in", by: by({ browser: "Firefox 121", os: "macOS 14" }) });
  const toast = tab.toast;
  assert.equal(toast.getAttribute("data-sw-state"), "signed_in");
  assert.equal(toast.getAttribute("role"), "status");
  assert.equal(toast.querySelector("p").textContent, "New sign-in: Firefox 121 on macOS 14.");
  assert.equal(tab.document.activeElement, tab.document.body, "a toast does not steal focus");
  assert.equal(tab.bannerState, null, "no banner");
  await tab.clock.advance(9000);
  assert.ok(tab.toast);
  await tab.clock.advance(1000);
  assert.equal(tab.toast, null);
  await send(tab, { type: "signed_in", by: by() });
  tab.shadow.querySelector('.toast [data-sw-action="dismiss"]').click();
  assert.equal(tab.toast, null);
  await send(tab, { type: "signed_in", by: by() });
  tab.shadow.querySelector('.toast [data-sw-action="sign-out-others"]').click();
  assert.match(tab.assigned[0], /\/login\?next=.*&revoke_others=1$/);
});

test("signed_in from this same browser raises the event but no toast", async () => {
  const tab = await activeTab();
  await send(tab, { type: "signed_in", by: by({ same_browser: true }) });
  assert.equal(tab.events("signed_in").length, 1);
  assert.equal(tab.toast, null);
});

test("strings: overrides from start() and from data-strings JSON; lang attribute", async () => {
  const tab = createTab({ script: { data: { autostart: "false" } } });
  tab.api.start({ strings: { superseded: "Diese App ist in einem anderen Tab offen.", useHere: "Hier verwenden" }, lang: "de" });
  await tab.ready();
  await send(tab, { type: "superseded", gen: 2, by: by({ at: tab.clock.now - 90000 }) });
  assert.equal(tab.bannerText, "Diese App wurde auf Chrome 120 unter Windows 10 geöffnet, vor 1 Minute.", "i18n/de.json, singular");
  await send(tab, { type: "superseded", gen: 3, by: by({ at: tab.clock.now - 150000 }) });
  assert.match(tab.bannerText, /, vor 2 Minuten\.$/, "plural");
  assert.equal(tab.server.calls("/_sessionwatch/i18n/de.json").length, 1, "only the chosen language loads");
  assert.equal(tab.server.requests.filter((r) => r.path.includes("/i18n/")).length, 1);
  await send(tab, { type: "superseded", gen: 4, by: by({ same_browser: true }) });
  assert.equal(tab.bannerText, "Diese App ist in einem anderen Tab offen.", "a per-string override wins");
  assert.equal(tab.button("use-here").textContent, "Hier verwenden");
  assert.equal(tab.host.getAttribute("lang"), "de");
  const other = await activeTab({ script: { data: { strings: '{"expired":"Abgelaufen."}' } } });
  await send(other, { type: "expired" });
  assert.equal(other.bannerText, "Abgelaufen.");
});

test("theming: the shadow CSS reads the documented custom properties", async () => {
  const tab = await activeTab();
  await send(tab, { type: "expired" });
  const style = tab.shadow.querySelector("style");
  assert.ok(style, "an inline <style> where constructable sheets are missing");
  for (const name of ["bg", "fg", "accent", "accent-fg", "font", "radius", "backdrop", "z"]) {
    assert.match(style.textContent, new RegExp(`var\\(--sessionwatch-${name},`), name);
  }
  assert.match(style.textContent, /:host \{\s*all: initial;/, "page styles do not leak in");
  assert.deepEqual(tab.server.calls("/_sessionwatch/client.css").length, 1, "fetched once, after the claim");
  assert.equal(tab.server.requests[0].path, "/_sessionwatch/claim");
});

test("a constructed stylesheet is used where supported (strict CSP style-src)", async () => {
  const sheets = [];
  class CSSStyleSheet {
    replaceSync(text) {
      this.text = text;
      sheets.push(this);
    }
  }
  const tab = createTab({ beforeLoad: ({ window }) => (window.CSSStyleSheet = CSSStyleSheet) });
  await tab.ready();
  await send(tab, { type: "expired" });
  assert.equal(tab.shadow.querySelector("style"), null);
  assert.equal(tab.shadow.adoptedStyleSheets.length, 1);
  assert.equal(tab.shadow.adoptedStyleSheets[0], sheets[0]);
  assert.match(sheets[0].text, /--sessionwatch-bg/);
});

test("a sign-out form stays usable in a superseded tab, with no attribute (issue 24)", async () => {
  const tab = await activeTab();
  const logout = tab.element("form", { method: "post", action: "/logout" });
  const signOut = tab.element("button", {}, logout);
  const nested = tab.element("form", { method: "POST", action: "/auth/Sign-Out/" });
  const nestedButton = tab.element("button", {}, nested);
  const save = tab.element("form", { method: "post", action: "/logout-report/save" });
  const saveButton = tab.element("button", {}, save);
  const viaFormaction = tab.element("button", { formaction: "/signoff" }, save);
  await send(tab, { type: "superseded", gen: 9, by: null });
  assert.deepEqual(
    [signOut.disabled, nestedButton.disabled, viaFormaction.disabled, saveButton.disabled],
    [false, false, false, true]
  );
});

test("signOutPattern \"\" turns the sign-out exception off", async () => {
  const tab = await activeTab({ script: { data: { signOutPattern: "" } } });
  const logout = tab.element("form", { method: "post", action: "/logout" });
  const signOut = tab.element("button", {}, logout);
  await send(tab, { type: "superseded", gen: 9, by: null });
  assert.equal(signOut.disabled, true);
});

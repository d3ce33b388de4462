"use strict";
// The tab token goes to this origin only: fetch, XMLHttpRequest and POST forms.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { createTab, Clock, Server, ORIGIN } = require("./harness");

const SAME_ORIGIN = [
  "/api/items",
  "api/items",
  "./api/items?x=1",
  "../api/items",
  "?page=2",
  ORIGIN + "/api/items",
  "HTTPS://APP.EXAMPLE.COM/api/items",
  "https://app.example.com:443/api/items",
];

const OTHER_ORIGINS = [
  "//evil.com/x",
  "https://evil.com/x",
  "https://app.example.com.evil.com/x",
  "https://app.example.com:8443/x",
  "http://app.example.com/x",
  "wss://app.example.com/x",
  "https://app.example.com@evil.com/x",
  "/\\evil.com/x",
  "https:\\\\evil.com\\x",
  "javascript:fetch('/api')",
  "data:text/plain,hi",
  "blob:https://app.example.com/0b1f6c2e",
  "about:blank",
];

async function activeTab(options) {
  const tab = createTab(options);
  await tab.ready();
  return tab;
}

function lastRequest(tab) {
  return tab.server.requests[tab.server.requests.length - 1];
}

test("fetch: same-origin URLs get the header", async () => {
  const tab = await activeTab();
  for (const url of SAME_ORIGIN) {
    await tab.window.fetch(url);
    assert.equal(lastRequest(tab).tab, tab.api.token(), url);
  }
  await tab.window.fetch(new URL("/u", ORIGIN));
  assert.equal(lastRequest(tab).tab, tab.api.token(), "URL object");
  await tab.window.fetch(new Request(ORIGIN + "/r", { method: "PUT", headers: { "X-App": "1" } }));
  const request = lastRequest(tab);
  assert.equal(request.tab, tab.api.token(), "Request object");
  assert.equal(request.headers.get("x-app"), "1", "the Request's own headers are kept");
});

test("fetch: other origins and schemes never get the header", async () => {
  const tab = await activeTab();
  for (const url of OTHER_ORIGINS) {
    const count = tab.server.requests.length;
    await tab.window.fetch(url).catch(() => {});
    assert.equal(tab.server.requests.length, count + 1, `${url} was sent`);
    assert.equal(lastRequest(tab).tab, null, `no token to ${url}`);
  }
  await tab.window.fetch(new Request("https://evil.com/r"));
  assert.equal(lastRequest(tab).tab, null, "cross-origin Request object");
});

test("fetch: method, body and the app's headers pass through; an app-set token wins", async () => {
  const tab = await activeTab();
  await tab.window.fetch("/api", { method: "POST", body: "payload", headers: { "X-App": "1" } });
  let request = lastRequest(tab);
  assert.equal(request.method, "POST");
  assert.equal(request.body, "payload");
  assert.equal(request.headers.get("x-app"), "1");
  assert.equal(request.tab, tab.api.token());
  await tab.window.fetch("/api", { headers: [["X-SessionWatch-Tab", "chosen-by-app"]] });
  request = lastRequest(tab);
  assert.equal(request.tab, "chosen-by-app");
});

test("fetch: a request made while the first claim is in flight waits for its token", async () => {
  const clock = new Clock();
  const server = new Server(clock);
  let release;
  const claim = server.routes["POST /_sessionwatch/claim"];
  server.routes["POST /_sessionwatch/claim"] = () => new Promise((resolve) => (release = () => resolve(claim())));
  const tab = createTab({ clock, server });
  const response = tab.window.fetch("/api/early");
  await tab.flush();
  assert.equal(server.calls("/api/early").length, 0, "held back");
  release();
  await response;
  assert.equal(server.calls("/api/early")[0].tab, server.token(1));
});

test("fetch: a 409 from the app makes the client ask GET /state (throttled)", async () => {
  const tab = await activeTab();
  tab.server.routes["POST /api/save"] = () => ({ status: 409, body: { error: "tab_superseded", by: null } });
  tab.server.gen = 2; // another tab claimed; the push got lost
  await tab.window.fetch("/api/save", { method: "POST" });
  await tab.window.fetch("/api/save", { method: "POST" });
  await tab.flush();
  assert.equal(tab.server.calls("/_sessionwatch/state").length, 1, "one check for two refusals");
  assert.equal(tab.api.state(), "superseded");
});

test("fetch: attach=false leaves fetch alone", async () => {
  const tab = createTab({ script: { data: { attach: "false" } } });
  const original = tab.window.fetch;
  await tab.ready();
  assert.equal(tab.window.fetch, original, "not wrapped");
  await tab.window.fetch("/api");
  assert.equal(lastRequest(tab).tab, null);
});

test("fetch: no header before a token exists or after stop()", async () => {
  const clock = new Clock();
  const server = new Server(clock);
  server.routes["POST /_sessionwatch/claim"] = () => "network-error";
  const tab = createTab({ clock, server });
  await tab.flush();
  await tab.window.fetch("/api");
  assert.equal(lastRequest(tab).tab, null, "claim failed: nothing to attach");
  const other = await activeTab();
  other.api.stop();
  await other.window.fetch("/api");
  assert.equal(lastRequest(other).tab, null);
});

test("XHR: header for same-origin URLs only, never duplicated", async () => {
  const tab = await activeTab();
  const send = (url, preset) => {
    const xhr = new tab.window.XMLHttpRequest();
    xhr.open("POST", url);
    if (preset) xhr.setRequestHeader("x-sessionwatch-tab", preset);
    xhr.send("body");
    return xhr;
  };
  for (const url of SAME_ORIGIN) assert.equal(send(url).headers["x-sessionwatch-tab"], tab.api.token(), url);
  for (const url of OTHER_ORIGINS) assert.equal(send(url).headers["x-sessionwatch-tab"], undefined, url);
  assert.equal(send("/api", "mine").headers["x-sessionwatch-tab"], "mine", "not appended to the app's own value");
  const again = new tab.window.XMLHttpRequest();
  again.open("GET", "https://evil.com/x"); // reused object: the new URL decides
  again.send();
  assert.equal(again.headers["x-sessionwatch-tab"], undefined);
});

test("XHR: a 401 answer makes the client check GET /state", async () => {
  const tab = await activeTab();
  tab.server.routes["GET /_sessionwatch/state"] = () => ({ status: 401, body: { error: "expired" } });
  const xhr = new tab.window.XMLHttpRequest();
  xhr.open("GET", "/api");
  xhr.send();
  xhr.respond(401);
  await tab.flush();
  assert.equal(tab.api.state(), "expired");
});

function form(tab, attrs) {
  const f = tab.element("form", attrs);
  tab.element("input", { name: "title" }, f);
  return f;
}

function field(f) {
  const fields = f.querySelectorAll("input[name=_sessionwatch_tab]");
  assert.ok(fields.length <= 1, "never more than one token field");
  return fields[0] || null;
}

test("forms: POST to this origin gets a hidden field with the current token", async () => {
  const tab = await activeTab();
  for (const attrs of [
    { method: "post", action: "/save" },
    { method: "POST", action: ORIGIN + "/save" },
    { method: "Post" }, // no action: the document's URL
    { method: "post", action: "" },
  ]) {
    const f = form(tab, attrs);
    tab.submit(f);
    const input = field(f);
    assert.ok(input, JSON.stringify(attrs));
    assert.equal(input.getAttribute("type"), "hidden");
    assert.equal(input.value, tab.api.token());
  }
});

test("forms: GET, other origins, dialog and skip markers get no field", async () => {
  const tab = await activeTab();
  const cases = [
    { method: "get", action: "/search" },
    { action: "/search" },
    { method: "dialog" },
    { method: "post", action: "https://evil.com/collect" },
    { method: "post", action: "//evil.com/collect" },
    { method: "post", action: "https://app.example.com.evil.com/collect" },
    { method: "post", action: "javascript:alert(1)" },
    { method: "post", action: "/save", "data-sessionwatch-skip": "" },
  ];
  for (const attrs of cases) {
    const f = form(tab, attrs);
    tab.submit(f);
    assert.equal(field(f), null, JSON.stringify(attrs));
  }
});

test("forms: the submitter's formaction / formmethod / skip decide", async () => {
  const tab = await activeTab();
  const f = form(tab, { method: "post", action: "/save" });
  const away = tab.element("button", { formaction: "https://evil.com/x" }, f);
  const asPost = tab.element("button", { formmethod: "post" }, form(tab, { method: "get", action: "/x" }));
  const skip = tab.element("button", { "data-sessionwatch-skip": "" }, f);
  tab.submit(f);
  assert.ok(field(f));
  tab.submit(f, away);
  assert.equal(field(f), null, "an earlier field is removed before a cross-origin submit");
  tab.submit(f, skip);
  assert.equal(field(f), null);
  tab.submit(asPost.parentNode, asPost);
  assert.ok(field(asPost.parentNode));
});

test("forms: attributes are read, not clobberable properties (<input name=action>)", async () => {
  const tab = await activeTab();
  const f = form(tab, { method: "post", action: "https://evil.com/collect" });
  f.action = ORIGIN + "/looks-same-origin"; // what an <input name="action"> does to the property
  f.method = "post";
  tab.submit(f);
  assert.equal(field(f), null);
});

test("forms: the field follows the token after Use here", async () => {
  const tab = await activeTab();
  const f = form(tab, { method: "post", action: "/save" });
  tab.submit(f);
  assert.equal(field(f).value, tab.server.token(1));
  tab.socket.message({ type: "superseded", gen: 2, by: null });
  tab.server.gen = 2;
  await tab.flush();
  await tab.api.claim();
  tab.submit(f);
  assert.equal(field(f).value, tab.server.token(3));
});

test("forms: attach=false adds nothing", async () => {
  const tab = createTab({ script: { data: { attach: "false" } } });
  await tab.ready();
  const f = form(tab, { method: "post", action: "/save" });
  tab.submit(f);
  assert.equal(field(f), null);
});

"use strict";
// Step-up (issue 27): a request of this tab answered 401 reauth_required (a route under
// @watch.recent_login_required, or forward-auth's /verify?max_age=) shows the "confirm
// it's you" toast, whose Confirm opens reauthUrl?next=<this page>; the session stays
// active (the 401 is no signing out), and a listener's preventDefault() keeps the toast away.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { createTab } = require("./harness");

const STALE = { status: 401, body: { error: "reauth_required", max_age: 300, message: "Confirm it's you: enter your password again." } };

async function activeTab(options) {
  const tab = createTab(options);
  await tab.ready();
  tab.server.routes["POST /transfer"] = () => STALE;
  return tab;
}

test("fetch: 401 reauth_required shows the confirm-it's-you toast; Confirm opens reauthUrl", async () => {
  const tab = await activeTab({ script: { data: { "reauth-url": "/reauth" } } });
  const response = await tab.window.fetch("/transfer", { method: "POST" });
  assert.equal(response.status, 401, "the app still gets its answer");
  assert.equal((await response.json()).max_age, 300, "and can read its body");
  await tab.flush();
  const toast = tab.toast;
  assert.equal(toast.getAttribute("data-sw-state"), "reauth_required");
  assert.equal(toast.querySelector("p").textContent, "Confirm it's you to continue.");
  assert.equal(tab.api.state(), "active", "no banner: the session is live");
  assert.equal(tab.events("reauth_required")[0].detail.max_age, 300);
  toast.querySelector('[data-sw-action="confirm"]').click();
  assert.match(tab.assigned[0], /\/reauth\?next=%2F/);
  assert.doesNotMatch(tab.assigned[0], /revoke_others/);
  tab.shadow.querySelector('.toast [data-sw-action="dismiss"]').click();
  assert.equal(tab.toast, null);
});

test("XHR: 401 reauth_required shows the toast too; other 401s do not", async () => {
  const tab = await activeTab();
  const xhr = new tab.window.XMLHttpRequest();
  xhr.open("POST", "/transfer");
  xhr.send();
  xhr.responseText = JSON.stringify(STALE.body);
  xhr.respond(401);
  await tab.flush();
  assert.equal(tab.toast.getAttribute("data-sw-state"), "reauth_required");
  tab.toast.querySelector('[data-sw-action="confirm"]').click();
  assert.match(tab.assigned[0], /\/login\?next=/, "reauthUrl defaults to signinUrl");
  const other = await activeTab();
  other.server.routes["POST /transfer"] = () => ({ status: 401, body: { error: "no_session" } });
  other.server.routes["GET /_sessionwatch/state"] = () => ({ status: 200, body: { tab: "active" } });
  await other.window.fetch("/transfer", { method: "POST" });
  await other.flush();
  assert.equal(other.toast, null);
});

test("preventDefault() on reauth_required keeps the built-in toast away (the app prompts itself)", async () => {
  const tab = await activeTab();
  tab.api.on("reauth_required", (detail, event) => event && event.preventDefault());
  await tab.window.fetch("/transfer", { method: "POST" });
  await tab.flush();
  assert.equal(tab.toast, null);
  assert.equal(tab.events("reauth_required").length, 1);
});

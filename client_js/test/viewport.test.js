"use strict";
// Issue 24 item 4: on a phone, a page wider than the screen widens the layout viewport (what
// position:fixed follows) past what the screen shows; the dock follows window.visualViewport.
// Real Chromium with mobile emulation: tests/e2e/test_banner_phone.py.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { createTab } = require("./harness");

const PHONE = { offsetLeft: 0, offsetTop: 0, width: 390, height: 664 };
const by = { browser: "Chrome 120", os: "Android", place: "203.0.113.0/24", at: 0, same_browser: false };

function dock(tab) {
  return tab.shadow.querySelector(".dock");
}

test("the dock covers the visual viewport, and follows its scroll and resize", async () => {
  const tab = createTab({ visualViewport: PHONE });
  await tab.ready();
  assert.equal(dock(tab).style.cssText, "left:0px;top:0px;width:390px;height:664px", "fitted from the start");
  tab.socket.message({ type: "superseded", gen: 9, by });
  await tab.flush();
  assert.equal(tab.bannerState, "superseded");
  tab.moveViewport({ offsetLeft: 95, offsetTop: 176 });
  assert.equal(dock(tab).style.cssText, "left:95px;top:176px;width:390px;height:664px", "scrolled: the dock moves along");
  tab.moveViewport({ width: 195, height: 332 }, "resize"); // pinch-zoom x2
  assert.equal(dock(tab).style.cssText, "left:95px;top:176px;width:195px;height:332px");
});

test("the dock class (bottom, top, overlay) keeps the fitted geometry", async () => {
  const tab = createTab({ visualViewport: PHONE, script: { data: { placement: "top", mode: "overlay" } } });
  await tab.ready();
  tab.moveViewport({ offsetTop: 300 });
  tab.socket.serverClose(4004); // logged out: overlay
  await tab.flush();
  assert.equal(tab.bannerState, "logged_out");
  assert.match(dock(tab).className, /\bdock top overlay\b/);
  assert.equal(dock(tab).style.cssText, "left:0px;top:300px;width:390px;height:664px");
});

test("without visualViewport the stylesheet alone places the dock", async () => {
  const tab = createTab();
  await tab.ready();
  tab.socket.message({ type: "superseded", gen: 9, by });
  await tab.flush();
  assert.equal(tab.bannerState, "superseded");
  assert.equal(dock(tab).style.cssText, "");
});

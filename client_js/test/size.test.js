"use strict";
// Issue 16: the client stays <= 6 KiB (+ 211 B since issue 24, + 150 B since issue 27, + 32 B since issue 26: the message of a sign-out at the identity provider, + 42 B since issue 25: new device / new place) minified (terser, from npm) and gzipped, measured in
// every test run; translations load only for the chosen language, so they are not in it.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { measure, BUDGET } = require("../scripts/size");

test("sessionwatch.js min + gzip is within its budget (6 KiB + 435 B)", async () => {
  const size = await measure();
  console.log(`sessionwatch.js: ${size.raw} B raw, ${size.minified} B minified, ${size.gzip} B min+gzip (budget ${BUDGET} B); fetched once: ${JSON.stringify(size.fetched)}`);
  assert.ok(size.minified < size.raw / 1.5, "really minified");
  assert.ok(size.gzip <= BUDGET, `${size.gzip} B > ${BUDGET} B`);
});

"use strict";
// The client's size as a page loads it: sessionwatch.js minified by terser (keeping the
// /*! */ header) then gzip -9, against the budget of 6 KiB + 128 B; and the files it fetches once
// at start (the banner's stylesheet; a translation only for de/es/fr/ja pages).
// `npm run size` prints the table; test/size.test.js asserts the budget in every test run.
const fs = require("node:fs");
const path = require("node:path");
const zlib = require("node:zlib");
const { minify } = require("terser");

// 6 KiB (issue 16) + 128 B for the sign-out forms a superseded tab keeps usable (issue 24)
// + 71 B to keep the banner on a phone's screen (issue 24 item 4: the dock follows
// visualViewport, since position:fixed follows a layout viewport that a wide page makes
// larger than the screen; no CSS unit follows the visual viewport)
// + 150 B for step-up (issue 27): a fetch or XHR answered 401 reauth_required shows the
// "confirm it's you" toast (the toast shared with signed_in, its two texts, the event)
// + 32 B for issue 26: the message of a sign-out at the identity provider
// + 12 B to hand pages the server's "presence" (issue 24 item 7: live tab counts pushed)
// + 42 B for "(new device)" / "(new place)" beside the device a takeover or sign-in names
// (issue 25: the server marks what its user has not used lately)
const BUDGET = 6 * 1024 + 128 + 71 + 150 + 32 + 12 + 42; // bytes, sessionwatch.js min + gzip
const ROOT = path.join(__dirname, "..");

const gzip = (text) => zlib.gzipSync(text, { level: 9 }).length;

/** {raw, minified, gzip, brotli} of sessionwatch.js, and gzip sizes of the fetched files. */
async function measure() {
  const source = fs.readFileSync(path.join(ROOT, "sessionwatch.js"), "utf8");
  const { code } = await minify(source, { compress: true, mangle: true, format: { comments: /^!/ } });
  const css = fs.readFileSync(path.join(ROOT, "sessionwatch.css"), "utf8");
  const fetched = { "sessionwatch.css": gzip(css.replace(/\/\*(?!!)[\s\S]*?\*\/|\s+(?=[{};:,])|(?<=[{};:,])\s+/g, "")) };
  for (const file of fs.readdirSync(path.join(ROOT, "i18n")).sort()) {
    fetched["i18n/" + file] = gzip(JSON.stringify(JSON.parse(fs.readFileSync(path.join(ROOT, "i18n", file), "utf8"))));
  }
  return {
    raw: Buffer.byteLength(source),
    minified: Buffer.byteLength(code),
    gzip: gzip(code),
    brotli: zlib.brotliCompressSync(code).length,
    fetched,
  };
}

async function main() {
  const size = await measure();
  const row = (label, bytes) => console.log(`${label.padEnd(28)}${String(bytes).padStart(7)} B`);
  row("sessionwatch.js raw", size.raw);
  row("minified (terser)", size.minified);
  row("min + gzip -9", size.gzip);
  row("min + brotli", size.brotli);
  for (const [file, bytes] of Object.entries(size.fetched)) row(`${file} (min + gzip)`, bytes);
  if (size.gzip > BUDGET) {
    console.error(`over budget: ${size.gzip} B > ${BUDGET} B min + gzip`);
    process.exitCode = 1;
  }
}

module.exports = { measure, BUDGET };

if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}

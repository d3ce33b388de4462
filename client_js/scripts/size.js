"use strict";
// Prints the client's size: raw, minified (terser, keeping the /*! */ header) and
// minified + gzip -9. Needs the devDependency: npm install && npm run size.
const fs = require("node:fs");
const path = require("node:path");
const zlib = require("node:zlib");
const { minify } = require("terser");

const BUDGET = 6 * 1024; // min + gzip

async function main() {
  const file = path.join(__dirname, "..", "sessionwatch.js");
  const source = fs.readFileSync(file, "utf8");
  const { code } = await minify(source, { compress: true, mangle: true, format: { comments: /^!/ } });
  const gzip = zlib.gzipSync(code, { level: 9 }).length;
  const brotli = zlib.brotliCompressSync(code).length;
  const row = (label, bytes) => console.log(`${label.padEnd(16)}${String(bytes).padStart(7)} B`);
  row("raw", Buffer.byteLength(source));
  row("minified", Buffer.byteLength(code));
  row("min + gzip", gzip);
  row("min + brotli", brotli);
  if (gzip > BUDGET) {
    console.error(`over budget: ${gzip} B > ${BUDGET} B min + gzip`);
    process.exitCode = 1;
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});

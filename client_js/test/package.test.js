"use strict";
// Issue 11: `npm pack` gives a package whose types check. The tarball is unpacked into a
// throwaway consumer project as node_modules/@sessionwatch/client, and `tsc --strict`
// (typescript from npm) checks a consumer .ts file that uses the API: the ES module import,
// the global of the classic script and the DOM events. A consumer with a type error must fail.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { execFileSync, spawnSync } = require("node:child_process");

const ROOT = path.join(__dirname, "..");
const TSC = path.join(ROOT, "node_modules", "typescript", "bin", "tsc");

const CONSUMER = `
import SessionWatch, { start, on, State, CloseCode, type SessionWatchOptions } from "@sessionwatch/client";

const options: SessionWatchOptions = {
  signinUrl: "/login",
  mode: "overlay",
  placement: "top",
  lang: "de",
  strings: { superseded: "Open elsewhere.", expiring: { one: "{n} second", other: "{n} seconds" } },
};
start(options);
const stop: () => void = on("superseded", (detail, event) => {
  const who: string | undefined = detail.by?.browser;
  if (event) event.preventDefault();
  console.log(who, detail.gen);
});
stop();
on("state", ({ state, previous }) => {
  if (state === State.ACTIVE && previous !== State.STARTING) console.log("active again");
});
const code: 4007 = CloseCode.TAB_INVALID;
document.addEventListener("sessionwatch:revoked", (event) => console.log(event.detail.reason));
const now: string = window.SessionWatch.state() === SessionWatch.state() ? "same" : "other";
console.log(code, now, SessionWatch.version, SessionWatch.token()?.length);
`;

// One packed and unpacked package for all three tests (npm pack and tsc are the slow part).
let project = null;
function consumerProject() {
  if (project) return project;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sessionwatch-pack-"));
  const [packed] = JSON.parse(
    execFileSync("npm", ["pack", "--json", "--pack-destination", dir, "--loglevel=error"], { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
  );
  execFileSync("tar", ["-xzf", path.join(dir, packed.filename), "-C", dir]);
  fs.mkdirSync(path.join(dir, "node_modules", "@sessionwatch"), { recursive: true });
  fs.renameSync(path.join(dir, "package"), path.join(dir, "node_modules", "@sessionwatch", "client"));
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  fs.writeFileSync(path.join(dir, "good.ts"), CONSUMER);
  fs.writeFileSync(path.join(dir, "bad.ts"), CONSUMER + '\nstart({ mode: "modal" });\nconst wrong: 4002 = CloseCode.ROTATED;\n');
  for (const [name, file, skipLibCheck] of [["good", "good.ts", false], ["bad", "bad.ts", true]]) {
    fs.writeFileSync(
      path.join(dir, `tsconfig.${name}.json`),
      JSON.stringify({
        compilerOptions: { strict: true, noEmit: true, module: "nodenext", moduleResolution: "nodenext", target: "es2022", lib: ["es2022", "dom"], types: [], skipLibCheck, skipDefaultLibCheck: true },
        files: [file],
      })
    );
  }
  project = { dir, packed };
  return project;
}

function tsc(name) {
  return spawnSync(process.execPath, [TSC, "-p", path.join(consumerProject().dir, `tsconfig.${name}.json`)], { encoding: "utf8" });
}

test("npm pack ships the script, module, types, stylesheet and translations", () => {
  const { packed } = consumerProject();
  const files = packed.files.map((f) => f.path).sort();
  for (const file of ["sessionwatch.js", "sessionwatch.mjs", "sessionwatch.d.ts", "sessionwatch.css", "i18n/de.json", "i18n/ja.json", "README.md", "package.json"]) {
    assert.ok(files.includes(file), `${file} in ${files}`);
  }
  assert.ok(!files.some((f) => f.startsWith("test/") || f.startsWith("node_modules/")), "no tests or tools");
});

test("the packed types check under tsc --strict in a consumer project", () => {
  const result = tsc("good"); // skipLibCheck off: the package's .d.ts is checked (lib.dom is not)
  assert.equal(result.status, 0, result.stdout + result.stderr);
});

test("a consumer with a type error fails the same check (the check is real)", () => {
  const result = tsc("bad");
  assert.notEqual(result.status, 0);
  assert.match(result.stdout, /"modal"/);
  assert.match(result.stdout, /4013/);
});

test.after(() => project && fs.rmSync(project.dir, { recursive: true, force: true }));

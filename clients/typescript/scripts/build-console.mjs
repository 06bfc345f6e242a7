// Builds the gateway's browser console (GET /console) into dist/console/
// (or the directory after --out): index.html, console.css, and console.js
// (console/console.ts and the SDK, bundled by esbuild into one classic
// script). The gateway's build.rs embeds these three files, and runs this
// script itself with --out in its OUT_DIR when dist/console/ is missing or
// stale; the page's Content-Security-Policy allows no inline script, so the
// script is a file of its own, served at /console/console.js.
//
// Last, it writes the stamp `.built` beside them, dated when the build
// began: build.rs takes the files as fresh when the stamp is newer than
// every source.
//
// The console is type-checked first (tsc --noEmit, console/tsconfig.json):
// esbuild only strips types.
//
//   node scripts/build-console.mjs [--out DIR]

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const source = path.join(here, "console");
const outAt = process.argv.indexOf("--out");
if (outAt !== -1 && !process.argv[outAt + 1]) {
    console.error("build-console: --out needs a directory");
    process.exit(2);
}
const out = outAt === -1 ? path.join(here, "dist/console") : path.resolve(process.argv[outAt + 1]);
// Before anything is read: a source changed during the build is newer than the stamp.
const began = new Date();

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const checked = spawnSync(process.execPath, [tsc, "-p", path.join(source, "tsconfig.json")], { stdio: "inherit" });
if (checked.status !== 0) {
    console.error("build-console: the console does not type-check (see above)");
    process.exit(1);
}

mkdirSync(out, { recursive: true });
const bundle = await build({
    entryPoints: [path.join(source, "console.ts")],
    bundle: true,
    format: "iife",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    logLevel: "warning",
    write: false,
});
const files = {
    "index.html": readFileSync(path.join(source, "index.html")),
    "console.js": Buffer.from(bundle.outputFiles[0].contents),
    "console.css": readFileSync(path.join(source, "console.css")),
};
// Unchanged files are not rewritten: cargo rebuilds the gateway when their
// modification time changes.
for (const [name, contents] of Object.entries(files)) {
    const target = path.join(out, name);
    if (existsSync(target) && readFileSync(target).equals(contents)) continue;
    writeFileSync(target, contents);
}
const stamp = path.join(out, ".built");
writeFileSync(stamp, "");
utimesSync(stamp, began, began);
const sizes = Object.entries(files).map(([name, contents]) => `${name} ${contents.length} B`);
console.log(`build-console: ${path.relative(here, out)}/: ${sizes.join(", ")}`);

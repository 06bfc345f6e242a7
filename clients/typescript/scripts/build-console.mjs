// Builds the gateway's browser console (GET /console) into dist/console/:
// index.html, console.css, and console.js (console/console.ts and the SDK,
// bundled by esbuild into one classic script). The gateway's build.rs embeds
// these three files; the page's Content-Security-Policy allows no inline
// script, so the script is a file of its own, served at /console/console.js.
//
// The console is type-checked first (tsc --noEmit, console/tsconfig.json):
// esbuild only strips types.

import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const source = path.join(here, "console");
const out = path.join(here, "dist/console");

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const checked = spawnSync(process.execPath, [tsc, "-p", path.join(source, "tsconfig.json")], { stdio: "inherit" });
if (checked.status !== 0) {
    console.error("build-console: the console does not type-check (see above)");
    process.exit(1);
}

mkdirSync(out, { recursive: true });
await build({
    entryPoints: [path.join(source, "console.ts")],
    outfile: path.join(out, "console.js"),
    bundle: true,
    format: "iife",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    logLevel: "warning",
});
for (const file of ["index.html", "console.css"]) copyFileSync(path.join(source, file), path.join(out, file));

const sizes = ["index.html", "console.js", "console.css"].map((f) => `${f} ${statSync(path.join(out, f)).size} B`);
console.log(`build-console: ${path.relative(here, out)}/: ${sizes.join(", ")}`);

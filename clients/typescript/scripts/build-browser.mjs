// Builds the client's single-file browser build, dist/switchboard.js: the
// whole client (src/index.ts) bundled by esbuild into one minified ES
// module, with the same exports as the package. A page loads it with
// <script type="module"> (or an import map that names it
// `@switchboard/client`) from its own server, without a bundler or a CDN;
// the package exports it as `@switchboard/client/browser` too. Its source
// map (dist/switchboard.js.map) carries the TypeScript sources.
//
// Run by `npm run build`, after tsc (which type-checks the sources: esbuild
// only strips types).

import { statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const outfile = path.join(here, "dist/switchboard.js");

await build({
    entryPoints: [path.join(here, "src/index.ts")],
    outfile,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    sourcemap: "linked",
    sourcesContent: true,
    legalComments: "none",
    logLevel: "warning",
});
console.log(`build-browser: dist/switchboard.js ${statSync(outfile).size} B`);

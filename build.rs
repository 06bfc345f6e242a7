//! Embeds the browser console (`GET /console`) in the binary.
//!
//! The console is three files (the page, its script, its style sheet) that
//! `clients/typescript/scripts/build-console.mjs` makes from the console's
//! and the TypeScript client's sources. Each such build leaves a stamp,
//! `.built`, dated when it began; a build is fresh when its stamp is newer
//! than every source. This script takes the files from
//! `clients/typescript/dist/console/` when `npm run build` (`just sdk`)
//! left a fresh build there. Otherwise, with Node.js >= 20 and npm on
//! `PATH`, it builds them itself into `OUT_DIR` (after `npm ci` in
//! `clients/typescript` when `node_modules` is missing or older than the
//! lock file), so a plain `cargo build` or `cargo install` embeds the
//! console too.
//!
//! Without Node, or when that build fails, the binary gets a page that
//! says the console was not built and why; cargo prints a warning, and
//! `serve` logs one at startup (`SWITCHBOARD_CONSOLE_BUILT` says whether
//! the console is in, `SWITCHBOARD_CONSOLE_MISSING` why it is not).
//!
//! Cargo runs this again, and then recompiles the crate, when a source
//! changes or `dist/console/` is rewritten; after a build without the
//! console, also when anything under `clients/typescript` or `PATH`
//! changes. A missing path is never watched: cargo would run the script,
//! and recompile the crate, on every build.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

/// The TypeScript client, relative to the manifest.
const CLIENT: &str = "clients/typescript";
/// Where `npm run build` writes the console, relative to `CLIENT`.
const DIST: &str = "dist/console";
/// Every file the console needs: the page, its script, its style sheet.
const FILES: [&str; 3] = ["index.html", "console.js", "console.css"];
/// The stamp a console build leaves beside its files, dated when it began.
const STAMP: &str = ".built";
/// What a console build reads, relative to `CLIENT`: the console, the
/// client it bundles, the build script, the compiler settings and the
/// installed packages (esbuild, typescript).
const SOURCES: [&str; 7] = [
    "console",
    "src",
    "scripts/build-console.mjs",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "node_modules/.package-lock.json",
];
/// The oldest Node.js the build supports (`engines` in package.json).
const NODE_MIN_MAJOR: u32 = 20;
/// How many of a failed command's last output lines the warning repeats.
const OUTPUT_LINES: usize = 20;

/// The page served when the console was not built; `{why}` is replaced.
const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>switchboard console: not built</title></head>
<body>
<h1>The console was not built into this binary</h1>
<p>{why}</p>
<p>The build embeds the console when Node.js 20 or newer with npm is on
<code>PATH</code>. Install them, then build again (from the repository's root):</p>
<pre>cargo build --release   # builds the console too
./x run                 # or: builds everything and runs the gateway</pre>
</body>
</html>
"#;

fn main() {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let out = std::env::var_os("OUT_DIR").map(PathBuf::from);
    let (Some(manifest), Some(out)) = (manifest, out) else {
        panic!("cargo sets CARGO_MANIFEST_DIR and OUT_DIR for build scripts");
    };
    let client = manifest.join(CLIENT);
    let dist = client.join(DIST);
    let own = out.join("console");
    let newest_source = SOURCES
        .iter()
        .filter_map(|s| newest_in(&client.join(s)))
        .max();

    let console = if fresh(&dist, newest_source) {
        Ok(dist.clone())
    } else if fresh(&own, newest_source) {
        Ok(own.clone())
    } else {
        build(&client, &own, dist.exists()).map(|()| own.clone())
    };

    println!("cargo:rerun-if-changed=build.rs");
    match &console {
        // The sources, and dist/'s files, which `npm run build` rewrites
        // only when they change. Not the installed packages: the lock file
        // stands for them, and an `npm ci` here would make the next build
        // run this script again.
        Ok(_) => {
            for path in SOURCES
                .iter()
                .filter(|s| !s.starts_with("node_modules"))
                .map(|s| client.join(s))
                .chain(FILES.iter().map(|f| dist.join(f)))
                .filter(|p| p.exists())
            {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
        // The whole client (`just sdk` writing dist/, `npm ci`) and PATH
        // (a Node installed where PATH did not reach) make the next build
        // look again.
        Err(_) => {
            println!("cargo:rerun-if-changed={}", client.display());
            println!("cargo:rerun-if-env-changed=PATH");
        }
    }

    match console {
        Ok(dir) => {
            for name in FILES {
                let path = dir.join(name);
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                write(&out.join(format!("console-{name}")), &bytes);
            }
            println!("cargo:rustc-env=SWITCHBOARD_CONSOLE_BUILT=true");
            println!("cargo:rustc-env=SWITCHBOARD_CONSOLE_MISSING=");
        }
        Err(failure) => {
            println!(
                "cargo:warning=the console is not built into this binary (GET /console says so; serve warns): {}",
                failure.why
            );
            for line in &failure.output {
                println!("cargo:warning=  {line}");
            }
            println!("cargo:warning={}", failure.remedy);
            for name in FILES {
                let bytes = match name {
                    "index.html" => NOT_BUILT.replace("{why}", &html_escape(&failure.why)),
                    _ => String::new(),
                };
                write(&out.join(format!("console-{name}")), bytes.as_bytes());
            }
            println!("cargo:rustc-env=SWITCHBOARD_CONSOLE_BUILT=false");
            println!(
                "cargo:rustc-env=SWITCHBOARD_CONSOLE_MISSING={}",
                failure.why.replace(['\n', '\r'], " ")
            );
        }
    }
}

/// Why the console could not be built, the end of the failed command's
/// output, and what to do about it.
struct Failure {
    why: String,
    output: Vec<String>,
    remedy: String,
}

impl Failure {
    fn no_node(why: String, stale_dist: bool) -> Failure {
        let why = if stale_dist {
            format!("{CLIENT}/{DIST}/ is older than the console's sources, and {why}")
        } else {
            why
        };
        Failure {
            why,
            output: Vec::new(),
            remedy: format!(
                "install Node.js >= {NODE_MIN_MAJOR} with npm, then build again with ./x (or run `just sdk` first): this script then builds the console itself"
            ),
        }
    }
}

/// Whether `dir` holds every console file and a stamp newer than every
/// source.
fn fresh(dir: &Path, newest_source: Option<SystemTime>) -> bool {
    let Some(newest_source) = newest_source else {
        return false;
    };
    let stamp = modified(&dir.join(STAMP));
    FILES.iter().all(|f| dir.join(f).is_file()) && stamp.is_some_and(|t| t >= newest_source)
}

/// Builds the console into `own` with Node: `npm ci` first when the
/// installed packages are missing or older than the lock file.
fn build(client: &Path, own: &Path, stale_dist: bool) -> Result<(), Failure> {
    if !client.join("console").is_dir() {
        return Err(Failure {
            why: format!("{CLIENT}/console/ is missing"),
            output: Vec::new(),
            remedy: "build from a full checkout of the repository".to_string(),
        });
    }
    let version = match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            return Err(Failure::no_node(
                "Node.js was not found on PATH".to_string(),
                stale_dist,
            ))
        }
    };
    let major = version
        .strip_prefix('v')
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    if major.is_none_or(|m| m < NODE_MIN_MAJOR) {
        return Err(Failure::no_node(
            format!("Node.js on PATH is {version}, older than {NODE_MIN_MAJOR}"),
            stale_dist,
        ));
    }
    if !Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err(Failure::no_node(
            "npm was not found on PATH".to_string(),
            stale_dist,
        ));
    }
    let installed = modified(&client.join("node_modules/.package-lock.json"));
    let lock = modified(&client.join("package-lock.json"));
    if installed.is_none() || lock > installed {
        run(
            client,
            "npm",
            &["ci", "--no-audit", "--no-fund"],
            "npm ci in clients/typescript failed (is the npm registry reachable?)",
        )?;
    }
    let own = own.to_string_lossy();
    run(
        client,
        "node",
        &["scripts/build-console.mjs", "--out", &own],
        "scripts/build-console.mjs failed",
    )
}

/// Runs a command in `dir`; on failure, the end of its output. Its output
/// never reaches this script's stdout, which cargo reads for directives.
fn run(dir: &Path, program: &str, args: &[&str], what: &str) -> Result<(), Failure> {
    let fail = |output: Vec<String>| Failure {
        why: what.to_string(),
        output,
        remedy: "see the output above (`just sdk` runs the same build); fix it and build again"
            .to_string(),
    };
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(vec![format!("cannot run {program}: {e}")]))?;
    if output.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let tail = lines[lines.len().saturating_sub(OUTPUT_LINES)..].to_vec();
    Err(fail(tail))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of a file, or of a directory and
/// everything under it (a removed file shows in its directory's time).
fn newest_in(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    let mut newest = meta.modified().ok();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).ok()?.flatten() {
            newest = newest.max(newest_in(&entry.path()));
        }
    }
    newest
}

/// Writes `bytes` unless the file already holds them: a rewrite would make
/// cargo recompile the crate that includes it.
fn write(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return;
    }
    if let Err(e) = std::fs::write(path, bytes) {
        panic!("cannot write {}: {e}", path.display());
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

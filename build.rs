//! Embeds the browser console (`GET /console`) in the binary.
//!
//! `npm run build` in `clients/typescript` (the `just sdk` recipe) writes the
//! page, its script and its style sheet to `clients/typescript/dist/console/`;
//! they are copied into `OUT_DIR` and `src/console.rs` includes them. When
//! they are missing (a `cargo build` without the npm step), a small page
//! that says how to build the console is embedded instead, with a warning.

use std::path::{Path, PathBuf};

/// The console's files, as `npm run build` writes them.
const DIST: &str = "clients/typescript/dist/console";
/// Every file the console needs: the page, its script, its style sheet.
const FILES: [&str; 3] = ["index.html", "console.js", "console.css"];

/// The page served when the console was not built.
const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>switchboard console: not built</title></head>
<body>
<h1>The console was not built into this binary</h1>
<p>Build it, then rebuild the gateway (from the repository's root):</p>
<pre>just sdk        # npm ci and npm run build in clients/typescript
cargo build</pre>
<p><code>just run</code> and <code>just test</code> do both.</p>
</body>
</html>
"#;

fn main() {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let out = std::env::var_os("OUT_DIR").map(PathBuf::from);
    let (Some(manifest), Some(out)) = (manifest, out) else {
        panic!("cargo sets CARGO_MANIFEST_DIR and OUT_DIR for build scripts");
    };
    let dist = manifest.join(DIST);
    println!("cargo:rerun-if-changed=build.rs");
    let mut contents = Vec::new();
    for name in FILES {
        let path = dist.join(name);
        // A missing file makes cargo run this script again on every build,
        // so the console is picked up as soon as it is built.
        println!("cargo:rerun-if-changed={}", path.display());
        contents.push((name, std::fs::read(&path).ok()));
    }
    let built = contents.iter().all(|(_, bytes)| bytes.is_some());
    if !built {
        let missing: Vec<&str> = contents
            .iter()
            .filter(|(_, bytes)| bytes.is_none())
            .map(|(name, _)| *name)
            .collect();
        println!(
            "cargo:warning=the console is not built ({DIST}/{{{}}} missing): GET /console says so; run `just sdk`, then build again",
            missing.join(",")
        );
    }
    for (name, bytes) in contents {
        let bytes = match bytes {
            Some(bytes) if built => bytes,
            _ if name == "index.html" => NOT_BUILT.as_bytes().to_vec(),
            _ => Vec::new(),
        };
        write(&out.join(format!("console-{name}")), &bytes);
    }
    println!("cargo:rustc-env=SWITCHBOARD_CONSOLE_BUILT={built}");
}

fn write(path: &Path, bytes: &[u8]) {
    if let Err(e) = std::fs::write(path, bytes) {
        panic!("cannot write {}: {e}", path.display());
    }
}

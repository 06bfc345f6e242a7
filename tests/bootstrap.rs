//! `./x`, the entry point on a fresh clone: it names every missing
//! prerequisite and what it is for, and stops before installing or
//! building anything; with everything there, it hands over to `just`.
//! Real script, real PATH lookups (a PATH without Node, curl; a Node that
//! is too old).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn x() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("x")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A directory of links to every program on this PATH except `left_out`
/// (the first of each name, as a lookup would find it).
fn path_without(left_out: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = std::env::var_os("PATH").unwrap_or_default();
    for entry_dir in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&entry_dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if left_out.iter().any(|l| name == **l) {
                continue;
            }
            let link = dir.path().join(&name);
            if !link.exists() && !link.is_symlink() {
                let _ = std::os::unix::fs::symlink(entry.path(), &link);
            }
        }
    }
    dir
}

#[test]
fn help_names_every_prerequisite_and_what_it_is_for() {
    let out = Command::new(x()).arg("--help").output().expect("./x runs");
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    for needle in [
        "./x run",
        "./x test",
        "cargo, rustc",
        "rust-toolchain.toml",
        "python3, pip",
        "node >= 20",
        "npm",
        "curl",
        "just run",
    ] {
        assert!(text.contains(needle), "`{needle}` in:\n{text}");
    }
}

#[test]
fn without_node_npm_and_curl_the_tests_do_not_start_and_x_says_why() {
    let bin = path_without(&["node", "nodejs", "npm", "npx", "curl"]);
    let out = Command::new(x())
        .arg("test")
        .env("PATH", bin.path())
        .output()
        .expect("./x runs");
    let text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("missing prerequisites for ./x test"),
        "{text}"
    );
    for needle in [
        "node >= 20 (builds the TypeScript client and the console",
        "npm (installs the TypeScript client's",
        "curl (the tests run the README's HTTP examples",
    ] {
        assert!(text.contains(needle), "`{needle}` in:\n{text}");
    }
    // Nothing ran: neither the tools' installer nor just.
    assert!(!text.contains("tools:"), "{text}");
}

#[test]
fn a_node_older_than_20_is_refused_with_its_version() {
    let fake = tempfile::tempdir().expect("temp dir");
    let node = fake.path().join("node");
    std::fs::write(&node, "#!/bin/sh\necho v18.19.0\n").expect("fake node");
    std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = std::env::join_paths(std::iter::once(fake.path().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let out = Command::new(x())
        .arg("run")
        .env("PATH", path)
        .output()
        .expect("./x runs");
    let text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("missing prerequisites for ./x run"), "{text}");
    assert!(text.contains("found v18.19.0"), "{text}");
    assert!(!text.contains("curl"), "run needs no curl: {text}");
}

/// With everything present, `./x ARGS` is `just ARGS` in the repository.
#[test]
fn with_the_prerequisites_x_hands_over_to_just() {
    let out = Command::new(x())
        .arg("--list")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("./x runs");
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    for recipe in ["run *ARGS", "test", "sdk", "lint"] {
        assert!(text.contains(recipe), "`{recipe}` listed:\n{text}");
    }
}

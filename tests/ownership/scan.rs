//! The scan: every identifier starting with `spawn` in a file's code (not
//! its comments, strings or char literals), outside `#[cfg(test)]` items
//! and the files of test-only modules, with the function it is in and the
//! call as written. A small lexer, not a parser: enough for this crate's
//! source, and tested on the cases that matter below.

use std::path::{Path, PathBuf};

/// One spawning call found in the source.
#[derive(Debug)]
pub struct Site {
    pub file: String,
    pub line: usize,
    pub function: String,
    pub call: String,
}

/// Every spawning call in the crate's `src/`, outside test code.
pub fn scan(root: &Path) -> Vec<Site> {
    let mut files = Vec::new();
    collect(&root.join("src"), &mut files);
    files.sort();
    let mut test_files = Vec::new();
    let mut sites = Vec::new();
    for path in &files {
        let relative = path
            .strip_prefix(root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        let source = std::fs::read_to_string(path).expect("a readable source file");
        let (found, tests) = scan_source(&relative, &source);
        sites.push((relative, found));
        test_files.extend(tests);
    }
    sites
        .into_iter()
        .filter(|(file, _)| {
            !test_files
                .iter()
                .any(|t| Path::new(file) == t || Path::new(file).starts_with(t.with_extension("")))
        })
        .flat_map(|(_, found)| found)
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The spawning calls of one file outside `#[cfg(test)]` items, and the
/// files of the test-only modules it declares (`#[cfg(test)] mod x;`).
fn scan_source(file: &str, source: &str) -> (Vec<Site>, Vec<PathBuf>) {
    let chars: Vec<char> = code_only(source).chars().collect();
    let mut sites = Vec::new();
    let mut test_modules = Vec::new();
    let mut line = 1;
    let mut depth = 0usize;
    // The depth a `#[cfg(test)]` item's body closes back to.
    let mut test_until: Option<usize> = None;
    let mut test_pending = false;
    // Parentheses open, and how many were when `#[cfg(test)]` was read: a
    // `,` there ends the item (a field, a parameter, a match arm).
    let mut parens = 0usize;
    let mut parens_at_test = 0usize;
    // The function whose body the next `{` opens, and the open ones.
    let mut fn_pending: Option<String> = None;
    let mut functions: Vec<(String, usize)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if at(&chars, i, "#[cfg(test)]") {
            test_pending = true;
            parens_at_test = parens;
            i += "#[cfg(test)]".len();
            continue;
        }
        if c == '(' || c == '[' {
            parens += 1;
        }
        if c == ')' || c == ']' {
            parens = parens.saturating_sub(1);
        }
        if c == ',' && parens == parens_at_test {
            test_pending = false;
        }
        if c == '{' {
            if test_pending && test_until.is_none() {
                test_until = Some(depth);
            }
            test_pending = false;
            if let Some(name) = fn_pending.take() {
                functions.push((name, depth));
            }
            depth += 1;
            i += 1;
            continue;
        }
        if c == '}' {
            test_pending = false;
            depth = depth.saturating_sub(1);
            if test_until == Some(depth) {
                test_until = None;
            }
            while functions.last().is_some_and(|(_, d)| *d >= depth) {
                functions.pop();
            }
            i += 1;
            continue;
        }
        if c == ';' {
            if test_pending && test_until.is_none() {
                let statement = statement_before(&chars, i);
                if let Some(name) = statement.strip_prefix("mod ") {
                    let dir = file.strip_suffix("/mod.rs").map_or_else(
                        || file.strip_suffix(".rs").unwrap_or(file).to_string(),
                        str::to_string,
                    );
                    test_modules.push(PathBuf::from(format!("{dir}/{}.rs", name.trim())));
                }
            }
            test_pending = false;
            fn_pending = None;
            i += 1;
            continue;
        }
        if is_ident_start(c) && (i == 0 || !is_ident(chars[i - 1])) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word == "fn" {
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let name_start = j;
                while j < chars.len() && is_ident(chars[j]) {
                    j += 1;
                }
                if j > name_start {
                    fn_pending = Some(chars[name_start..j].iter().collect());
                    i = j;
                }
                continue;
            }
            if word.starts_with("spawn") && test_until.is_none() && !test_pending {
                let mut path_start = start;
                while path_start > 0
                    && (is_ident(chars[path_start - 1])
                        || chars[path_start - 1] == ':'
                        || chars[path_start - 1] == '.')
                {
                    path_start -= 1;
                }
                let mut call: String = chars[path_start..i].iter().collect();
                if let Some(rest) = call.strip_prefix("self.") {
                    call = rest.to_string();
                }
                let function = functions
                    .last()
                    .map_or_else(|| "(none)".to_string(), |(name, _)| name.clone());
                sites.push(Site {
                    file: file.to_string(),
                    line,
                    function,
                    call,
                });
            }
            continue;
        }
        i += 1;
    }
    (sites, test_modules)
}

/// The code of the statement that ends at `end` (its `;`), from the
/// previous `;`, `{` or `}`.
fn statement_before(chars: &[char], end: usize) -> String {
    let mut start = end;
    while start > 0 && !matches!(chars[start - 1], ';' | '{' | '}' | ']') {
        start -= 1;
    }
    let text: String = chars[start..end].iter().collect();
    let text = text.trim();
    text.strip_prefix("pub ").unwrap_or(text).trim().to_string()
}

/// Whether `text` is at `index` of `chars`.
fn at(chars: &[char], index: usize, text: &str) -> bool {
    text.chars()
        .enumerate()
        .all(|(k, c)| chars.get(index + k) == Some(&c))
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `source` with comments, string and char literals blanked (their
/// characters replaced by spaces, newlines kept), so that only code is
/// scanned and braces in literals do not count.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        // Comments: `//` to the end of the line, `/* */` nested.
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut nesting = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    nesting += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    nesting -= 1;
                    out.push_str("  ");
                    i += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            continue;
        }
        // Raw strings: r"…", r#"…"#, br#"…"# (not an identifier ending in r).
        let prefix_ok = i == 0 || !is_ident(chars[i - 1]);
        let raw_at = if c == 'r' && prefix_ok {
            Some(i + 1)
        } else if c == 'b' && next == Some('r') && prefix_ok {
            Some(i + 2)
        } else {
            None
        };
        if let Some(at) = raw_at {
            let mut hashes = 0;
            while chars.get(at + hashes) == Some(&'#') {
                hashes += 1;
            }
            if chars.get(at + hashes) == Some(&'"') {
                for _ in i..at + hashes + 1 {
                    out.push(' ');
                }
                i = at + hashes + 1;
                while i < chars.len() {
                    if chars[i] == '"' && (0..hashes).all(|h| chars.get(i + 1 + h) == Some(&'#')) {
                        for _ in 0..hashes + 1 {
                            out.push(' ');
                        }
                        i += hashes + 1;
                        break;
                    }
                    out.push(blank(chars[i]));
                    i += 1;
                }
                continue;
            }
        }
        if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
            continue;
        }
        // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
        if c == '\'' {
            let literal_end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = literal_end {
                for _ in i..=end {
                    out.push(' ');
                }
                i = end + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The scanner itself: what counts, and what is skipped.
#[test]
fn the_scan_sees_calls_and_skips_test_code_comments_and_strings() {
    let source = r##"
//! tokio::spawn(in_a_doc());
use std::thread;

fn serve() {
    let text = "tokio::spawn(in_a_string)";
    let raw = r#"thread::spawn("#;
    let brace = '{';
    // tokio::spawn(in_a_comment());
    /* std::thread::spawn(in_a_block_comment) */
    tokio::spawn(async move {});
    let handle = std::thread::Builder::new()
        .name("x".into())
        .spawn(move || {})
        .unwrap();
    self.node.spawn(task::<'static>());
}

pub fn spawn_owned() {}

#[cfg(test)]
mod tests {
    fn helper() {
        tokio::spawn(async {});
    }
}

#[cfg(test)]
mod more;

impl Thing {
    fn after(&self) -> impl Fn() {
        tokio::task::spawn_blocking(|| {});
        || {}
    }
}
"##;
    let (sites, test_modules) = scan_source("src/example.rs", source);
    let calls: Vec<(String, String)> = sites
        .iter()
        .map(|s| (s.function.clone(), s.call.clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("serve".to_string(), "tokio::spawn".to_string()),
            ("serve".to_string(), ".spawn".to_string()),
            ("serve".to_string(), "node.spawn".to_string()),
            (
                "after".to_string(),
                "tokio::task::spawn_blocking".to_string()
            ),
        ]
    );
    assert_eq!(test_modules, vec![PathBuf::from("src/example/more.rs")]);
}

//! The document as an ordered tree ([`Node`]) and its two texts: a
//! `serde_json::Value` for programs, and block YAML, with the keys in the
//! order they were built and comments before the entries that have one,
//! for the committed `asyncapi.yaml`.
//!
//! Written here rather than with a YAML library: the document is small and
//! regular, and a reader expects its order (info, servers, channels,
//! operations, components; `address` before `messages`) and its comments,
//! which a `serde_json::Value` (sorted keys) cannot keep. Strings are
//! plain where no YAML reader could take them for anything else,
//! double-quoted JSON strings otherwise, and folded (`>-`) when long.

use serde_json::{Number, Value};

/// One value of the document.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Number(Number),
    Str(String),
    List(Vec<Node>),
    Map(Vec<Entry>),
}

/// One key of a [`Node::Map`], with the comment written above it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub comment: Option<&'static str>,
    pub value: Node,
}

/// A map of `entries`, in their order.
pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Node)>) -> Node {
    Node::Map(
        entries
            .into_iter()
            .map(|(key, value)| Entry {
                key: key.into(),
                comment: None,
                value,
            })
            .collect(),
    )
}

/// A list of `items`.
pub fn list(items: impl IntoIterator<Item = Node>) -> Node {
    Node::List(items.into_iter().collect())
}

/// `{"$ref": target}`.
pub fn reference(target: impl Into<String>) -> Node {
    map([("$ref", Node::Str(target.into()))])
}

impl From<&str> for Node {
    fn from(s: &str) -> Node {
        Node::Str(s.to_string())
    }
}

impl From<String> for Node {
    fn from(s: String) -> Node {
        Node::Str(s)
    }
}

impl From<u16> for Node {
    fn from(n: u16) -> Node {
        Node::Number(n.into())
    }
}

impl From<&Value> for Node {
    /// A JSON value as it is (an object's keys in its own order).
    fn from(value: &Value) -> Node {
        match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Number(n.clone()),
            Value::String(s) => Node::Str(s.clone()),
            Value::Array(items) => list(items.iter().map(Node::from)),
            Value::Object(object) => map(object.iter().map(|(k, v)| (k.clone(), Node::from(v)))),
        }
    }
}

impl Node {
    /// The entry `key` of a map (none for anything else).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match self {
            Node::Map(entries) => entries
                .iter_mut()
                .find(|e| e.key == key)
                .map(|e| &mut e.value),
            _ => None,
        }
    }

    /// Adds `key` at the end of a map (nothing for anything else).
    pub fn push(&mut self, key: impl Into<String>, value: Node) {
        if let Node::Map(entries) = self {
            entries.push(Entry {
                key: key.into(),
                comment: None,
                value,
            });
        }
    }

    /// Sets the comment written above the map's entry `key`.
    pub fn comment(mut self, key: &str, comment: &'static str) -> Node {
        if let Node::Map(entries) = &mut self {
            if let Some(entry) = entries.iter_mut().find(|e| e.key == key) {
                entry.comment = Some(comment);
            }
        }
        self
    }

    /// The JSON value (comments dropped; keys sorted, as `serde_json` keeps them).
    pub fn to_json(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::Str(s) => Value::String(s.clone()),
            Node::List(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Node::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// The block YAML text of a map, after `header` (comment lines).
    pub fn to_yaml(&self, header: &str) -> String {
        let mut out = String::new();
        for line in header.lines() {
            push_comment_line(&mut out, 0, line);
        }
        match self {
            Node::Map(entries) if !entries.is_empty() => write_map(&mut out, entries, 0, false),
            other => {
                out.push_str(&scalar(other, 0, 0).unwrap_or_else(|| inline(other)));
                out.push('\n');
            }
        }
        out
    }
}

/// The width folded strings and comments are wrapped to.
const WIDTH: usize = 84;

/// A string longer than this (with its key) is written folded.
const LONGEST_LINE: usize = 100;

fn push_comment_line(out: &mut String, indent: usize, line: &str) {
    out.push_str(&" ".repeat(indent));
    out.push('#');
    if !line.is_empty() {
        out.push(' ');
        out.push_str(line);
    }
    out.push('\n');
}

fn write_comment(out: &mut String, indent: usize, comment: &str) {
    for line in wrap(comment, WIDTH.saturating_sub(indent + 2).max(40)) {
        push_comment_line(out, indent, &line);
    }
}

/// The entries of a map at `indent`; `first_inline`: the first one
/// follows a list's `- ` already written.
fn write_map(out: &mut String, entries: &[Entry], indent: usize, first_inline: bool) {
    let pad = " ".repeat(indent);
    for (i, entry) in entries.iter().enumerate() {
        // The first entry of a list item follows its `- ` (and its comment
        // went above that).
        if !(first_inline && i == 0) {
            if let Some(comment) = entry.comment {
                write_comment(out, indent, comment);
            }
            out.push_str(&pad);
        }
        let key = key(&entry.key);
        out.push_str(&key);
        out.push(':');
        write_value(out, &entry.value, indent, indent + key.len() + 2);
    }
}

/// A value after `key:` (`column`: where it would start on that line).
fn write_value(out: &mut String, value: &Node, indent: usize, column: usize) {
    match value {
        Node::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            write_map(out, entries, indent + 2, false);
        }
        Node::List(items) if !items.is_empty() => {
            out.push('\n');
            write_list(out, items, indent + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, indent + 2, column).unwrap_or_else(|| inline(other)));
            out.push('\n');
        }
    }
}

fn write_list(out: &mut String, items: &[Node], indent: usize) {
    let pad = " ".repeat(indent);
    for item in items {
        if let Node::Map(entries) = item {
            if let Some(comment) = entries.first().and_then(|e| e.comment) {
                write_comment(out, indent, comment);
            }
        }
        out.push_str(&pad);
        out.push('-');
        match item {
            Node::Map(entries) if !entries.is_empty() => {
                out.push(' ');
                write_map(out, entries, indent + 2, true);
            }
            Node::List(inner) if !inner.is_empty() => {
                out.push('\n');
                write_list(out, inner, indent + 2);
            }
            other => {
                out.push(' ');
                out.push_str(
                    &scalar(other, indent + 2, indent + 2).unwrap_or_else(|| inline(other)),
                );
                out.push('\n');
            }
        }
    }
}

/// An empty map or list, as flow YAML.
fn inline(node: &Node) -> String {
    match node {
        Node::Map(_) => "{}".to_string(),
        _ => "[]".to_string(),
    }
}

/// A scalar's text: `indent` is where a folded string's lines go, `column`
/// where the value starts on its key's line. `None` for a map or list.
fn scalar(node: &Node, indent: usize, column: usize) -> Option<String> {
    Some(match node {
        Node::Null => "null".to_string(),
        Node::Bool(b) => b.to_string(),
        Node::Number(n) => n.to_string(),
        Node::Str(s) if column + s.len() > LONGEST_LINE && foldable(s) => {
            let mut text = String::from(">-");
            for line in wrap(s, WIDTH.saturating_sub(indent).max(40)) {
                text.push('\n');
                text.push_str(&" ".repeat(indent));
                text.push_str(&line);
            }
            text
        }
        Node::Str(s) if is_plain(s) => s.clone(),
        Node::Str(s) => quoted(s),
        Node::List(_) | Node::Map(_) => return None,
    })
}

fn key(k: &str) -> String {
    if is_plain(k) {
        k.to_string()
    } else {
        quoted(k)
    }
}

/// A double-quoted YAML string: the JSON string, whose escapes YAML's
/// double quotes share.
fn quoted(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// Whether `s` reads back as this same string when written plain: it
/// starts with a letter, `_`, `/`, `$` or `./` (no YAML indicator), has no
/// `:`, `#`, control character or double space (so no `: ` or ` #`), and
/// is not a word or number YAML would take for another type.
fn is_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let inner = |c: char| !c.is_control() && !matches!(c, ':' | '#');
    let starts_well = first.is_ascii_alphabetic()
        || matches!(first, '_' | '/' | '$')
        || (first == '.' && s[1..].starts_with(['/', '.']))
        || (first.is_ascii_digit() && is_version(s));
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
    );
    starts_well && !reserved && s.chars().all(inner) && !s.ends_with(' ') && !s.contains("  ")
}

/// `1.2.3`: a version, which no YAML reader takes for a number.
fn is_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a folded block gives `s` back: one line of printable text,
/// words apart by single spaces.
fn foldable(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !s.contains("  ")
        && s.chars().all(|c| !c.is_control())
}

/// `s` in lines of at most `width` characters, broken at spaces (a longer
/// word stays whole); a folded block joins them back with spaces.
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in s.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_only_where_nothing_else_is_read() {
        for s in [
            "3.0.0",
            "chat.channel.{channel_id}.x",
            "./schemas/a.json",
            "$ref",
            "MIT",
            "The gateway's end, (really) [x] \"y\" `z`",
        ] {
            assert!(is_plain(s), "{s}");
        }
        for s in [
            "",
            "#/servers/ws",
            "1.0",
            "true",
            "No",
            "a: b",
            "{x}",
            "a #b",
            "1000",
            ".inf",
            "x ",
            "-x",
            "'a'",
            "a\nb",
        ] {
            assert!(!is_plain(s), "{s:?}");
        }
    }

    #[test]
    fn wrapping_keeps_every_word_once() {
        let s = "one two three four five six seven eight nine ten eleven twelve";
        let lines = wrap(s, 14);
        assert!(lines.iter().all(|l| l.len() <= 14), "{lines:?}");
        assert_eq!(lines.join(" "), s);
        assert_eq!(
            wrap("averyveryverylongword x", 5),
            ["averyveryverylongword", "x"]
        );
    }

    #[test]
    fn the_yaml_of_a_tree() {
        let tree = map([
            ("a", Node::from("b")),
            (
                "list",
                list([map([("k", Node::from(1u16)), ("v", Node::from("#x"))])]),
            ),
            ("empty", map(Vec::<(String, Node)>::new())),
        ])
        .comment("list", "a comment");
        assert_eq!(
            tree.to_yaml("head"),
            "# head\na: b\n# a comment\nlist:\n  - k: 1\n    v: \"#x\"\nempty: {}\n"
        );
    }
}

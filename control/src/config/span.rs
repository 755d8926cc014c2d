//! Positions in the config text: byte offset → line:column, field path →
//! span, and span → field path.
//!
//! The loader keeps the serde model free of span wrappers; when it has
//! something to report it re-parses the text into `toml`'s spanned document
//! tree ([`toml::de::DeTable`]) and looks positions up there. Config files are
//! small and errors are rare, so the second parse costs nothing that matters.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// Line and column of a byte offset; offsets past the end clamp to the end,
/// offsets inside a character count as that character.
pub(super) fn location(text: &str, offset: usize) -> Location {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    Location {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// The parsed document tree, if the text is valid TOML.
pub(super) struct Document<'a> {
    root: Option<Spanned<DeTable<'a>>>,
}

enum Seg<'p> {
    Key(&'p str),
    Index(usize),
}

/// Splits `listeners[0].tls.cert` into segments. Keys of our schema never
/// contain `.` or `[`.
fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            match stripped[..end].parse() {
                Ok(i) => out.push(Seg::Index(i)),
                Err(_) => break,
            }
            rest = &stripped[end + 1..];
        }
    }
    out
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

impl<'a> Document<'a> {
    pub(super) fn parse(text: &'a str) -> Self {
        Document {
            root: DeTable::parse(text).ok(),
        }
    }

    /// Span of the value at `path`, or of its deepest ancestor present in
    /// the text (so a missing field points at its table).
    pub(super) fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut table: Option<&DeTable<'a>> = Some(root.get_ref());
        let mut array: Option<&[Spanned<DeValue<'a>>]> = None;
        let mut best = None;
        for seg in segments(path) {
            let next = match (seg, table, array) {
                (Seg::Key(k), Some(t), _) => {
                    t.iter().find(|(key, _)| key.get_ref() == k).map(|(_, v)| v)
                }
                (Seg::Index(i), _, Some(a)) => a.get(i),
                _ => None,
            };
            let Some(v) = next else { break };
            // Tables opened by a header have a span covering only the header
            // or nothing useful when implicit; an empty span is no help.
            if !v.span().is_empty() {
                best = Some(v.span());
            }
            table = v.get_ref().as_table();
            array = v.get_ref().as_array().map(|a| &a[..]);
        }
        best
    }

    /// The field path at a byte offset: the deepest value containing it, or
    /// the table whose key contains it. `None` when nothing does (or the text
    /// is not valid TOML).
    pub(super) fn path_at(&self, offset: usize) -> Option<String> {
        let root = self.root.as_ref()?;
        let mut best: Best = None;
        walk_table(root.get_ref(), &mut String::new(), 0, offset, &mut best);
        best.map(|(_, _, p)| p).filter(|p| !p.is_empty())
    }
}

/// Best match so far: `(is_key, depth, path)`. A key hit beats any value
/// hit (the element of an array of tables spans its own `[[header]]`, which
/// holds the offending key); otherwise deeper wins.
type Best = Option<(bool, usize, String)>;

fn consider(best: &mut Best, is_key: bool, depth: usize, path: &str) {
    if best
        .as_ref()
        .is_none_or(|(k, d, _)| (is_key, depth) > (*k, *d))
    {
        *best = Some((is_key, depth, path.to_owned()));
    }
}

fn walk_table(
    table: &DeTable<'_>,
    path: &mut String,
    depth: usize,
    offset: usize,
    best: &mut Best,
) {
    for (key, value) in table.iter() {
        if contains(&key.span(), offset) {
            // An unknown or misplaced key: blame the table holding it.
            consider(best, true, depth, path);
        }
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key.get_ref());
        walk_value(value, path, depth + 1, offset, best);
        path.truncate(len);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &mut String,
    depth: usize,
    offset: usize,
    best: &mut Best,
) {
    if contains(&value.span(), offset) {
        consider(best, false, depth, path);
    }
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, path, depth, offset, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk_value(item, path, depth + 1, offset, best);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

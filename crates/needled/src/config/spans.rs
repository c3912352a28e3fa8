//! Where keys are in the document, for errors found after deserializing: the line of every
//! value, from the spans `toml_edit` keeps when it parses the text.

use toml_edit::{ImDocument, Item, Table, Value};

/// The line of every leaf value of a TOML document, by dotted key path such as
/// `service.tokens[1].token`.
///
/// A TOML value always starts on its key's line, so a leaf's line is its key's line. Tables
/// and arrays have no line of their own here (tables made by `[a.b]` headers or dotted keys
/// have none in the document either): they are found through the values under them.
#[derive(Debug, Default)]
pub(super) struct KeyLines {
    leaves: Vec<(String, usize)>,
}

/// Where [`KeyLines::locate`] found a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Located {
    /// 1-based line of the key, of the first key under it, or of the nearest enclosing
    /// table's first key; `None` if the document has none of them.
    pub line: Option<usize>,
    /// Whether the key itself (or a key under it) is in the document.
    pub set: bool,
}

impl KeyLines {
    /// Indexes `text`; a document that does not parse gives an empty index.
    pub(super) fn of(text: &str) -> KeyLines {
        let mut leaves = Vec::new();
        if let Ok(document) = ImDocument::parse(text) {
            walk_table(text, "", document.as_table(), &mut leaves);
        }
        KeyLines { leaves }
    }

    /// The line of the value at `key`, or of the first value under it (a table), or of the
    /// nearest enclosing table's first value.
    pub(super) fn locate(&self, key: &str) -> Located {
        let mut path = key;
        let mut set = true;
        loop {
            if let Some((_, line)) = self.leaves.iter().find(|(p, _)| p == path) {
                return Located {
                    line: Some(*line),
                    set,
                };
            }
            let first_under = self
                .leaves
                .iter()
                .filter(|(p, _)| {
                    p.strip_prefix(path)
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
                })
                .map(|(_, line)| *line)
                .min();
            if first_under.is_some() {
                return Located {
                    line: first_under,
                    set,
                };
            }
            set = false;
            match path.rfind(['.', '[']) {
                Some(cut) if cut > 0 => path = &path[..cut],
                _ => return Located { line: None, set },
            }
        }
    }
}

/// 1-based line number of byte offset `at` in `text`.
pub(super) fn line_of(text: &str, at: usize) -> usize {
    let end = at.min(text.len());
    text.as_bytes()
        .get(..end)
        .map_or(0, |head| head.iter().filter(|b| **b == b'\n').count())
        + 1
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk_table(text: &str, path: &str, table: &Table, out: &mut Vec<(String, usize)>) {
    for (key, item) in table.iter() {
        let path = child(path, key);
        match item {
            Item::None => {}
            Item::Value(value) => walk_value(text, path, value, out),
            Item::Table(table) => walk_table(text, &path, table, out),
            Item::ArrayOfTables(tables) => {
                for (i, table) in tables.iter().enumerate() {
                    walk_table(text, &format!("{path}[{i}]"), table, out);
                }
            }
        }
    }
}

fn walk_value(text: &str, path: String, value: &Value, out: &mut Vec<(String, usize)>) {
    match value {
        Value::Array(array) => {
            for (i, value) in array.iter().enumerate() {
                walk_value(text, format!("{path}[{i}]"), value, out);
            }
        }
        Value::InlineTable(table) => {
            for (key, value) in table.iter() {
                walk_value(text, child(&path, key), value, out);
            }
        }
        leaf => {
            if let Some(span) = leaf.span() {
                out.push((path, line_of(text, span.start)));
            }
        }
    }
}

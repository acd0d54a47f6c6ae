//! Finds the lines of a job file's items by scanning its text. serde_yaml reports a
//! line for the errors it raises itself, but keeps no positions for values that
//! parsed, so the semantic checks (unknown dependency, bad schedule…) locate the item
//! they are about here. This understands block-style YAML, the style job files are
//! written in; for anything else (flow style `[{...}]`) it falls back to the line of
//! the enclosing key.
//!
//! Each top-level key is looked for once and remembered: the checks ask for the same
//! few keys (`tasks`, `depends_on`…) once per task, and scanning the file each time
//! made loading quadratic in its size.

use std::cell::RefCell;
use std::collections::HashMap;

/// The lines of one file.
pub(super) struct Outline<'a> {
    lines: Vec<&'a str>,
    /// The index of each top-level key asked for so far.
    keys: RefCell<HashMap<String, Option<usize>>>,
}

/// One item of a block sequence: lines `start..end` (0-based), keys at `key_column`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Item {
    start: usize,
    end: usize,
    key_column: usize,
}

impl Item {
    /// The 1-based line where the item starts (its `- `).
    pub(super) fn line(&self) -> usize {
        self.start + 1
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Whether `text` starts with the mapping key `key` (`key:` followed by a space or the
/// end of the line; quotes around the key allowed).
fn is_key(text: &str, key: &str) -> bool {
    let unquoted = ["\"", "'"]
        .iter()
        .find_map(|q| {
            text.strip_prefix(q)
                .and_then(|t| t.strip_prefix(key))
                .and_then(|t| t.strip_prefix(q))
        })
        .or_else(|| text.strip_prefix(key));
    match unquoted.map(str::trim_start) {
        Some(rest) => rest == ":" || rest.starts_with(": ") || rest.starts_with(":\t"),
        None => false,
    }
}

/// A line at column 0 that starts a new top-level entry (not a comment, not a sequence
/// item of a top-level key, not blank).
fn is_top_level(line: &str) -> bool {
    match line.chars().next() {
        None | Some(' ' | '\t' | '#') => false,
        Some('-') => line.starts_with("---"),
        Some(_) => true,
    }
}

fn is_sequence_item(trimmed: &str) -> bool {
    trimmed == "-" || trimmed.starts_with("- ")
}

impl<'a> Outline<'a> {
    pub(super) fn new(text: &'a str) -> Outline<'a> {
        Outline {
            lines: text.lines().collect(),
            keys: RefCell::default(),
        }
    }

    /// The 1-based line of the top-level key `key:`.
    pub(super) fn key(&self, key: &str) -> Option<usize> {
        self.key_index(key).map(|i| i + 1)
    }

    fn key_index(&self, key: &str) -> Option<usize> {
        if let Some(&found) = self.keys.borrow().get(key) {
            return found;
        }
        let found = self
            .lines
            .iter()
            .position(|l| is_top_level(l) && is_key(l, key));
        self.keys.borrow_mut().insert(key.to_string(), found);
        found
    }

    /// Lines `start..end` of the block under the top-level `key:` (after the key line).
    fn block(&self, key: &str) -> Option<(usize, usize)> {
        let start = self.key_index(key)? + 1;
        let end = (start..self.lines.len())
            .find(|&i| is_top_level(self.lines[i]))
            .unwrap_or(self.lines.len());
        Some((start, end))
    }

    /// The 1-based line of `key:` nested anywhere under the top-level key `top:`, e.g.
    /// `timezone:` under `schedule:`.
    pub(super) fn nested_key(&self, top: &str, key: &str) -> Option<usize> {
        let (start, end) = self.block(top)?;
        (start..end)
            .find(|&i| {
                let t = self.lines[i].trim_start();
                is_key(t, key) || t.strip_prefix("- ").is_some_and(|t| is_key(t, key))
            })
            .map(|i| i + 1)
    }

    /// The items of the block sequence under the top-level `key:`, in order.
    pub(super) fn items(&self, key: &str) -> Vec<Item> {
        let Some((start, end)) = self.block(key) else {
            return Vec::new();
        };
        let Some(first) = (start..end).find(|&i| is_sequence_item(self.lines[i].trim_start()))
        else {
            return Vec::new();
        };
        let dash_column = indent(self.lines[first]);
        let starts: Vec<usize> = (first..end)
            .filter(|&i| {
                let line = self.lines[i];
                indent(line) == dash_column && is_sequence_item(line.trim_start())
            })
            .collect();
        starts
            .iter()
            .enumerate()
            .map(|(n, &s)| {
                let item_end = starts.get(n + 1).copied().unwrap_or(end);
                Item {
                    start: s,
                    end: item_end,
                    key_column: self.key_column(s, item_end, dash_column),
                }
            })
            .collect()
    }

    /// Where the keys of an item start: after `- ` on the dash line, or on the next
    /// non-blank line when the dash stands alone.
    fn key_column(&self, start: usize, end: usize, dash_column: usize) -> usize {
        let after_dash = &self.lines[start][dash_column + 1..];
        if !after_dash.trim().is_empty() {
            return dash_column + 1 + indent(after_dash);
        }
        (start + 1..end)
            .map(|i| self.lines[i])
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map_or(dash_column + 2, indent)
    }

    /// The 1-based line of the item's own key `key:` (not one nested deeper).
    pub(super) fn item_key(&self, item: Item, key: &str) -> Option<usize> {
        (item.start..item.end)
            .find(|&i| {
                let line = self.lines[i];
                let at_key_column = if i == item.start {
                    // The dash line: its first key follows the dash.
                    line.get(item.key_column..)
                } else if indent(line) == item.key_column {
                    Some(line.trim_start())
                } else {
                    None
                };
                at_key_column.is_some_and(|t| is_key(t, key))
            })
            .map(|i| i + 1)
    }

    /// The scalar value of the item's own `key:` when written on the same line, quotes
    /// removed (used to match items with the ids serde read).
    pub(super) fn item_value(&self, item: Item, key: &str) -> Option<&'a str> {
        let line = self.lines[self.item_key(item, key)? - 1];
        let (_, value) = line[item.key_column..].split_once(':')?;
        let value = value.split(" #").next().unwrap_or_default().trim();
        Some(value.trim_matches(|c| c == '"' || c == '\''))
    }

    /// The 1-based first line of the item containing `needle` (e.g. a placeholder).
    pub(super) fn item_find(&self, item: Item, needle: &str) -> Option<usize> {
        (item.start..item.end)
            .find(|&i| self.lines[i].contains(needle))
            .map(|i| i + 1)
    }

    /// The value of the top-level `key:` when written on its line (e.g. `id: x`).
    pub(super) fn value(&self, key: &str) -> Option<&'a str> {
        let line = self.lines[self.key_index(key)?];
        let (_, value) = line.split_once(':')?;
        let value = value.split(" #").next().unwrap_or_default().trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
id: demo   # the id
schedule:
  cron: \"0 0 2 * * *\"
  timezone: Mars/Olympus
depends_on:
  - upstream
  - job: other
    condition: last_complete
tasks:
  - id: extract
    command: sh
    args: [\"-c\", \"echo ${config.x}\"]
    depends_on: [nothing]
    environment:
      depends_on: nested
  -
    id: 'load'
    script: |
      - id: fake
      depends_on: fake
    depends_on: [extract]
description: done
";

    #[test]
    fn finds_top_level_and_nested_keys() {
        let o = Outline::new(TEXT);
        let cases = [
            (o.key("id"), Some(2)),
            (o.key("schedule"), Some(3)),
            (o.key("tasks"), Some(10)),
            (o.key("description"), Some(23)),
            (o.key("cron"), None),
            (o.nested_key("schedule", "timezone"), Some(5)),
            (o.nested_key("depends_on", "condition"), Some(9)),
            (o.nested_key("schedule", "nothing"), None),
        ];
        for (n, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, want, "case {n}");
        }
        assert_eq!(o.value("id"), Some("demo"));
        assert_eq!(o.value("schedule"), None);
    }

    #[test]
    fn finds_items_and_their_keys() {
        let o = Outline::new(TEXT);
        let deps = o.items("depends_on");
        assert_eq!(deps.iter().map(|i| i.line()).collect::<Vec<_>>(), [7, 8]);
        let tasks = o.items("tasks");
        assert_eq!(tasks.iter().map(|i| i.line()).collect::<Vec<_>>(), [11, 17]);
        let cases = [
            (o.item_key(tasks[0], "id"), Some(11)),
            (o.item_key(tasks[0], "depends_on"), Some(14)),
            (o.item_key(tasks[0], "args"), Some(13)),
            (o.item_key(tasks[1], "id"), Some(18)),
            // Not the `depends_on` inside the block scalar.
            (o.item_key(tasks[1], "depends_on"), Some(22)),
            (o.item_key(tasks[1], "command"), None),
            (o.item_find(tasks[0], "${config.x}"), Some(13)),
        ];
        for (n, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, want, "case {n}");
        }
        assert_eq!(o.item_value(tasks[0], "id"), Some("extract"));
        assert_eq!(o.item_value(tasks[1], "id"), Some("load"));
    }

    #[test]
    fn flow_style_has_no_items() {
        let o = Outline::new("id: x\ntasks: [{id: a, command: echo}]\n");
        assert!(o.items("tasks").is_empty());
        assert_eq!(o.key("tasks"), Some(2));
    }
}

//! Reading past values of the wrong type, so that one file's errors come all at once.
//!
//! serde stops at the first value of the wrong type (`timeout_secs: soon`): it has
//! nothing to carry on with. When that value is a one-line `key: value` entry of a
//! block mapping, the entry is blanked out of the text (the line left empty, so every
//! other line keeps its number) and the file read again, as if the key were absent.
//! The error is kept; the next one is found on the next read; the file still fails to
//! load. Anything else (a missing field, bad YAML, a value spread over lines, an entry
//! sharing its line with a `- `) stops the reading as before.
//!
//! A missing-field error that only blanking caused (the bad value was the required
//! field's) is dropped: the type error already says what is wrong there.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::unknown_fields;
use super::ConfigError;

/// Most values blanked in one file before giving up.
const MAX_BLANKED: usize = 32;

/// Deserializes `text` as `T` like `unknown_fields::parse`, but reads past values of
/// the wrong type; every error found, each once, in the order found.
pub(super) fn parse<T: DeserializeOwned>(text: &str, file: &Path) -> (Option<T>, Vec<ConfigError>) {
    let mut text = Cow::Borrowed(text);
    let mut errors: Vec<ConfigError> = Vec::new();
    // What `errors` holds, to find a repeat in one lookup: a file may have thousands.
    let mut seen: HashSet<(Option<usize>, String)> = HashSet::new();
    let mut blanked: Vec<String> = Vec::new();
    loop {
        let (value, found) = unknown_fields::parse::<T>(&text, file);
        // Each read reports again the unknown fields seen before the stop.
        for error in found {
            if seen.insert((error.line, error.message.clone())) {
                errors.push(error);
            }
        }
        if value.is_some() {
            return (value, errors);
        }
        let last = errors.last().expect("a failed parse reports why");
        if blanked.len() < MAX_BLANKED {
            if let Some((patched, field)) = blank_bad_value(&text, last) {
                text = Cow::Owned(patched);
                blanked.push(field);
                continue;
            }
        }
        if let Some(field) = missing_field(&last.message) {
            if blanked.iter().any(|b| b == field) {
                errors.pop();
            }
        }
        return (None, errors);
    }
}

/// The text without the entry `error` is about, and the entry's key, when the error is
/// a wrong type or value on a one-line `key: value` entry of its own line.
fn blank_bad_value(text: &str, error: &ConfigError) -> Option<(String, String)> {
    let (path, _) = error
        .message
        .split_once(": invalid type: ")
        .or_else(|| error.message.split_once(": invalid value: "))?;
    // `tasks[0].timeout_secs` → `timeout_secs`; an element of a sequence (`args[1]`)
    // is not an entry that can go.
    let key = path.rsplit('.').next()?;
    if key.is_empty() || key.ends_with(']') {
        return None;
    }
    let index = error.line?.checked_sub(1)?;
    let line = text.lines().nth(index)?;
    let entry = line.trim_start_matches(' ');
    let value = entry.strip_prefix(key)?.strip_prefix(':')?;
    let value = value.trim();
    if !one_line_scalar(value) {
        return None;
    }
    let mut patched = String::with_capacity(text.len());
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i == index {
            // Keep the line break, so every later line keeps its number.
            patched.push_str(&l[l.trim_end_matches(['\n', '\r']).len()..]);
        } else {
            patched.push_str(l);
        }
    }
    Some((patched, key.to_string()))
}

/// Whether `value` (trimmed, after `key:`) is a whole scalar on its line: not empty
/// (the value would be on the next lines), not a flow collection, block scalar, anchor
/// or alias, and its quotes closed.
fn one_line_scalar(value: &str) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    match first {
        '[' | '{' | '|' | '>' | '&' | '*' | '#' | '!' => false,
        '"' => value.len() > 1 && value[1..].contains('"'),
        '\'' => value.len() > 1 && value[1..].contains('\''),
        _ => true,
    }
}

/// The field of a "missing field `x`" error.
fn missing_field(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("missing field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: usize, message: &str) -> ConfigError {
        ConfigError::new(Path::new("j.yaml"), Some(line), message)
    }

    #[test]
    fn blanks_one_line_entries_only() {
        let text = "id: x\ntasks:\n  - id: a\n    timeout_secs: soon  # oops\n    command: echo\n";
        let (patched, key) = blank_bad_value(
            text,
            &error(
                4,
                "tasks[0].timeout_secs: invalid type: string \"soon\", expected u64",
            ),
        )
        .expect("blanked");
        assert_eq!(key, "timeout_secs");
        assert_eq!(patched, "id: x\ntasks:\n  - id: a\n\n    command: echo\n");

        // A value on the next lines, a flow value, an entry behind `- `, an element of
        // a sequence, an error of another kind: left alone.
        for (text, line, message) in [
            (
                "id: x\nconfig:\n  a: 1\n",
                2,
                "config: invalid type: map, expected u32",
            ),
            (
                "id: x\nargs: [1, {a: 2}]\n",
                2,
                "args: invalid type: sequence, expected u32",
            ),
            (
                "tasks:\n  - timeout_secs: soon\n",
                2,
                "tasks[0].timeout_secs: invalid type: x",
            ),
            (
                "args:\n  - {a: 1}\n",
                2,
                "args[0]: invalid type: map, expected a string",
            ),
            (
                "tasks:\n  - command: echo\n",
                2,
                "tasks[0]: missing field `id`",
            ),
        ] {
            assert_eq!(blank_bad_value(text, &error(line, message)), None, "{text}");
        }
    }

    #[test]
    fn scalars() {
        for yes in ["soon", "\"a b\"", "'x'", "12 # note", "-1"] {
            assert!(one_line_scalar(yes), "{yes}");
        }
        for no in [
            "",
            "[1]",
            "{a: 1}",
            "|",
            ">-",
            "\"open",
            "'open",
            "*alias",
            "&anchor x",
        ] {
            assert!(!one_line_scalar(no), "{no}");
        }
    }

    #[test]
    fn missing_fields() {
        assert_eq!(missing_field("tasks[0]: missing field `id`"), Some("id"));
        assert_eq!(missing_field("invalid type"), None);
    }
}

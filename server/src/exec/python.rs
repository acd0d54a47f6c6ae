//! Where each placeholder of an inline Python script stands (code, a comment, or inside
//! a string literal of some quote and prefix), and the Python literal a value becomes.
//! One pass with a stack, for f-strings whose `{...}` fields hold code and strings.
//!
//! A placeholder inside an f-string's `{...}` field, right after a backslash, or where
//! closing the string would merge with a quote written before it is `Unsupported`.

use super::script::{Context, PyString};

#[derive(Debug, Clone)]
enum Mode {
    Code,
    Comment,
    Str(PyString),
    /// The `{...}` field of an f-string: code, with open brackets counted.
    Field(u32),
}

/// The context of each hole (ascending byte offsets into `script`).
pub(super) fn contexts(script: &str, holes: &[usize]) -> Vec<Context> {
    let s = script.as_bytes();
    // A value between two quotes keeps them apart: they are no triple quote.
    let split = |at: usize| {
        holes.binary_search(&(at + 1)).is_ok() || holes.binary_search(&(at + 2)).is_ok()
    };
    let mut out = Vec::with_capacity(holes.len());
    let mut next = 0;
    let mut stack = vec![Mode::Code];
    // Open f-string fields on the stack: a placeholder's context costs O(1).
    let mut fields = 0usize;
    let mut uncertain: Option<&'static str> = None;
    let mut i = 0;
    while i <= s.len() {
        while next < holes.len() && holes[next] <= i {
            out.push(here(&stack, fields, uncertain, s, holes[next]));
            next += 1;
        }
        if i == s.len() {
            break;
        }
        let c = s[i];
        let mode = stack.last().cloned().unwrap_or(Mode::Code);
        i = match mode {
            Mode::Comment => {
                if c == b'\n' {
                    stack.pop();
                }
                i + 1
            }
            Mode::Code | Mode::Field(_) => {
                let in_field = matches!(mode, Mode::Field(_));
                match c {
                    b'#' => {
                        stack.push(Mode::Comment);
                        i + 1
                    }
                    b'\\' => {
                        mark_after_backslash(&mut out, &mut next, holes, i + 1);
                        i + 2
                    }
                    b'\'' | b'"' => {
                        let (string, len) = open_string(s, i, split(i));
                        stack.push(Mode::Str(string));
                        i + len
                    }
                    b'(' | b'[' | b'{' if in_field => {
                        if let Some(Mode::Field(d)) = stack.last_mut() {
                            *d += 1;
                        }
                        i + 1
                    }
                    b')' | b']' | b'}' if in_field => {
                        match stack.last_mut() {
                            Some(Mode::Field(0)) => {
                                if c == b'}' {
                                    stack.pop();
                                    fields -= 1;
                                } else {
                                    uncertain.get_or_insert(
                                        "after an f-string field it could not follow",
                                    );
                                }
                            }
                            Some(Mode::Field(d)) => *d -= 1,
                            _ => {}
                        }
                        i + 1
                    }
                    _ => i + 1,
                }
            }
            Mode::Str(string) => {
                let q = string.quote as u8;
                if c == b'\\' {
                    mark_after_backslash(&mut out, &mut next, holes, i + 1);
                    i + 2
                } else if c == q
                    && (!string.triple || (s[i..].starts_with(&[q, q, q]) && !split(i)))
                {
                    stack.pop();
                    if string.triple {
                        i + 3
                    } else {
                        i + 1
                    }
                } else if c == b'\n' && !string.triple {
                    // A syntax error in Python: stop trusting what follows.
                    uncertain.get_or_insert("after an unterminated string");
                    stack.pop();
                    i + 1
                } else if string.formatted && c == b'{' {
                    if s.get(i + 1) == Some(&b'{') {
                        i + 2
                    } else {
                        stack.push(Mode::Field(0));
                        fields += 1;
                        i + 1
                    }
                } else {
                    i + 1
                }
            }
        };
    }
    while next < holes.len() {
        out.push(here(&stack, fields, uncertain, s, holes[next]));
        next += 1;
    }
    out
}

fn mark_after_backslash(out: &mut Vec<Context>, next: &mut usize, holes: &[usize], at: usize) {
    while *next < holes.len() && holes[*next] == at {
        out.push(Context::Unsupported("right after a backslash"));
        *next += 1;
    }
}

fn here(
    stack: &[Mode],
    fields: usize,
    uncertain: Option<&'static str>,
    s: &[u8],
    at: usize,
) -> Context {
    if let Some(why) = uncertain {
        return Context::Unsupported(why);
    }
    if fields > 0 {
        return Context::Unsupported("inside an f-string's {...} field");
    }
    match stack.last() {
        Some(Mode::Str(string)) => {
            if string.triple && at > 0 && s[at - 1] == string.quote as u8 {
                return Context::Unsupported("right after a quote inside a triple-quoted string");
            }
            Context::PyString(string.clone())
        }
        _ => Context::PyCode,
    }
}

/// The string literal opening at `i` (a quote), with the prefix written before it, and
/// the length of its opening quotes.
fn open_string(s: &[u8], i: usize, split: bool) -> (PyString, usize) {
    let q = s[i];
    let triple = s[i..].starts_with(&[q, q, q]) && !split;
    // The identifier-like run before the quote is a prefix only if it is one as a whole
    // (`or"x"` is the keyword `or` and a plain string).
    let start = s[..i]
        .iter()
        .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .map_or(0, |p| p + 1);
    let word = String::from_utf8_lossy(&s[start..i]).to_ascii_lowercase();
    let valid = [
        "", "r", "u", "b", "br", "rb", "f", "fr", "rf", "t", "tr", "rt",
    ];
    let prefix = if valid.contains(&word.as_str()) {
        String::from_utf8_lossy(&s[start..i]).into_owned()
    } else {
        String::new()
    };
    let lower = prefix.to_ascii_lowercase();
    let string = PyString {
        quote: q as char,
        triple,
        bytes: lower.contains('b'),
        formatted: lower.contains('f') || lower.contains('t'),
        prefix,
    };
    (string, if triple { 3 } else { 1 })
}

/// `value` as a Python `str` literal that is inert wherever it lands: single-quoted,
/// with both quote characters, the backslash and everything outside printable ASCII
/// escaped, so it holds no quote, no line break and no non-ASCII character.
pub(super) fn str_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('\'');
    out
}

/// `value` (its UTF-8 bytes) as a Python `bytes` literal, escaped as `str_literal` is.
pub(super) fn bytes_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    out.push_str("b'");
    for b in value.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'"' => out.push_str("\\\""),
            b' '..=b'~' => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\'');
    out
}

//! How deeply a YAML text nests its collections, found by one linear scan before the
//! parser sees the text.
//!
//! Why: libyaml's scanner, and saphyr-parser's (which follows it), keep one "possible
//! simple key" per open flow collection and walk all of them for every token they scan,
//! so `[[[[…` costs time quadratic in the nesting (100,000 `[` took seconds to tens of
//! seconds), and all of it happens before any recursion limit of a reader can say
//! anything. Refusing deep text first keeps every later step linear.
//!
//! The scan follows libyaml's scanner for what decides nesting: flow collections
//! (`[`, `{`) outside quoted, plain and block scalars and comments, and block
//! collections by their indentation (a `- ` entry or a `key:` at a column deeper than
//! the collection around it opens a new one, as libyaml's indent stack does). The
//! count it gives is that of libyaml where the two agree; where a text is unusual
//! enough that they might not (invalid YAML, say), it errs towards counting a level
//! libyaml would not, never the reverse for flow collections: those are the costly
//! ones.

/// Where the text first goes deeper than allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TooDeep {
    /// 1-based.
    pub line: usize,
    pub limit: usize,
}

/// Checks that no point of `text` is nested more than `limit` collections deep.
pub(super) fn check_depth(text: &str, limit: usize) -> Result<(), TooDeep> {
    let mut scan = Scan {
        limit,
        flow: 0,
        block: Vec::new(),
        carry: Carry::None,
        line: 0,
    };
    for (index, line) in lines(text.as_bytes()).enumerate() {
        scan.line = index + 1;
        scan.line_of_text(line)?;
    }
    Ok(())
}

/// The lines of `text` as libyaml breaks them: at `\n`, `\r\n`, a lone `\r`, and the
/// Unicode breaks NEL, LS and PS. (Splitting at `\n` alone would let a comment before
/// a lone `\r` hide the lines after it from the scan, but not from libyaml.) YAML 1.2
/// parsers (saphyr-parser) break at `\n`, `\r\n` and `\r` only: breaking at more lines
/// than they do only ever makes the scan count more, not less.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        let mut i = 0;
        while i < text.len() {
            let width = match text[i..] {
                [b'\r', b'\n', ..] => 2,
                [b'\n' | b'\r', ..] => 1,
                [0xc2, 0x85, ..] => 2,
                [0xe2, 0x80, 0xa8 | 0xa9, ..] => 3,
                _ => 0,
            };
            if width > 0 {
                rest = Some(&text[i + width..]);
                return Some(&text[..i]);
            }
            i += 1;
        }
        rest = None;
        Some(text)
    })
}

/// What a line leaves open for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carry {
    None,
    /// Inside a quoted scalar (`"` or `'`), which may span lines.
    Quoted(u8),
    /// A plain scalar ended the line; it may go on on the next ones.
    Plain,
    /// Inside a block scalar (`|`, `>`) of the block collection at `parent` (`None` at
    /// the top); its content lines are indented by `indent` once known.
    BlockScalar {
        parent: Option<usize>,
        indent: Option<usize>,
    },
}

struct Scan {
    limit: usize,
    /// Open flow collections.
    flow: usize,
    /// Columns of the open block collections, innermost last (libyaml's indents).
    block: Vec<usize>,
    carry: Carry,
    line: usize,
}

/// Whether the byte at `i` is the end of the line or blank (what must follow an
/// indicator such as `- ` or `: `).
fn blank_at(line: &[u8], i: usize) -> bool {
    matches!(line.get(i), None | Some(b' ' | b'\t'))
}

fn is_flow_indicator(b: u8) -> bool {
    matches!(b, b',' | b'[' | b']' | b'{' | b'}')
}

impl Scan {
    fn depth(&self) -> usize {
        self.block.len() + self.flow
    }

    fn check(&self) -> Result<(), TooDeep> {
        if self.depth() > self.limit {
            Err(TooDeep {
                line: self.line,
                limit: self.limit,
            })
        } else {
            Ok(())
        }
    }

    /// A block collection starting at `column`, unless one is open there already.
    fn roll(&mut self, column: usize) -> Result<(), TooDeep> {
        if self.flow == 0 && self.block.last().is_none_or(|&top| column > top) {
            self.block.push(column);
            self.check()?;
        }
        Ok(())
    }

    fn line_of_text(&mut self, line: &[u8]) -> Result<(), TooDeep> {
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let blank = line[indent..].iter().all(|&b| b == b' ' || b == b'\t');
        match self.carry {
            Carry::BlockScalar { parent, indent: at } => {
                if blank {
                    return Ok(());
                }
                let content = match at {
                    Some(at) => indent >= at,
                    None => parent.is_none_or(|p| indent > p),
                };
                if content {
                    if at.is_none() {
                        self.carry = Carry::BlockScalar {
                            parent,
                            indent: Some(indent),
                        };
                    }
                    return Ok(());
                }
                self.carry = Carry::None;
            }
            Carry::Quoted(quote) => {
                return match close_quote(line, 0, quote) {
                    Some(after) => {
                        self.carry = Carry::None;
                        self.tokens(line, after)
                    }
                    None => Ok(()),
                };
            }
            Carry::Plain | Carry::None => {}
        }
        if blank {
            return Ok(());
        }
        let rest = &line[indent..];
        if rest.first() == Some(&b'#') {
            // A comment ends a plain scalar running over lines.
            self.carry = Carry::None;
            return Ok(());
        }
        if indent == 0
            && (rest.starts_with(b"---") || rest.starts_with(b"...") || rest[0] == b'%')
            && (rest[0] == b'%' || blank_at(rest, 3))
        {
            // A document marker or directive closes every block collection.
            self.block.clear();
            self.carry = Carry::None;
            return match rest[0] {
                b'%' => Ok(()),
                _ => self.tokens(line, 3),
            };
        }
        if self.carry == Carry::Plain {
            // libyaml goes on with a plain scalar on a line indented deeper than the
            // block collection it is in, and always inside a flow collection.
            let goes_on = self.flow > 0 || self.block.last().is_none_or(|&top| indent > top);
            if goes_on {
                return self.plain(line, indent, indent);
            }
        }
        self.carry = Carry::None;
        if self.flow == 0 {
            while self.block.last().is_some_and(|&top| top > indent) {
                self.block.pop();
            }
        }
        self.tokens(line, indent)
    }

    /// Scans from `i`, where a token may start.
    fn tokens(&mut self, line: &[u8], mut i: usize) -> Result<(), TooDeep> {
        // Where the last node began: a `key:` opens its mapping at its key's column,
        // which is that of its anchor or tag if it has one (`&a key: x`).
        let mut token = i;
        let mut props: Option<usize> = None;
        while i < line.len() {
            let b = line[i];
            match b {
                b' ' | b'\t' => i += 1,
                b'#' => break,
                b'[' | b'{' => {
                    token = props.take().unwrap_or(i);
                    self.flow += 1;
                    self.check()?;
                    i += 1;
                }
                b']' | b'}' => {
                    self.flow = self.flow.saturating_sub(1);
                    i += 1;
                }
                b',' => i += 1,
                b'"' | b'\'' => {
                    token = props.take().unwrap_or(i);
                    match close_quote(line, i + 1, b) {
                        Some(after) => i = after,
                        None => {
                            self.carry = Carry::Quoted(b);
                            return Ok(());
                        }
                    }
                }
                b'-' | b'?' if blank_at(line, i + 1) => {
                    self.roll(i)?;
                    i += 1;
                }
                b':' if blank_at(line, i + 1)
                    || (self.flow > 0
                        && line.get(i + 1).is_some_and(|&n| is_flow_indicator(n))) =>
                {
                    self.roll(token)?;
                    i += 1;
                }
                b'|' | b'>' if self.flow == 0 => {
                    let parent = self.block.last().copied();
                    let explicit = line[i + 1..]
                        .iter()
                        .take_while(|&&c| c != b' ' && c != b'#')
                        .find(|c| c.is_ascii_digit())
                        .map(|d| usize::from(d - b'0'));
                    self.carry = Carry::BlockScalar {
                        parent,
                        indent: explicit.map(|n| parent.map_or(n, |p| p + n)),
                    };
                    return Ok(());
                }
                b'&' | b'!' => {
                    // An anchor or a tag: runs to the next blank.
                    props.get_or_insert(i);
                    while i < line.len() && !blank_at(line, i) {
                        i += 1;
                    }
                }
                b'*' => {
                    token = props.take().unwrap_or(i);
                    while i < line.len()
                        && !blank_at(line, i)
                        && !(self.flow > 0 && is_flow_indicator(line[i]))
                    {
                        i += 1;
                    }
                }
                _ => return self.plain(line, props.unwrap_or(i), i),
            }
        }
        Ok(())
    }

    /// Scans a plain scalar that began at column `token` from `i` to its end, then
    /// what follows it on the line.
    fn plain(&mut self, line: &[u8], token: usize, mut i: usize) -> Result<(), TooDeep> {
        while i < line.len() {
            let b = line[i];
            let ends = match b {
                b':' => {
                    blank_at(line, i + 1)
                        || (self.flow > 0 && line.get(i + 1).is_some_and(|&n| is_flow_indicator(n)))
                }
                b'#' => i > 0 && matches!(line[i - 1], b' ' | b'\t'),
                _ => self.flow > 0 && is_flow_indicator(b),
            };
            if ends {
                self.carry = Carry::None;
                if b == b':' {
                    self.roll(token)?;
                    return self.tokens(line, i + 1);
                }
                return match b {
                    b'#' => Ok(()),
                    _ => self.tokens(line, i),
                };
            }
            i += 1;
        }
        self.carry = Carry::Plain;
        Ok(())
    }
}

/// The index after the quote closing a scalar opened by `quote` before `from`, if it
/// closes on this line (`\` escapes in double quotes, `''` in single ones).
fn close_quote(line: &[u8], from: usize, quote: u8) -> Option<usize> {
    let mut i = from;
    while i < line.len() {
        match line[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && line.get(i + 1) == Some(&b'\'') => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deepest point of `text`: the smallest limit it passes.
    fn depth(text: &str) -> usize {
        (0..)
            .find(|&limit| check_depth(text, limit).is_ok())
            .unwrap()
    }

    #[test]
    fn counts_what_libyaml_nests() {
        let cases = [
            ("", 0),
            ("x\n", 0),
            ("id: x\n", 1),
            ("a: [1, [2, {b: 3}]]\n", 4),
            ("a:\n  b:\n    c: 1\n", 3),
            ("a:\n- 1\n- 2\n", 1), // the sequence at the key's column, as libyaml sees it
            ("a:\n  - 1\n  - [2]\n", 3),
            ("- - - x\n", 3),
            ("- a: 1\n  b: 2\n", 2),
            ("a:\n  b: 1\nc: 2\n", 2),
            ("--- [1]\n--- {a: [1]}\n", 2),
            ("a: [1,\n  [2,\n   [3]]]\n", 4),
        ];
        for (text, want) in cases {
            assert_eq!(depth(text), want, "{text:?}");
        }
    }

    #[test]
    fn brackets_in_scalars_and_comments_do_not_count() {
        let cases = [
            ("a: \"[[[[\"\n", 1),
            ("a: '[[['' [[['\n", 1),
            ("a: \"x\\\"[[[\"\n", 1),
            ("a: echo [[[ x\n", 1),
            ("a: b # [[[[\n", 1),
            ("# [[[[\n", 0),
            ("a: |\n  [[[[\n  {{{{\nb: 1\n", 1),
            ("a: >-\n\n  [[[[\n", 1),
            ("a:\n  b: |2\n     [[[[\n  c: 1\n", 2),
            ("a: \"multi\n  [[[[ line\"\n", 1),
            ("a: plain\n  goes on [[[[\n", 1),
            ("a: it's [[[[\n", 1),
            ("a: &anchor [1]\nb: *anchor\n", 2),
            ("a: !!str [[\n", 3), // a tag does not make a flow sequence a scalar
        ];
        for (text, want) in cases {
            assert_eq!(depth(text), want, "{text:?}");
        }
    }

    #[test]
    fn flow_brackets_end_plain_scalars() {
        // Inside a flow collection a plain scalar stops at a bracket, and goes on over
        // lines: a quote on the next line is still part of it.
        let cases = [
            ("a: [x[y]]\n", 3),
            ("a: [x\n 'y, [[z]]]\n", 4),
            ("a: [x\n y, \"[[\"]\n", 2),
        ];
        for (text, want) in cases {
            assert_eq!(depth(text), want, "{text:?}");
        }
    }

    #[test]
    fn names_the_line_that_goes_too_deep() {
        let text = format!("id: x\ntasks:\n  - id: a\n    args: {}\n", "[".repeat(100));
        assert_eq!(check_depth(&text, 64), Err(TooDeep { line: 4, limit: 64 }));
        let block: String = (0..70)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert_eq!(check_depth(&block, 64).unwrap_err().line, 65);
        assert_eq!(check_depth(&block, 70), Ok(()));
    }

    #[test]
    fn breaks_lines_where_libyaml_does() {
        let split = |text: &str| {
            lines(text.as_bytes())
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            split("a\nb\r\nc\rd\u{85}e\u{2028}f\u{2029}g"),
            ["a", "b", "c", "d", "e", "f", "g"]
        );
        assert_eq!(split(""), [""]);
        assert_eq!(split("a\n"), ["a", ""]);
        // A comment ends at a lone `\r`: what follows is YAML again.
        let hidden = format!("a: 1 # note\rb: {}\n", "[".repeat(100));
        assert_eq!(check_depth(&hidden, 64).unwrap_err().line, 2);
    }

    #[test]
    fn any_input_is_scanned_without_panic() {
        for text in [
            "\"",
            "'",
            "[",
            "]]]]",
            "|",
            ">9",
            "- ",
            ":",
            "? ",
            "\t[",
            "a: '\n",
            "&",
            "*",
            "%",
            "---",
            "a:\r\n  - [1]\r\n",
            "\u{feff}a: 1",
            "é: [ü]",
        ] {
            let _ = check_depth(text, 1);
        }
    }

    /// Random texts made of YAML's indicators: of those the parser reads, the scan
    /// finds the depth within what its model allows. It may count one level more than
    /// there is, and fewer where libyaml learns of a block mapping only at its `:`,
    /// after the key's own collections (`[a]: b`), or nests a sequence at its key's
    /// column: never less than half, less two. (Set `DEPTH_FUZZ=N` for N texts.)
    #[test]
    fn agrees_with_the_parser_on_random_texts() {
        let count = std::env::var("DEPTH_FUZZ")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_000);
        let pieces = [
            "[", "[", "]", "{", "}", "[x, ", "- - ", "'", "\"", "#", ": ", ":", "- ", " ", "  ",
            "\n", "\n  ", "|", ">", "a", ",", "b: ", "\\", "&x ", "*x", "? ", "!t ",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64: deterministic, so a failure repeats.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        let mut read = 0;
        for _ in 0..count {
            let len = 1 + next() % 60;
            let text: String = (0..len).map(|_| pieces[next() % pieces.len()]).collect();
            let Ok(doc) = crate::config::yaml::Doc::parse(&text) else {
                continue;
            };
            read += 1;
            let real = doc.depth();
            let scanned = depth(&text);
            assert!(
                scanned <= real + 1 && real <= 2 * scanned + 2,
                "{text:?}: parsed {real}, scanned {scanned}"
            );
        }
        assert!(read > count / 20, "only {read} of {count} texts were YAML");
    }
}

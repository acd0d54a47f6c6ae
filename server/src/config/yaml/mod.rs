//! A YAML text read once into a tree that keeps where every node was written, by
//! saphyr-parser (a pure-Rust YAML 1.2 parser, tested against the YAML test suite).
//! `read` deserializes the raw serde structs from this tree, with the meaning
//! serde_yaml 0.9 gave every scalar (job files keep meaning what they meant), and the
//! checks after it ask the same tree for the line of any value they are about, by its
//! path. Nothing here scans the text a second time.
//!
//! Scalars are kept as written (text, style, tag) and resolved when read: a scalar is
//! a number, a boolean or null only when the field reading it asks for one.

mod access;
mod read;
mod scalar;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

pub(super) use access::StructFromMap;
pub(super) use read::{lenient, read, Unreadable};

/// One node of the tree; its children are indices into `Doc::nodes`.
#[derive(Debug)]
struct Node<'t> {
    /// 1-based, of where the node starts (a block mapping: its first key).
    line: usize,
    /// 1-based, of where the node ends (a block scalar: its last line of content).
    end_line: usize,
    /// As the parser resolved it: `!x` is `!x`, `!!str` is `tag:yaml.org,2002:str`.
    tag: Option<Box<str>>,
    kind: Kind<'t>,
}

#[derive(Debug)]
enum Kind<'t> {
    /// Borrowed from the text where the parser could (plain scalars, mostly).
    Scalar {
        value: Cow<'t, str>,
        style: ScalarStyle,
    },
    Seq(Vec<usize>),
    Map(Map),
    /// `*name`: the anchored node.
    Alias(usize),
}

#[derive(Debug, Default)]
struct Map {
    entries: Vec<(usize, usize)>,
    /// The first entry of each scalar key, built on the first lookup of a large map.
    index: OnceLock<HashMap<String, usize>>,
}

/// Maps of more entries than this are looked up through an index.
const INDEXED: usize = 16;

/// A parsed document.
#[derive(Debug)]
pub(super) struct Doc<'t> {
    nodes: Vec<Node<'t>>,
    root: usize,
}

/// A syntax error: what the parser says, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// An open collection while the tree is built.
enum Open {
    Seq(usize, Vec<usize>),
    Map(usize, Vec<(usize, usize)>, Option<usize>),
}

impl<'t> Doc<'t> {
    /// Parses `text`, which must hold one document (an empty text is an empty
    /// document: a null scalar).
    pub(super) fn parse(text: &'t str) -> Result<Doc<'t>, SyntaxError> {
        let mut nodes: Vec<Node<'t>> = Vec::new();
        let mut anchors: HashMap<usize, usize> = HashMap::new();
        let mut open: Vec<Open> = Vec::new();
        let mut root = None;
        let mut documents = 0;
        let mut text_chars = None;
        for event in Parser::new_from_str(text) {
            let (event, span) = event.map_err(|e| SyntaxError {
                line: e.marker().line(),
                message: e.info().to_string(),
            })?;
            let start = |tag: Option<Box<str>>, kind: Kind<'t>, span: Span| Node {
                line: span.start.line(),
                end_line: span.end.line().max(span.start.line()),
                tag,
                kind,
            };
            let (id, anchor) = match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(SyntaxError {
                            line: span.start.line(),
                            message: "deserializing from YAML containing more than one \
                                      document is not supported"
                                .to_string(),
                        });
                    }
                    continue;
                }
                Event::Scalar(value, style, anchor, tag) => {
                    let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
                    let mut value = value;
                    if block
                        && span.end.index()
                            >= *text_chars.get_or_insert_with(|| text.chars().count())
                        && !text.ends_with(['\n', '\r'])
                        && !matches!(
                            text.chars().last(),
                            Some('\u{85}' | '\u{2028}' | '\u{2029}')
                        )
                    {
                        // A block scalar ending the text without a line break: libyaml (and so
                        // serde_yaml, what job files were read with) adds none, nor does this.
                        if value.ends_with('\n') {
                            value.to_mut().pop();
                        }
                    }
                    let kind = Kind::Scalar { value, style };
                    let mut node = start(tag.map(|t| tag_text(&t)), kind, span);
                    if block {
                        // A block scalar ends where the line after its content starts.
                        node.end_line = (span.end.line() - 1).max(node.line);
                    }
                    nodes.push(node);
                    (nodes.len() - 1, anchor)
                }
                Event::Alias(anchor) => {
                    // The parser refuses an alias to no anchor.
                    let Some(&target) = anchors.get(&anchor) else {
                        continue;
                    };
                    nodes.push(start(None, Kind::Alias(target), span));
                    (nodes.len() - 1, 0)
                }
                Event::SequenceStart(anchor, tag) => {
                    nodes.push(start(
                        tag.map(|t| tag_text(&t)),
                        Kind::Seq(Vec::new()),
                        span,
                    ));
                    let id = nodes.len() - 1;
                    if anchor > 0 {
                        anchors.insert(anchor, id);
                    }
                    open.push(Open::Seq(id, Vec::new()));
                    continue;
                }
                Event::MappingStart(anchor, tag) => {
                    let kind = Kind::Map(Map::default());
                    nodes.push(start(tag.map(|t| tag_text(&t)), kind, span));
                    let id = nodes.len() - 1;
                    if anchor > 0 {
                        anchors.insert(anchor, id);
                    }
                    open.push(Open::Map(id, Vec::new(), None));
                    continue;
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let id = match open.pop() {
                        Some(Open::Seq(id, items)) => {
                            nodes[id].kind = Kind::Seq(items);
                            id
                        }
                        Some(Open::Map(id, entries, _)) => {
                            nodes[id].kind = Kind::Map(Map {
                                entries,
                                index: OnceLock::new(),
                            });
                            id
                        }
                        None => continue,
                    };
                    nodes[id].end_line = span.end.line().max(nodes[id].line);
                    (id, 0)
                }
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {
                    continue
                }
            };
            if anchor > 0 {
                anchors.insert(anchor, id);
            }
            match open.last_mut() {
                Some(Open::Seq(_, items)) => items.push(id),
                Some(Open::Map(_, entries, key)) => match key.take() {
                    Some(k) => entries.push((k, id)),
                    None => *key = Some(id),
                },
                None => root = root.or(Some(id)),
            }
        }
        let root = match root {
            Some(root) => root,
            None => {
                nodes.push(Node {
                    line: 1,
                    end_line: 1,
                    tag: None,
                    kind: Kind::Scalar {
                        value: Cow::Borrowed(""),
                        style: ScalarStyle::Plain,
                    },
                });
                nodes.len() - 1
            }
        };
        Ok(Doc { nodes, root })
    }

    pub(super) fn root(&self) -> At<'_> {
        At {
            doc: self,
            id: self.root,
        }
    }

    /// The deepest nesting of collections, aliases not followed.
    #[cfg(test)]
    pub(super) fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self.root, 0)];
        while let Some((id, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            match &self.nodes[id].kind {
                Kind::Seq(items) => stack.extend(items.iter().map(|&i| (i, depth + 1))),
                Kind::Map(map) => stack.extend(
                    map.entries
                        .iter()
                        .flat_map(|&(k, v)| [(k, depth + 1), (v, depth + 1)]),
                ),
                Kind::Scalar { .. } | Kind::Alias(_) => {}
            }
        }
        deepest
    }
}

/// A tag as resolved: `!x`, `tag:yaml.org,2002:str` (`!!str`), `!` alone.
fn tag_text(tag: &saphyr_parser::Tag) -> Box<str> {
    format!("{}{}", tag.handle, tag.suffix).into()
}

/// A node of a document, to ask where things are.
#[derive(Debug, Clone, Copy)]
pub(super) struct At<'a> {
    doc: &'a Doc<'a>,
    id: usize,
}

impl<'a> At<'a> {
    fn node(self) -> &'a Node<'a> {
        &self.doc.nodes[self.id]
    }

    /// The node itself, or the anchored one if this is an alias.
    fn resolved(self) -> At<'a> {
        match self.node().kind {
            Kind::Alias(target) => At {
                doc: self.doc,
                id: target,
            },
            _ => self,
        }
    }

    /// The 1-based line the node starts on.
    pub(super) fn line(self) -> usize {
        self.node().line
    }

    /// The 1-based lines the node spans (a block scalar: its lines of content).
    pub(super) fn lines(self) -> (usize, usize) {
        (self.node().line, self.node().end_line)
    }

    /// The line of this node holding `needle`: see `line_within`.
    pub(super) fn line_of(
        self,
        text_lines: &[&str],
        needle: &str,
        cursor: &mut Option<(usize, usize)>,
    ) -> usize {
        line_within(text_lines, self.lines(), needle, cursor)
    }

    /// The text of a scalar.
    pub(super) fn scalar(self) -> Option<&'a str> {
        match &self.resolved().node().kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The entry of a mapping whose key is the scalar `key` (the first, if several).
    fn entry(self, key: &str) -> Option<(At<'a>, At<'a>)> {
        let at = self.resolved();
        let Kind::Map(map) = &at.node().kind else {
            return None;
        };
        let key_text = |k: usize| match &at.doc.nodes[k].kind {
            Kind::Scalar { value, .. } => Some(value.as_ref()),
            _ => None,
        };
        let found = if map.entries.len() > INDEXED {
            let index = map.index.get_or_init(|| {
                let mut index = HashMap::with_capacity(map.entries.len());
                for (n, &(k, _)) in map.entries.iter().enumerate() {
                    if let Some(text) = key_text(k) {
                        index.entry(text.to_string()).or_insert(n);
                    }
                }
                index
            });
            index.get(key).map(|&n| map.entries[n])
        } else {
            map.entries
                .iter()
                .find(|&&(k, _)| key_text(k) == Some(key))
                .copied()
        };
        found.map(|(k, v)| (at.child(k), at.child(v)))
    }

    fn child(self, id: usize) -> At<'a> {
        At { doc: self.doc, id }
    }

    /// The value under `key` of a mapping.
    pub(super) fn get(self, key: &str) -> Option<At<'a>> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The line of the key `key` of a mapping.
    pub(super) fn key_line(self, key: &str) -> Option<usize> {
        self.entry(key).map(|(k, _)| k.line())
    }

    /// Item `index` of a sequence.
    pub(super) fn item(self, index: usize) -> Option<At<'a>> {
        let at = self.resolved();
        match &at.node().kind {
            Kind::Seq(items) => items.get(index).map(|&id| at.child(id)),
            _ => None,
        }
    }
}

/// The line of `text_lines` (a document's text, split at line breaks) within `lines`
/// (1-based, both included: where a value was written) holding `needle`, searched from
/// `cursor` on, which moves past it: the needles of one value are searched front to
/// back, each line once. A value on one line is that line; text written otherwise in
/// the YAML (escapes, folding) is the value's first line.
pub(super) fn line_within(
    text_lines: &[&str],
    (start, end): (usize, usize),
    needle: &str,
    cursor: &mut Option<(usize, usize)>,
) -> usize {
    if start == end || needle.is_empty() {
        return start;
    }
    let (mut at, mut column) = cursor.unwrap_or((start.saturating_sub(1), 0));
    while at < end.min(text_lines.len()) {
        if let Some(pos) = text_lines[at].get(column..).and_then(|l| l.find(needle)) {
            *cursor = Some((at, column + pos + needle.len()));
            return at + 1;
        }
        at += 1;
        column = 0;
    }
    *cursor = Some((end, 0));
    start
}

/// Reads `text` as a `T` through `read`: the value, or the first error's message.
#[cfg(test)]
pub(super) fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let doc = Doc::parse(text).map_err(|e| e.message)?;
    let reading = read::<T>(&doc, std::path::Path::new("test.yaml"));
    match (reading.value, reading.errors.into_iter().next()) {
        (Some(value), None) => Ok(value),
        (_, Some(error)) => Err(error.message),
        (None, None) => Err("no value".to_string()),
    }
}

/// What a top-level `id: x` of `text` says, and its line, read no further than needed,
/// and not past `max_depth` levels of nesting: for files that were not parsed whole
/// (too big, too deep, or not valid YAML further on), whose id still counts.
pub(super) fn top_level_id(text: &str, max_depth: usize) -> Option<(String, usize)> {
    let mut depth = 0usize;
    // At depth 1 (the root mapping): whether the next scalar is a key, and whether the
    // last key was `id`.
    let mut expect_key = true;
    let mut id_key: Option<usize> = None;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.ok()?;
        match event {
            Event::SequenceStart(..) if depth == 0 => return None,
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if depth == 1 {
                    if id_key.is_some() {
                        return None;
                    }
                    expect_key = !expect_key;
                }
                depth += 1;
                if depth > max_depth {
                    return None;
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return None;
                }
            }
            Event::Scalar(value, ..) if depth == 1 => {
                if let Some(line) = id_key {
                    return Some((value.into_owned(), line));
                }
                if expect_key && value == "id" {
                    id_key = Some(span.start.line());
                }
                expect_key = !expect_key;
            }
            Event::Alias(_) if depth == 1 => {
                if id_key.is_some() {
                    return None;
                }
                expect_key = !expect_key;
            }
            _ => {}
        }
    }
    None
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
    args: [\"-c\", \"echo ${config.x}\"]
  -
    id: 'load'
    script: |
      - id: fake
      depends_on: fake
    depends_on: [extract]
flow: [{a: 1},
  {b: 2}]
";

    #[test]
    fn every_node_knows_its_line() {
        let doc = Doc::parse(TEXT).unwrap();
        let root = doc.root();
        let tasks = root.get("tasks").unwrap();
        let line = |at: Option<At>| at.map(At::line);
        let cases = [
            (root.key_line("id"), Some(2)),
            (line(root.get("id")), Some(2)),
            (root.key_line("schedule"), Some(3)),
            (line(root.get("schedule")), Some(4)),
            (
                root.get("schedule").and_then(|s| s.key_line("timezone")),
                Some(5),
            ),
            (
                line(root.get("depends_on").and_then(|d| d.item(1))),
                Some(8),
            ),
            (line(tasks.item(0)), Some(11)),
            (line(tasks.item(1)), Some(14)),
            (
                line(tasks.item(1).and_then(|t| t.get("depends_on"))),
                Some(18),
            ),
            (
                tasks.item(1).and_then(|t| t.key_line("depends_on")),
                Some(18),
            ),
            (
                line(
                    tasks
                        .item(0)
                        .and_then(|t| t.get("args"))
                        .and_then(|a| a.item(1)),
                ),
                Some(12),
            ),
            (line(root.get("flow").and_then(|f| f.item(1))), Some(20)),
            (root.key_line("nothing"), None),
            (line(tasks.item(2)), None),
        ];
        for (n, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, want, "case {n}");
        }
        let script = tasks.item(1).and_then(|t| t.get("script")).unwrap();
        assert_eq!(script.lines(), (16, 17));
        assert_eq!(script.scalar(), Some("- id: fake\ndepends_on: fake\n"));
        assert_eq!(root.get("id").and_then(At::scalar), Some("demo"));
    }

    #[test]
    fn large_maps_are_indexed() {
        let text: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect();
        let text = text + "k7: again\n";
        let doc = Doc::parse(&text).unwrap();
        let root = doc.root();
        assert_eq!(root.get("k7").and_then(At::scalar), Some("7"));
        assert_eq!(root.key_line("k99"), Some(100));
        assert!(root.get("k100").is_none());
    }

    #[test]
    fn aliases_and_errors() {
        let doc = Doc::parse("a: &x {b: 1}\nc: *x\n").unwrap();
        let c = doc.root().get("c").unwrap();
        assert_eq!(c.line(), 2);
        assert_eq!(c.get("b").and_then(At::scalar), Some("1"));
        let err = Doc::parse("id: x\ntasks: [\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(
            err.message.contains("did not find expected node content"),
            "{err:?}"
        );
        let err = Doc::parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("more than one document"), "{err:?}");
        assert_eq!(Doc::parse("").unwrap().root().scalar(), Some(""));
        assert_eq!(Doc::parse("# only\n").unwrap().root().scalar(), Some(""));
    }

    #[test]
    fn finds_the_top_level_id_of_any_text() {
        let cases = [
            ("id: x\ntasks: [\n", Some(("x", 1))),
            ("name: n\n\nid: 'y'\n", Some(("y", 3))),
            ("tasks:\n  - id: t\nid: z\n", Some(("z", 3))),
            ("tasks:\n  - id: t\n", None),
            ("a: [[[[[[[[[[\nid: x\n", None),
            ("id: [x]\n", None),
            ("[id, x]\n", None),
            ("a: b: c\nid: x\n", None),
        ];
        for (text, want) in cases {
            let got = top_level_id(text, 4);
            assert_eq!(
                got.as_ref().map(|(id, line)| (id.as_str(), *line)),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn depth_of_the_tree() {
        for (text, want) in [("a", 0), ("a: [1, {b: [2]}]", 4), ("- - - x", 3)] {
            assert_eq!(Doc::parse(text).unwrap().depth(), want, "{text}");
        }
    }
}

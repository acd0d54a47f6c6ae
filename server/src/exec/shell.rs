//! Where each placeholder of a POSIX shell script (`sh`, `bash`, `dash`, `zsh`, `ksh`
//! `-c SCRIPT`) stands: unquoted, inside '...', "...", $'...', a comment or an
//! arithmetic expansion. One pass over the script with a stack of nested constructs
//! (`$(...)`, `${...}`, backticks, here-documents).
//!
//! What this lexer cannot follow for certain (a placeholder inside backticks, a shell
//! `${...}`, a here-document, after a backslash, or anywhere after a `case` inside
//! `$(...)`, whose `)` patterns it does not parse) is `Unsupported`: the executor then
//! refuses to run the task rather than guess, since a wrong guess could turn a value
//! into code.

use super::script::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Commands: the top level, or `$(...)` when not the bottom frame.
    Code,
    Single,
    DollarSingle,
    Double,
    Backtick,
    /// A shell parameter expansion `${...}`.
    Param,
    /// `$((...))` or `((...))`.
    Arith,
    Comment,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    mode: Mode,
    /// Open parentheses (Code, Arith) or braces (Param) inside this frame.
    depth: u32,
}

struct Lexer<'a> {
    s: &'a [u8],
    holes: &'a [usize],
    next_hole: usize,
    out: Vec<Context>,
    stack: Vec<Frame>,
    /// Here-documents whose bodies start after the next newline: (delimiter, `<<-`).
    pending: Vec<(Vec<u8>, bool)>,
    /// Set once the lexer may have lost track: every later placeholder is refused.
    uncertain: Option<&'static str>,
    /// The last identifier-like word read in code, for `case`.
    word: Vec<u8>,
    /// Frames of each mode on the stack (by `Mode as usize`), so that a placeholder's
    /// context costs O(1) however deep the nesting.
    open: [u32; 8],
}

/// The context of each hole (byte offsets into `script`, ascending; zero-width: the
/// placeholder's value goes there).
pub(super) fn contexts(script: &str, holes: &[usize]) -> Vec<Context> {
    let mut lx = Lexer {
        s: script.as_bytes(),
        holes,
        next_hole: 0,
        out: Vec::with_capacity(holes.len()),
        stack: vec![Frame {
            mode: Mode::Code,
            depth: 0,
        }],
        pending: Vec::new(),
        uncertain: None,
        word: Vec::new(),
        open: [0; 8],
    };
    lx.open[Mode::Code as usize] = 1;
    lx.run();
    lx.out
}

impl Lexer<'_> {
    fn top(&self) -> Mode {
        self.stack.last().map_or(Mode::Code, |f| f.mode)
    }

    fn push(&mut self, mode: Mode) {
        self.stack.push(Frame { mode, depth: 0 });
        self.open[mode as usize] += 1;
    }

    fn pop(&mut self) {
        if self.stack.len() > 1 {
            if let Some(frame) = self.stack.pop() {
                self.open[frame.mode as usize] -= 1;
            }
        }
    }

    fn inside(&self, mode: Mode) -> bool {
        self.open[mode as usize] > 0
    }

    fn at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    /// Records the context of every hole at offsets below or at `i`.
    fn holes_until(&mut self, i: usize, after_backslash: bool) {
        while self.next_hole < self.holes.len() && self.holes[self.next_hole] <= i {
            let ctx = if after_backslash {
                Context::Unsupported("right after a backslash")
            } else {
                self.here()
            };
            self.out.push(ctx);
            self.next_hole += 1;
        }
    }

    /// Records every hole before `end` (a span the lexer skips) as `ctx`.
    fn holes_in(&mut self, end: usize, ctx: Context) {
        while self.next_hole < self.holes.len() && self.holes[self.next_hole] < end {
            self.out.push(ctx.clone());
            self.next_hole += 1;
        }
    }

    fn here(&self) -> Context {
        if let Some(why) = self.uncertain {
            return Context::Unsupported(why);
        }
        if self.inside(Mode::Backtick) {
            return Context::Unsupported("inside backticks (write $(...) instead)");
        }
        if self.inside(Mode::Param) {
            return Context::Unsupported("inside a shell ${...} expansion");
        }
        let inner = self.top();
        if inner != Mode::Arith && self.inside(Mode::Arith) {
            return Context::Unsupported("inside an arithmetic expression");
        }
        match inner {
            Mode::Code => Context::ShellUnquoted,
            Mode::Single => Context::ShellSingle,
            Mode::DollarSingle => Context::ShellDollarSingle,
            Mode::Double => Context::ShellDouble,
            Mode::Comment => Context::ShellComment,
            Mode::Arith => Context::ShellArith,
            Mode::Backtick | Mode::Param => unreachable!("handled above"),
        }
    }

    /// Whether a `#` at `i` starts a comment: only at the start of a word.
    fn word_start(&self, i: usize) -> bool {
        if i == 0 {
            return true;
        }
        // A placeholder right before `#` is part of the same word.
        if self.next_hole > 0 && self.holes[self.next_hole - 1] == i {
            return false;
        }
        matches!(
            self.s[i - 1],
            b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>'
        )
    }

    fn end_word(&mut self) {
        if self.word == b"case" && self.stack.len() > 1 {
            self.uncertain
                .get_or_insert("after a `case` inside $(...) (use an if, or a function)");
        }
        self.word.clear();
    }

    fn run(&mut self) {
        let mut i = 0;
        while i < self.s.len() {
            self.holes_until(i, false);
            let c = self.s[i];
            let mode = self.top();
            if mode == Mode::Code {
                if c.is_ascii_alphanumeric() || c == b'_' {
                    self.word.push(c);
                } else {
                    self.end_word();
                }
            }
            i = match mode {
                Mode::Code | Mode::Param | Mode::Arith => self.code(i, c, mode),
                Mode::Single => {
                    if c == b'\'' {
                        self.pop();
                    }
                    i + 1
                }
                Mode::DollarSingle | Mode::Backtick | Mode::Double => self.quoted(i, c, mode),
                Mode::Comment => {
                    if c == b'\n' {
                        // The newline ends the comment and is then read as code.
                        self.pop();
                        i
                    } else {
                        i + 1
                    }
                }
            };
        }
        self.holes_until(usize::MAX, false);
    }

    /// One step inside '$'...'', backticks or "...".
    fn quoted(&mut self, i: usize, c: u8, mode: Mode) -> usize {
        let closes = match mode {
            Mode::DollarSingle => b'\'',
            Mode::Backtick => b'`',
            _ => b'"',
        };
        if c == b'\\' {
            self.holes_until(i + 1, true);
            return i + 2;
        }
        if c == closes {
            self.pop();
            return i + 1;
        }
        if mode == Mode::Double {
            if let Some(next) = self.expansion(i) {
                return next;
            }
        }
        i + 1
    }

    /// `$(`, `$((`, `${` or a backtick at `i`: pushes its frame, returns where to go on.
    fn expansion(&mut self, i: usize) -> Option<usize> {
        match (self.at(i), self.at(i + 1), self.at(i + 2)) {
            (b'$', b'(', b'(') => self.push(Mode::Arith),
            (b'$', b'(', _) => {
                self.push(Mode::Code);
                return Some(i + 2);
            }
            (b'$', b'{', _) => {
                self.push(Mode::Param);
                return Some(i + 2);
            }
            (b'`', _, _) => {
                self.push(Mode::Backtick);
                return Some(i + 1);
            }
            _ => return None,
        }
        Some(i + 3)
    }

    /// One step in commands, a `${...}` or an arithmetic expression.
    fn code(&mut self, i: usize, c: u8, mode: Mode) -> usize {
        if c == b'\\' {
            self.holes_until(i + 1, true);
            return i + 2;
        }
        if let Some(next) = self.expansion(i) {
            return next;
        }
        match c {
            b'\'' if mode == Mode::Param => {
                self.uncertain
                    .get_or_insert("after quotes inside a shell ${...} expansion");
                i + 1
            }
            b'"' if mode == Mode::Param => {
                self.uncertain
                    .get_or_insert("after quotes inside a shell ${...} expansion");
                i + 1
            }
            b'$' if self.at(i + 1) == b'\'' => {
                self.push(Mode::DollarSingle);
                i + 2
            }
            b'$' if self.at(i + 1) == b'"' => {
                self.push(Mode::Double);
                i + 2
            }
            b'\'' => {
                self.push(Mode::Single);
                i + 1
            }
            b'"' => {
                self.push(Mode::Double);
                i + 1
            }
            b'#' if mode == Mode::Code && self.word_start(i) => {
                self.push(Mode::Comment);
                i + 1
            }
            b'(' if mode == Mode::Code && self.at(i + 1) == b'(' => {
                self.push(Mode::Arith);
                i + 2
            }
            b'(' | b'{' => {
                let opens = if mode == Mode::Param { b'{' } else { b'(' };
                if c == opens {
                    if let Some(f) = self.stack.last_mut() {
                        f.depth += 1;
                    }
                }
                i + 1
            }
            b')' | b'}' => self.close(i, c, mode),
            b'<' if mode == Mode::Code && self.at(i + 1) == b'<' && self.at(i + 2) != b'<' => {
                self.heredoc_operator(i + 2)
            }
            b'<' if mode == Mode::Code && self.at(i + 1) == b'<' => i + 3,
            b'\n' if mode == Mode::Code && !self.pending.is_empty() => self.heredoc_bodies(i + 1),
            _ => i + 1,
        }
    }

    fn close(&mut self, i: usize, c: u8, mode: Mode) -> usize {
        let closes = if mode == Mode::Param { b'}' } else { b')' };
        if c != closes {
            return i + 1;
        }
        let bottom = self.stack.len() == 1;
        let Some(frame) = self.stack.last_mut() else {
            return i + 1;
        };
        if frame.depth > 0 {
            frame.depth -= 1;
            return i + 1;
        }
        match mode {
            Mode::Arith if self.at(i + 1) == b')' => {
                self.pop();
                i + 2
            }
            Mode::Arith => {
                self.uncertain
                    .get_or_insert("after an arithmetic expression it could not follow");
                self.pop();
                i + 1
            }
            // A stray `)` at the top level (a syntax error, or a `case` pattern).
            _ if bottom => i + 1,
            _ => {
                self.pop();
                i + 1
            }
        }
    }

    /// Reads the delimiter word after `<<` or `<<-` (from `i`); returns where code goes
    /// on.
    fn heredoc_operator(&mut self, mut i: usize) -> usize {
        let strip_tabs = self.at(i) == b'-';
        if strip_tabs {
            i += 1;
        }
        while matches!(self.at(i), b' ' | b'\t') {
            i += 1;
        }
        let start = i;
        let mut delim = Vec::new();
        while i < self.s.len() {
            match self.s[i] {
                b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>' => break,
                q @ (b'\'' | b'"') => {
                    i += 1;
                    while i < self.s.len() && self.s[i] != q {
                        if q == b'"' && self.s[i] == b'\\' {
                            i += 1;
                        }
                        if let Some(&b) = self.s.get(i) {
                            delim.push(b);
                        }
                        i += 1;
                    }
                    i += 1;
                }
                b'\\' => {
                    if let Some(&b) = self.s.get(i + 1) {
                        delim.push(b);
                    }
                    i += 2;
                }
                b => {
                    delim.push(b);
                    i += 1;
                }
            }
        }
        let end = i.min(self.s.len());
        if self.holes[self.next_hole..]
            .first()
            .is_some_and(|&h| h < end)
            || delim.is_empty()
        {
            self.uncertain
                .get_or_insert("after a here-document whose delimiter it could not read");
        }
        self.holes_in(end, Context::Unsupported("in a here-document's delimiter"));
        if start < end {
            self.pending.push((delim, strip_tabs));
        }
        end
    }

    /// Skips the bodies of the pending here-documents, from the start of the line at
    /// `i`; placeholders inside them are refused.
    fn heredoc_bodies(&mut self, mut i: usize) -> usize {
        let why = Context::Unsupported(
            "inside a here-document (read the exported $PETIT_PARAM_… variable instead)",
        );
        for (delim, strip_tabs) in std::mem::take(&mut self.pending) {
            loop {
                if i >= self.s.len() {
                    self.holes_in(usize::MAX, why.clone());
                    return self.s.len();
                }
                let end = self.s[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(self.s.len(), |p| p + i);
                let mut line = &self.s[i..end];
                if strip_tabs {
                    while let [b'\t', rest @ ..] = line {
                        line = rest;
                    }
                }
                // A placeholder at the very end of the body's last line belongs to it.
                self.holes_in(end + 1, why.clone());
                i = end + 1;
                if line == delim.as_slice() {
                    break;
                }
            }
        }
        i
    }
}

//! Reading a task's output pipe into chunks of lines: large reads, lines found with
//! `memchr` over the whole buffer, and each read's complete lines sent on as one
//! [`LogChunk`] (its text copied once, each line a span of it) rather than one string
//! per line.
//!
//! What counts as a line is what it always was: a line ends at a newline (removed, with
//! a CR before it); a line longer than [`MAX_LINE_BYTES`] is cut into pieces of that
//! many bytes, each a line of its own (so a line of exactly that length is followed by
//! an empty one, its newline being read as the next piece); text that is not UTF-8 is
//! made so line by line (each invalid sequence replaced by U+FFFD); what follows the
//! last newline at end of file is a last line.

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::core::log_batch::LogChunk;
use crate::core::LogStream;

/// The most bytes one line holds; longer lines are cut.
pub(super) const MAX_LINE_BYTES: usize = 64 * 1024;
/// Bytes asked for in one read.
const READ_BYTES: usize = 64 * 1024;

/// Splits a stream's bytes into lines, read after read.
#[derive(Debug)]
pub(super) struct LineSplitter {
    stream: LogStream,
    /// The start of the current line, read but not ended (shorter than a piece).
    partial: Vec<u8>,
    /// The spans of a run of lines being found, kept between reads so that it is
    /// allocated once.
    spans: Vec<(usize, usize)>,
}

impl LineSplitter {
    pub(super) fn new(stream: LogStream) -> LineSplitter {
        LineSplitter {
            stream,
            partial: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// The lines that `data` (the next bytes read) completes.
    pub(super) fn split(&mut self, data: &[u8]) -> LogChunk {
        // Sized once: every newline ends a line, and each piece cut from a long line or
        // the line ended first adds at most one more.
        let lines = memchr::memchr_iter(b'\n', data).count() + data.len() / MAX_LINE_BYTES + 2;
        let mut chunk = LogChunk::with_capacity(self.stream, data.len(), lines);
        let mut rest = data;
        // The end of a line begun in an earlier read.
        while !self.partial.is_empty() && !rest.is_empty() {
            let room = MAX_LINE_BYTES - self.partial.len();
            let window = &rest[..room.min(rest.len())];
            match memchr::memchr(b'\n', window) {
                Some(i) => {
                    self.partial.extend_from_slice(&window[..i]);
                    push_lossy(&mut chunk, &self.partial, true);
                    self.partial.clear();
                    rest = &rest[i + 1..];
                }
                None if window.len() == room => {
                    self.partial.extend_from_slice(window);
                    push_lossy(&mut chunk, &self.partial, false);
                    self.partial.clear();
                    rest = &rest[room..];
                }
                None => {
                    self.partial.extend_from_slice(window);
                    rest = &[];
                }
            }
        }
        // Lines wholly in this read, in runs of short complete lines (copied with one
        // check and one copy per run), cut where a line is longer than a piece.
        while !rest.is_empty() {
            let lines = &mut self.spans;
            lines.clear();
            let mut at = 0;
            let mut cut = None;
            for nl in memchr::memchr_iter(b'\n', rest) {
                if nl - at >= MAX_LINE_BYTES {
                    break;
                }
                let end = if nl > at && rest[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                lines.push((at, end));
                at = nl + 1;
            }
            if at < rest.len() && rest.len() - at >= MAX_LINE_BYTES {
                // The next line (ended or not) is longer than a piece: cut its first.
                cut = Some(at);
            }
            if !lines.is_empty() {
                let run = &rest[..at];
                match std::str::from_utf8(run) {
                    Ok(text) => chunk.extend(text, lines.drain(..)),
                    Err(_) => {
                        for (start, end) in lines.drain(..) {
                            chunk.push(&String::from_utf8_lossy(&run[start..end]));
                        }
                    }
                }
            }
            match cut {
                Some(start) => {
                    let piece = &rest[start..start + MAX_LINE_BYTES];
                    push_lossy(&mut chunk, piece, false);
                    rest = &rest[start + MAX_LINE_BYTES..];
                }
                None => {
                    self.partial.extend_from_slice(&rest[at..]);
                    rest = &[];
                }
            }
        }
        chunk
    }

    /// The last line, if the stream ended without a newline after it.
    pub(super) fn finish(&mut self) -> Option<LogChunk> {
        if self.partial.is_empty() {
            return None;
        }
        let mut chunk = LogChunk::new(self.stream);
        push_lossy(&mut chunk, &self.partial, false);
        self.partial.clear();
        Some(chunk)
    }
}

/// Adds one line; `ended` when a newline ended it (then a CR before it goes too).
fn push_lossy(chunk: &mut LogChunk, line: &[u8], ended: bool) {
    let line = match line {
        [head @ .., b'\r'] if ended => head,
        _ => line,
    };
    chunk.push(&String::from_utf8_lossy(line));
}

/// Reads `stream` to its end, sending each read's lines as one chunk. Stops early when
/// nobody takes the chunks any more, or on a read error (dropping a line begun).
pub(super) async fn read_chunks<R: AsyncRead + Unpin>(
    mut stream: R,
    which: LogStream,
    tx: mpsc::Sender<LogChunk>,
) {
    let mut splitter = LineSplitter::new(which);
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let chunk = splitter.split(&buf[..n]);
                if !chunk.is_empty() && tx.send(chunk).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    if let Some(last) = splitter.finish() {
        let _ = tx.send(last).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines the old reader (`read_until` a newline, at most MAX_LINE_BYTES at a
    /// time, CR stripped before a newline, lossy UTF-8) made of `input`.
    fn reference(input: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let window = &rest[..rest.len().min(MAX_LINE_BYTES)];
            let (mut piece, taken) = match memchr::memchr(b'\n', window) {
                Some(i) => (&window[..=i], i + 1),
                None => (window, window.len()),
            };
            if piece.last() == Some(&b'\n') {
                piece = &piece[..piece.len() - 1];
                if piece.last() == Some(&b'\r') {
                    piece = &piece[..piece.len() - 1];
                }
            }
            lines.push(String::from_utf8_lossy(piece).into_owned());
            rest = &rest[taken..];
        }
        lines
    }

    /// Splits `input` fed in reads of `read` bytes.
    fn split(input: &[u8], read: usize) -> Vec<String> {
        let mut splitter = LineSplitter::new(LogStream::Stdout);
        let mut lines = Vec::new();
        for data in input.chunks(read.max(1)) {
            let chunk = splitter.split(data);
            assert_eq!(chunk.stream, LogStream::Stdout);
            lines.extend(chunk.lines().map(str::to_string));
        }
        if let Some(last) = splitter.finish() {
            lines.extend(last.lines().map(str::to_string));
        }
        lines
    }

    #[test]
    fn lines_are_what_they_always_were_whatever_the_reads() {
        let long = |n: usize| vec![b'x'; n];
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("one line", b"hello\n".to_vec()),
            ("no final newline", b"a\nb".to_vec()),
            ("empty lines", b"\n\n\na\n\n".to_vec()),
            ("CRLF", b"a\r\nb\r\n\r\nc\r".to_vec()),
            ("CR alone stays", b"a\rb\n\r".to_vec()),
            (
                "invalid UTF-8",
                b"ok\n\xff\xfe bad\nok \xc3\xa9\n\xe2\x82".to_vec(),
            ),
            ("multibyte", "é ü 日本\n語\n".as_bytes().to_vec()),
        ];
        let mut edge = long(MAX_LINE_BYTES - 1);
        edge.extend_from_slice(b"\nafter\n");
        cases.push(("a line of a piece less one byte", edge));
        let mut exact = long(MAX_LINE_BYTES);
        exact.extend_from_slice(b"\nafter\n");
        cases.push(("a line of exactly a piece", exact));
        let mut crlf = long(MAX_LINE_BYTES - 1);
        crlf.extend_from_slice(b"\r\nz\n");
        cases.push(("a CR at a piece's end", crlf));
        let mut huge = b"before\n".to_vec();
        huge.extend(long(3 * MAX_LINE_BYTES + 17));
        huge.extend_from_slice(b"\nafter");
        cases.push(("a line of three pieces and more", huge));
        let mut cut_char = long(MAX_LINE_BYTES - 1);
        cut_char.extend_from_slice("é tail\n".as_bytes());
        cases.push(("a character cut by a piece's end", cut_char));
        for (name, input) in &cases {
            let expected = reference(input);
            for read in [1, 2, 3, 7, 100, 4096, MAX_LINE_BYTES, 1 << 20] {
                assert_eq!(split(input, read), expected, "{name}, reads of {read}");
            }
        }
    }

    #[test]
    fn a_read_of_short_lines_is_one_chunk_of_its_text() {
        let mut splitter = LineSplitter::new(LogStream::Stderr);
        let chunk = splitter.split(b"1\n2\r\n3\npart");
        assert_eq!(chunk.lines().collect::<Vec<_>>(), ["1", "2", "3"]);
        assert_eq!(
            chunk.text(),
            "1\n2\r\n3\n",
            "copied once, separators and all"
        );
        assert_eq!(chunk.line_bytes(), 3);
        let chunk = splitter.split(b"ial\n");
        assert_eq!(chunk.lines().collect::<Vec<_>>(), ["partial"]);
        assert!(splitter.finish().is_none());
    }

    #[tokio::test]
    async fn a_pipe_is_read_in_chunks_to_its_end() {
        let (tx, mut rx) = mpsc::channel(4);
        let input: Vec<u8> = (1..=20_000)
            .flat_map(|n| format!("{n}\n").into_bytes())
            .chain(b"last".iter().copied())
            .collect();
        let reader = tokio::spawn(read_chunks(
            std::io::Cursor::new(input.clone()),
            LogStream::Stdout,
            tx,
        ));
        let mut lines = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = rx.recv().await {
            chunks += 1;
            lines.extend(chunk.lines().map(str::to_string));
        }
        reader.await.expect("reader");
        assert_eq!(lines, reference(&input));
        assert!(chunks < 10, "{chunks} chunks for 20,000 lines");
    }
}

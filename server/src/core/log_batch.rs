//! Log lines as they move: a task's output travels from its pipes to the store and the
//! bus in chunks, not one allocation per line. A [`LogChunk`] is what one read of one
//! stream brought (its text kept as read, each line a span of it); a [`LogBatch`] is the
//! chunks one store append takes, with what every line of them shares (run, task,
//! attempt, time) said once and sequence numbers given by position. Readers get lines
//! out of a batch as borrowed [`LogLineRef`]s, or as owned [`LogLine`]s where an API
//! answer needs them.

use chrono::{DateTime, Utc};

use super::{LogLine, LogStream};

/// Lines of one stream, in order: `text` holds them (with whatever separated them, a
/// newline or CRLF, between), each line a `(start, end)` byte span of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub stream: LogStream,
    text: String,
    spans: Vec<(u32, u32)>,
}

impl LogChunk {
    pub fn new(stream: LogStream) -> LogChunk {
        LogChunk {
            stream,
            text: String::new(),
            spans: Vec::new(),
        }
    }

    /// A chunk of one line.
    pub fn line(stream: LogStream, line: String) -> LogChunk {
        let end = span_end(line.len());
        LogChunk {
            stream,
            text: line,
            spans: vec![(0, end)],
        }
    }

    pub fn with_capacity(stream: LogStream, bytes: usize, lines: usize) -> LogChunk {
        LogChunk {
            stream,
            text: String::with_capacity(bytes),
            spans: Vec::with_capacity(lines),
        }
    }

    /// Appends one line (copied).
    pub fn push(&mut self, line: &str) {
        let start = span_end(self.text.len());
        self.text.push_str(line);
        self.spans.push((start, span_end(self.text.len())));
    }

    /// Appends `text` whole and the lines it holds, given as spans relative to it.
    pub fn extend(&mut self, text: &str, spans: impl IntoIterator<Item = (usize, usize)>) {
        let base = self.text.len();
        self.text.push_str(text);
        self.spans.extend(spans.into_iter().map(|(start, end)| {
            debug_assert!(start <= end && end <= text.len());
            (span_end(base + start), span_end(base + end))
        }));
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The text the lines are spans of.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The lines' spans of [`LogChunk::text`].
    pub fn spans(&self) -> &[(u32, u32)] {
        &self.spans
    }

    /// Bytes of line text (separators not counted).
    pub fn line_bytes(&self) -> usize {
        self.spans.iter().map(|&(s, e)| (e - s) as usize).sum()
    }

    pub fn lines(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.spans
            .iter()
            .map(|&(s, e)| &self.text[s as usize..e as usize])
    }
}

/// A chunk's text stays under 4 GiB (one read's worth, or one line).
fn span_end(n: usize) -> u32 {
    u32::try_from(n).expect("a log chunk holds less than 4 GiB")
}

/// One store append's lines of one task attempt, in write order: the chunks in the
/// order they were read, line `i` of all of them numbered `first_seq + i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    pub run_id: String,
    pub task_id: String,
    pub attempt: u32,
    /// When the batch was taken (every line of it carries this time).
    pub time: DateTime<Utc>,
    /// The sequence number of the first line.
    pub first_seq: u64,
    chunks: Vec<LogChunk>,
}

/// One line of a batch, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLineRef<'a> {
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub attempt: u32,
    pub seq: u64,
    pub stream: LogStream,
    pub line: &'a str,
    pub time: DateTime<Utc>,
}

impl LogLineRef<'_> {
    pub fn to_owned(&self) -> LogLine {
        LogLine {
            run_id: self.run_id.to_string(),
            seq: self.seq,
            task_id: self.task_id.to_string(),
            attempt: self.attempt,
            stream: self.stream,
            line: self.line.to_string(),
            time: self.time,
        }
    }
}

impl LogBatch {
    /// A batch of `chunks` (empty ones are dropped).
    pub fn new(
        (run_id, task_id, attempt): (String, String, u32),
        time: DateTime<Utc>,
        first_seq: u64,
        mut chunks: Vec<LogChunk>,
    ) -> LogBatch {
        chunks.retain(|c| !c.is_empty());
        LogBatch {
            run_id,
            task_id,
            attempt,
            time,
            first_seq,
            chunks,
        }
    }

    /// Lines as stored or relayed, grouped into batches: consecutive lines of one task
    /// attempt with one time and consecutive sequence numbers share a batch.
    pub fn group(lines: Vec<LogLine>) -> Vec<LogBatch> {
        let mut batches: Vec<LogBatch> = Vec::new();
        for line in lines {
            let joins = batches.last().is_some_and(|b| {
                b.run_id == line.run_id
                    && b.task_id == line.task_id
                    && b.attempt == line.attempt
                    && b.time == line.time
                    && b.first_seq.checked_add(b.len() as u64) == Some(line.seq)
            });
            if !joins {
                batches.push(LogBatch::new(
                    (line.run_id.clone(), line.task_id.clone(), line.attempt),
                    line.time,
                    line.seq,
                    Vec::new(),
                ));
            }
            let batch = batches.last_mut().expect("a batch");
            match batch.chunks.last_mut() {
                Some(chunk) if chunk.stream == line.stream => chunk.push(&line.line),
                _ => batch.chunks.push(LogChunk::line(line.stream, line.line)),
            }
        }
        batches
    }

    pub fn chunks(&self) -> &[LogChunk] {
        &self.chunks
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(LogChunk::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The sequence number of the last line (`first_seq - 1` when empty).
    pub fn last_seq(&self) -> u64 {
        (self.first_seq + self.len() as u64).saturating_sub(1)
    }

    /// The lines, in order.
    pub fn lines(&self) -> impl Iterator<Item = LogLineRef<'_>> + '_ {
        let mut seq = self.first_seq;
        self.chunks.iter().flat_map(move |chunk| {
            let first = seq;
            seq += chunk.len() as u64;
            chunk.lines().enumerate().map(move |(i, line)| LogLineRef {
                run_id: &self.run_id,
                task_id: &self.task_id,
                attempt: self.attempt,
                seq: first + i as u64,
                stream: chunk.stream,
                line,
                time: self.time,
            })
        })
    }

    /// About how many bytes the batch holds on the heap (its text and spans), which is
    /// what a subscriber that has not read it yet keeps alive.
    pub fn heap_bytes(&self) -> usize {
        let chunks: usize = self
            .chunks
            .iter()
            .map(|c| c.text.capacity() + c.spans.capacity() * std::mem::size_of::<(u32, u32)>())
            .sum();
        chunks
            + self.chunks.capacity() * std::mem::size_of::<LogChunk>()
            + self.run_id.len()
            + self.task_id.len()
    }

    /// The lines, owned.
    pub fn to_lines(&self) -> Vec<LogLine> {
        self.lines().map(|l| l.to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, stream: LogStream, text: &str, time: i64) -> LogLine {
        LogLine {
            run_id: "r".into(),
            seq,
            task_id: "t".into(),
            attempt: 1,
            stream,
            line: text.into(),
            time: DateTime::from_timestamp_nanos(time),
        }
    }

    #[test]
    fn a_batch_numbers_its_lines_across_chunks() {
        let mut out = LogChunk::new(LogStream::Stdout);
        out.extend("a\r\nb\n", [(0, 1), (3, 4)]);
        let mut err = LogChunk::new(LogStream::Stderr);
        err.push("oops");
        let batch = LogBatch::new(
            ("r".into(), "t".into(), 1),
            DateTime::from_timestamp_nanos(5),
            10,
            vec![out, LogChunk::new(LogStream::Stdout), err],
        );
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.last_seq(), 12);
        assert_eq!(batch.chunks().len(), 2, "the empty chunk is dropped");
        assert_eq!(
            batch.to_lines(),
            vec![
                line(10, LogStream::Stdout, "a", 5),
                line(11, LogStream::Stdout, "b", 5),
                line(12, LogStream::Stderr, "oops", 5),
            ]
        );
    }

    #[test]
    fn grouping_keeps_every_line_in_order() {
        let lines = vec![
            line(1, LogStream::Stdout, "a", 1),
            line(2, LogStream::Stderr, "b", 1),
            line(3, LogStream::Stderr, "c", 1),
            line(4, LogStream::Stdout, "d", 2), // another time
            line(6, LogStream::Stdout, "e", 2), // a gap in seq
        ];
        let batches = LogBatch::group(lines.clone());
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].chunks().len(), 2);
        let back: Vec<LogLine> = batches.iter().flat_map(LogBatch::to_lines).collect();
        assert_eq!(back, lines);
        assert!(LogBatch::group(Vec::new()).is_empty());
    }
}

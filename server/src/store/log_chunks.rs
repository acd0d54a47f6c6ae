//! Log lines in SQLite, stored in chunks: the lines one append brings for one stream
//! of one task go into one row, so a chatty task costs a row per batch rather than a
//! row per line. Each line keeps its attempt, sequence number, time and its position
//! in its batch (so that reads give back the exact write order), and the byte cap per
//! stream still drops whole lines, oldest first. The table is `log_chunks` (see the
//! migrations in sqlite/schema.rs).

use chrono::DateTime;
use rusqlite::{params, Connection, OptionalExtension};

use super::{LogLine, LogPage, LogPageLimit, LogPosition, LogStart, StoreError, StoreResult};
use crate::core::log_batch::{LogBatch, LogChunk};
use crate::core::LogStream;

/// One line as a chunk holds it, borrowed from the chunk's blob (or from the lines
/// being appended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkLine<'a> {
    /// Position in its batch.
    pos: u64,
    attempt: u32,
    seq: u64,
    /// Nanoseconds since the Unix epoch.
    time: i64,
    line: &'a str,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

fn get_usize(data: &[u8], at: &mut usize) -> Option<usize> {
    usize::try_from(get_varint(data, at)?).ok()
}

/// How a chunk in the second format begins: a zero written as a two-byte varint,
/// which the first format (a line's position, written shortest) never starts with.
const V2: [u8; 2] = [0x80, 0x00];

// Two formats. The first (written until issue 11's chunked pipeline): per line its
// position, attempt, seq, time and text. The second: `V2`, then segments, each a run of
// lines with consecutive positions and seqs and one attempt and time, said once:
//   pos0, attempt, seq0, time (8 bytes LE), n, text length, text,
//   n × (gap, length): each line's start after the previous line's end (or the text's
//   start), and its length, in bytes of `text` (which may hold separators between lines,
//   as the capture read them: stored as read, in one copy).

/// Appends one segment: `n` lines, spans of `text` (as `(start, end)`, in order).
fn put_segment(
    out: &mut Vec<u8>,
    head: (u64, u32, u64, i64),
    text: &str,
    n: usize,
    spans: impl Iterator<Item = (usize, usize)>,
) {
    let (pos, attempt, seq, time) = head;
    put_varint(out, pos);
    put_varint(out, u64::from(attempt));
    put_varint(out, seq);
    out.extend_from_slice(&time.to_le_bytes());
    put_varint(out, n as u64);
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
    let mut end = 0;
    for (s, e) in spans {
        put_varint(out, (s - end) as u64);
        put_varint(out, (e - s) as u64);
        end = e;
    }
}

/// Lines in the second format, each run of them that can share a segment in one.
fn encode(lines: &[ChunkLine<'_>]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(V2.len() + lines.iter().map(|l| l.line.len() + 2).sum::<usize>());
    out.extend_from_slice(&V2);
    let mut rest = lines;
    while let Some(first) = rest.first() {
        let n = 1 + rest
            .windows(2)
            .take_while(|w| {
                w[1].pos == w[0].pos + 1
                    && w[1].seq == w[0].seq.wrapping_add(1)
                    && w[1].attempt == w[0].attempt
                    && w[1].time == w[0].time
            })
            .count();
        let (run, after) = rest.split_at(n);
        let text: String = run.iter().map(|l| l.line).collect();
        let mut at = 0;
        let spans = run.iter().map(|l| {
            at += l.line.len();
            (at - l.line.len(), at)
        });
        put_segment(
            &mut out,
            (first.pos, first.attempt, first.seq, first.time),
            &text,
            n,
            spans,
        );
        rest = after;
    }
    out
}

/// A chunk's lines, either format.
fn decode(data: &[u8]) -> Option<Vec<ChunkLine<'_>>> {
    match data.strip_prefix(&V2) {
        Some(segments) => decode_v2(segments),
        None => decode_v1(data),
    }
}

fn decode_v1(data: &[u8]) -> Option<Vec<ChunkLine<'_>>> {
    let mut lines = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let pos = get_varint(data, &mut at)?;
        let attempt = u32::try_from(get_varint(data, &mut at)?).ok()?;
        let seq = get_varint(data, &mut at)?;
        let time = i64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?);
        at += 8;
        let len = get_usize(data, &mut at)?;
        let line = std::str::from_utf8(data.get(at..at.checked_add(len)?)?).ok()?;
        at += len;
        lines.push(ChunkLine {
            pos,
            attempt,
            seq,
            time,
            line,
        });
    }
    Some(lines)
}

fn decode_v2(data: &[u8]) -> Option<Vec<ChunkLine<'_>>> {
    let mut lines = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let pos = get_varint(data, &mut at)?;
        let attempt = u32::try_from(get_varint(data, &mut at)?).ok()?;
        let seq = get_varint(data, &mut at)?;
        let time = i64::from_le_bytes(data.get(at..at.checked_add(8)?)?.try_into().ok()?);
        at += 8;
        let n = get_usize(data, &mut at)?;
        let len = get_usize(data, &mut at)?;
        let text = std::str::from_utf8(data.get(at..at.checked_add(len)?)?).ok()?;
        at += len;
        lines.reserve(n.min(data.len()));
        let mut end = 0usize;
        for i in 0..n {
            let start = end.checked_add(get_usize(data, &mut at)?)?;
            end = start.checked_add(get_usize(data, &mut at)?)?;
            lines.push(ChunkLine {
                pos: pos.checked_add(i as u64)?,
                attempt,
                seq: seq.wrapping_add(i as u64),
                time,
                line: text.get(start..end)?,
            });
        }
    }
    Some(lines)
}

fn corrupt(id: i64) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Blob,
        format!("log chunk {id} is corrupt").into(),
    )
}

/// (run id, task id, stream): what the byte cap applies to.
type StreamKey<'a> = (&'a str, &'a str, LogStream);

/// One row an append writes: one stream's lines of one part of the append (`part`: its
/// batch number's offset from the append's first).
struct RowWrite<'a> {
    part: i64,
    key: StreamKey<'a>,
    blob: Vec<u8>,
    count: usize,
    bytes: i64,
}

/// What one append brings to one stream: the bytes it writes, and whether its lines
/// were over the cap on their own (then every older line of the stream goes, and the
/// oldest of these too: they were cut before being written).
struct StreamTotal<'a> {
    key: StreamKey<'a>,
    bytes: i64,
    over: bool,
}

/// The text of a batch one row holds at most (a single chunk may be larger; a chunk is
/// one read of a pipe, 64 KiB at most): a large
/// append is written as several parts, each with its own batch number, so that a page
/// read decodes a row of this size, not the whole append.
const PART_BYTES: usize = 64 * 1024;

/// How many of an append's lines (of one stream, `sizes` their lengths in order,
/// `total` their sum) go before they are written, and whether they are over the cap
/// on their own: the fewest oldest lines that bring them under it.
fn cut_to_cap(sizes: impl Iterator<Item = usize>, total: usize, cap: usize) -> (usize, bool) {
    if total <= cap {
        return (0, false);
    }
    let excess = total - cap;
    let mut dropped = 0;
    let mut cut = 0;
    for size in sizes {
        if dropped >= excess {
            break;
        }
        dropped += size;
        cut += 1;
    }
    (cut, true)
}

/// Refuses an append to a run that is not stored.
fn check_runs<'a>(conn: &Connection, runs: impl IntoIterator<Item = &'a str>) -> StoreResult<()> {
    let failed = |e: rusqlite::Error| StoreError::sqlite("cannot append logs", e);
    let mut exists = conn
        .prepare_cached("SELECT 1 FROM runs WHERE id = ?1")
        .map_err(failed)?;
    for run_id in runs {
        if !exists.exists([run_id]).map_err(failed)? {
            return Err(StoreError::RunNotFound {
                run_id: run_id.to_owned(),
            });
        }
    }
    Ok(())
}

/// Appends `lines` (one batch), then trims each stream they touched back under `cap`.
pub fn append(conn: &Connection, lines: &[LogLine], cap: usize) -> StoreResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    // All lines of a batch usually belong to one run: check each run once.
    let mut runs: Vec<&str> = lines.iter().map(|l| l.run_id.as_str()).collect();
    runs.sort_unstable();
    runs.dedup();
    check_runs(conn, runs)?;
    // Group by stream, in order of first appearance.
    let mut streams: Vec<(StreamKey, Vec<ChunkLine>, usize)> = Vec::new();
    for (pos, l) in lines.iter().enumerate() {
        let key = (l.run_id.as_str(), l.task_id.as_str(), l.stream);
        let line = ChunkLine {
            pos: pos as u64,
            attempt: l.attempt,
            seq: l.seq,
            time: l.time.timestamp_nanos_opt().unwrap_or(i64::MAX),
            line: &l.line,
        };
        match streams.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, chunk, total)) => {
                chunk.push(line);
                *total += l.line.len();
            }
            None => streams.push((key, vec![line], l.line.len())),
        }
    }
    let mut rows = Vec::with_capacity(streams.len());
    let mut totals = Vec::with_capacity(streams.len());
    for (key, lines, total) in streams {
        let (cut, over) = cut_to_cap(lines.iter().map(|l| l.line.len()), total, cap);
        let kept = &lines[cut..];
        let bytes = kept.iter().map(|l| l.line.len() as i64).sum();
        rows.push(RowWrite {
            part: 0,
            key,
            blob: encode(kept),
            count: kept.len(),
            bytes,
        });
        totals.push(StreamTotal { key, bytes, over });
    }
    write_rows(conn, rows, totals, cap)
}

/// Appends a batch as the capture made it: in parts of about [`PART_BYTES`] of text,
/// each stream's lines of a part in one row, each chunk of them one segment whose text
/// is the chunk's own, copied once.
pub fn append_batch(conn: &Connection, batch: &LogBatch, cap: usize) -> StoreResult<()> {
    append_in_parts(conn, batch, cap, PART_BYTES)
}

fn append_in_parts(
    conn: &Connection,
    batch: &LogBatch,
    cap: usize,
    part_limit: usize,
) -> StoreResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    check_runs(conn, [batch.run_id.as_str()])?;
    let time = batch.time.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let key = |stream| (batch.run_id.as_str(), batch.task_id.as_str(), stream);
    // Each stream's lines over the cap on their own are cut, oldest first, before
    // anything is written: `cut` is how many of its lines are still to skip.
    let mut streams: Vec<(StreamTotal, usize)> = Vec::with_capacity(2);
    for chunk in batch.chunks() {
        if streams.iter().any(|(s, _)| s.key.2 == chunk.stream) {
            continue;
        }
        let stream = chunk.stream;
        let of_stream = || batch.chunks().iter().filter(move |c| c.stream == stream);
        let total: usize = of_stream().map(LogChunk::line_bytes).sum();
        let sizes = of_stream().flat_map(|c| c.spans().iter().map(|&(s, e)| (e - s) as usize));
        let (cut, over) = cut_to_cap(sizes, total, cap);
        let total = StreamTotal {
            key: key(stream),
            bytes: 0,
            over,
        };
        streams.push((total, cut));
    }
    let mut rows: Vec<RowWrite> = Vec::new();
    // The rows of the part being filled: at most one per stream.
    let mut open: Vec<RowWrite> = Vec::with_capacity(2);
    let (mut part, mut part_bytes, mut pos, mut seq) = (0i64, 0usize, 0u64, batch.first_seq);
    for chunk in batch.chunks() {
        if part_bytes > 0 && part_bytes + chunk.text().len() > part_limit {
            rows.append(&mut open);
            (part, part_bytes, pos) = (part + 1, 0, 0);
        }
        let n = chunk.len();
        let (total, cut) = streams
            .iter_mut()
            .find(|(s, _)| s.key.2 == chunk.stream)
            .expect("every stream counted");
        if *cut < n {
            let spans = &chunk.spans()[*cut..];
            let (base, end) = (spans[0].0 as usize, spans[spans.len() - 1].1 as usize);
            let skip = *cut as u64;
            let row = match open.iter().position(|r| r.key.2 == chunk.stream) {
                Some(i) => &mut open[i],
                None => {
                    // Room for a part's text and two bytes of span per line of 7.
                    let mut blob = Vec::with_capacity(part_limit.min(PART_BYTES) * 3 / 2);
                    blob.extend_from_slice(&V2);
                    open.push(RowWrite {
                        part,
                        key: key(chunk.stream),
                        blob,
                        count: 0,
                        bytes: 0,
                    });
                    open.last_mut().expect("a row")
                }
            };
            put_segment(
                &mut row.blob,
                (pos + skip, batch.attempt, seq + skip, time),
                &chunk.text()[base..end],
                spans.len(),
                spans
                    .iter()
                    .map(|&(s, e)| (s as usize - base, e as usize - base)),
            );
            let bytes = spans.iter().map(|&(s, e)| i64::from(e - s)).sum::<i64>();
            row.count += spans.len();
            row.bytes += bytes;
            total.bytes += bytes;
        }
        *cut = cut.saturating_sub(n);
        pos += n as u64;
        seq += n as u64;
        part_bytes += chunk.text().len();
    }
    rows.append(&mut open);
    let totals = streams.into_iter().map(|(total, _)| total).collect();
    write_rows(conn, rows, totals, cap)
}

/// Writes one append's rows (from the next batch number on, one per part), then trims
/// each stream it touched back under `cap`.
fn write_rows(
    conn: &Connection,
    rows: Vec<RowWrite<'_>>,
    totals: Vec<StreamTotal<'_>>,
    cap: usize,
) -> StoreResult<()> {
    let failed = |e: rusqlite::Error| StoreError::sqlite("cannot append logs", e);
    let batch: i64 = conn
        .prepare_cached(NEXT_BATCH)
        .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
        .map_err(failed)?;
    {
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO log_chunks (batch, run_id, task_id, stream, lines, count, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(failed)?;
        for w in rows.iter().filter(|w| w.count > 0) {
            let (run_id, task_id, stream) = w.key;
            insert
                .execute(params![
                    batch + w.part,
                    run_id,
                    task_id,
                    stream.as_str(),
                    w.blob,
                    w.count as i64,
                    w.bytes
                ])
                .map_err(failed)?;
        }
    }
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    for w in totals {
        let (run_id, task_id, stream) = w.key;
        let total: i64 = conn
            .prepare_cached(
                "INSERT INTO log_totals (run_id, task_id, stream, bytes) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (run_id, task_id, stream) DO UPDATE SET bytes = bytes + excluded.bytes
                 RETURNING bytes",
            )
            .and_then(|mut upsert| {
                upsert.query_row(params![run_id, task_id, stream.as_str(), w.bytes], |row| {
                    row.get(0)
                })
            })
            .map_err(failed)?;
        // Over the cap on their own, these lines leave nothing older: all of it goes.
        let excess = if w.over { total - w.bytes } else { total - cap };
        if excess > 0 {
            trim(conn, run_id, task_id, stream, excess).map_err(failed)?;
        }
    }
    Ok(())
}

/// Drops the oldest lines of one stream until at least `excess` bytes are gone: whole
/// chunks first, then the first lines of the chunk that straddles the cut.
fn trim(
    conn: &Connection,
    run_id: &str,
    task_id: &str,
    stream: LogStream,
    excess: i64,
) -> rusqlite::Result<()> {
    let mut dropped = 0;
    let mut whole = Vec::new();
    let mut straddling = None;
    {
        let mut oldest = conn.prepare_cached(OLDEST_OF_STREAM)?;
        let mut rows = oldest.query(params![run_id, task_id, stream.as_str()])?;
        while dropped < excess {
            let Some(row) = rows.next()? else { break };
            let (id, bytes): (i64, i64) = (row.get(0)?, row.get(1)?);
            if dropped + bytes <= excess {
                whole.push(id);
                dropped += bytes;
            } else {
                straddling = Some(id);
                break;
            }
        }
    }
    {
        let mut delete = conn.prepare_cached("DELETE FROM log_chunks WHERE id = ?1")?;
        for id in whole {
            delete.execute([id])?;
        }
    }
    if let Some(id) = straddling.filter(|_| dropped < excess) {
        let blob: Vec<u8> = conn
            .prepare_cached("SELECT lines FROM log_chunks WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?;
        let lines = decode(&blob).ok_or_else(|| corrupt(id))?;
        let mut cut = 0;
        while dropped < excess && cut < lines.len() {
            dropped += lines[cut].line.len() as i64;
            cut += 1;
        }
        let lines = &lines[cut..];
        let bytes: i64 = lines.iter().map(|l| l.line.len() as i64).sum();
        conn.prepare_cached(
            "UPDATE log_chunks SET lines = ?2, count = ?3, bytes = ?4 WHERE id = ?1",
        )?
        .execute(params![id, encode(lines), lines.len() as i64, bytes])?;
    }
    conn.prepare_cached(
        "UPDATE log_totals SET bytes = bytes - ?4 WHERE run_id = ?1 AND task_id = ?2 AND stream = ?3",
    )?
    .execute(params![run_id, task_id, stream.as_str(), dropped])?;
    Ok(())
}

/// The next batch number: the index on `batch` makes it one lookup, not a scan.
pub(super) const NEXT_BATCH: &str = "SELECT COALESCE(MAX(batch), 0) + 1 FROM log_chunks";
/// A stream's chunks from the oldest, with their sizes: what trimming reads, from the
/// index alone (migration 6), stopping once it has enough.
pub(super) const OLDEST_OF_STREAM: &str = "SELECT id, bytes FROM log_chunks
     WHERE run_id = ?1 AND task_id = ?2 AND stream = ?3 ORDER BY id";
/// The chunks of a page, from its first batch on, each through its index (migration 3).
pub(super) const PAGE_OF_TASK: &str = "SELECT id, batch, task_id, stream, lines FROM log_chunks
     WHERE run_id = ?1 AND task_id = ?2 AND batch >= ?3 ORDER BY batch";
pub(super) const PAGE_OF_RUN: &str = "SELECT id, batch, task_id, stream, lines FROM log_chunks
     WHERE run_id = ?1 AND batch >= ?2 ORDER BY batch";
/// Chunk line counts from the end, read from the index alone.
pub(super) const TAIL_OF_TASK: &str = "SELECT batch, count FROM log_chunks
     WHERE run_id = ?1 AND task_id = ?2 ORDER BY batch DESC";
pub(super) const TAIL_OF_RUN: &str =
    "SELECT batch, count FROM log_chunks WHERE run_id = ?1 ORDER BY batch DESC";

/// One page of a run's lines (of one task, or all), in write order. The chunks are
/// read in batch order from an index seek at the page's start, so a page costs the
/// chunks it covers (plus the rest of its last batch), never a scan of the whole log.
pub fn read_page(
    conn: &Connection,
    run_id: &str,
    task_id: Option<&str>,
    start: LogStart,
    limit: LogPageLimit,
) -> rusqlite::Result<LogPage> {
    // `skip` lines of the first batch read go before the page starts (a tail's cut).
    let (from, mut skip) = match start {
        LogStart::First => (LogPosition::default(), 0),
        LogStart::At(position) => (position, 0),
        LogStart::Tail(n) => tail_start(conn, run_id, task_id, n)?,
    };
    let first_batch = i64::try_from(from.batch).unwrap_or(i64::MAX);
    let mut stmt;
    let mut rows = match task_id {
        Some(task_id) => {
            stmt = conn.prepare_cached(PAGE_OF_TASK)?;
            stmt.query(params![run_id, task_id, first_batch])?
        }
        None => {
            stmt = conn.prepare_cached(PAGE_OF_RUN)?;
            stmt.query(params![run_id, first_batch])?
        }
    };
    let mut page = PageBuilder {
        page: LogPage::default(),
        bytes: 0,
        limit,
    };
    // The lines of the batch being read: a batch's chunks (one per task and stream)
    // interleave, and only their positions give the write order.
    let mut group: Vec<(u64, LogLine)> = Vec::new();
    let mut group_batch = None;
    loop {
        let row = rows.next()?;
        let batch = row.map(|r| r.get::<_, i64>(1)).transpose()?;
        if group_batch.is_some() && batch != group_batch {
            let done_batch = group_batch.unwrap_or_default() as u64;
            group.sort_by_key(|(pos, _)| *pos);
            for (pos, line) in group.drain(..) {
                if done_batch == from.batch && pos < from.pos {
                    continue;
                }
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                if !page.push(line, done_batch, pos) {
                    return Ok(page.page);
                }
            }
        }
        let Some(row) = row else {
            return Ok(page.page);
        };
        group_batch = batch;
        let id: i64 = row.get(0)?;
        let task: String = row.get(2)?;
        let stream: String = row.get(3)?;
        let stream: LogStream = stream.parse().map_err(|_| corrupt(id))?;
        let blob: Vec<u8> = row.get(4)?;
        for l in decode(&blob).ok_or_else(|| corrupt(id))? {
            group.push((
                l.pos,
                LogLine {
                    run_id: run_id.to_string(),
                    seq: l.seq,
                    task_id: task.clone(),
                    attempt: l.attempt,
                    stream,
                    line: l.line.to_string(),
                    time: DateTime::from_timestamp_nanos(l.time),
                },
            ));
        }
    }
}

/// Fills a page up to its limit; the first line that does not fit is where the next
/// page starts.
struct PageBuilder {
    page: LogPage,
    bytes: usize,
    limit: LogPageLimit,
}

impl PageBuilder {
    /// Adds a line, or, when the page is full, records the line's position as the next
    /// page's start and returns false.
    fn push(&mut self, line: LogLine, batch: u64, pos: u64) -> bool {
        let lines = self.page.lines.len();
        let full = lines >= self.limit.lines.max(1)
            || (lines > 0 && self.bytes.saturating_add(line.line.len()) > self.limit.bytes);
        if full {
            self.page.next = Some(LogPosition { batch, pos });
            return false;
        }
        self.bytes += line.line.len();
        self.page.lines.push(line);
        self.page.last = Some(LogPosition { batch, pos });
        true
    }
}

/// Where the last `n` lines start: the batch holding the n-th line from the end, and
/// how many of that batch's lines come before it. Walks the per-chunk line counts
/// backwards from the end in the covering index, without reading any chunk's lines.
fn tail_start(
    conn: &Connection,
    run_id: &str,
    task_id: Option<&str>,
    n: usize,
) -> rusqlite::Result<(LogPosition, usize)> {
    let mut stmt;
    let mut rows = match task_id {
        Some(task_id) => {
            stmt = conn.prepare_cached(TAIL_OF_TASK)?;
            stmt.query(params![run_id, task_id])?
        }
        None => {
            stmt = conn.prepare_cached(TAIL_OF_RUN)?;
            stmt.query(params![run_id])?
        }
    };
    // Lines in the batches after the one being counted, and that batch's own.
    let mut after = 0usize;
    let mut current: Option<(i64, usize)> = None;
    loop {
        let row = rows.next()?;
        let next = row
            .map(|r| Ok::<_, rusqlite::Error>((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .transpose()?;
        match (current, next) {
            (Some((batch, count)), Some((b, c))) if b == batch => {
                current = Some((batch, count + c.max(0) as usize));
            }
            (Some((batch, count)), next) => {
                if after + count >= n {
                    let position = LogPosition {
                        batch: batch as u64,
                        pos: 0,
                    };
                    return Ok((position, after + count - n));
                }
                after += count;
                match next {
                    Some((b, c)) => current = Some((b, c.max(0) as usize)),
                    None => return Ok((LogPosition::default(), 0)),
                }
            }
            (None, Some((b, c))) => current = Some((b, c.max(0) as usize)),
            (None, None) => return Ok((LogPosition::default(), 0)),
        }
    }
}

/// Deletes the lines of runs that ended before `cutoff` (RFC 3339, as `runs` stores
/// times); returns how many lines went.
pub fn prune(conn: &Connection, cutoff: &str) -> rusqlite::Result<usize> {
    let ended = "SELECT id FROM runs WHERE ended_at IS NOT NULL AND ended_at < ?1";
    let lines: Option<i64> = conn
        .query_row(
            &format!("SELECT SUM(count) FROM log_chunks WHERE run_id IN ({ended})"),
            [cutoff],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    conn.execute(
        &format!("DELETE FROM log_chunks WHERE run_id IN ({ended})"),
        [cutoff],
    )?;
    conn.execute(
        &format!("DELETE FROM log_totals WHERE run_id IN ({ended})"),
        [cutoff],
    )?;
    Ok(lines.unwrap_or(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each append's next batch number and trimming walk, each page's seek and each
    /// tail's walk go through an index that holds exactly what they read: none scans
    /// the chunks, nor sorts them, nor reads chunks of other streams or tasks.
    #[test]
    fn log_queries_use_their_indexes() {
        let conn = Connection::open_in_memory().expect("database");
        for sql in super::super::sqlite::MIGRATIONS {
            conn.execute_batch(sql).expect("migration");
        }
        let cases = [
            (NEXT_BATCH, "COVERING INDEX log_chunks_by_batch"),
            (
                OLDEST_OF_STREAM,
                "COVERING INDEX log_chunks_of_stream (run_id=? AND task_id=? AND stream=?)",
            ),
            (
                PAGE_OF_TASK,
                "INDEX log_chunks_page_of_task (run_id=? AND task_id=? AND batch>?)",
            ),
            (
                PAGE_OF_RUN,
                "INDEX log_chunks_page_of_run (run_id=? AND batch>?)",
            ),
            (
                TAIL_OF_TASK,
                "COVERING INDEX log_chunks_page_of_task (run_id=? AND task_id=?)",
            ),
            (
                TAIL_OF_RUN,
                "COVERING INDEX log_chunks_page_of_run (run_id=?)",
            ),
        ];
        for (sql, index) in cases {
            let plan = crate::store::tests::query_plan(&conn, sql);
            assert!(plan.contains(index), "{sql}\n{plan}");
            assert!(!plan.contains("SCAN log_chunks"), "{sql}\n{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}\n{plan}");
        }
    }

    /// The SQL of every statement prepared on `conn` now, its statement cache included.
    fn prepared_statements(conn: &Connection) -> Vec<String> {
        use rusqlite::ffi;
        let mut statements = Vec::new();
        // SAFETY: `conn` is borrowed, so its handle stays valid throughout; the loop
        // only walks the connection's own list of statements (nothing else runs on it
        // meanwhile) and copies each one's SQL text, which SQLite owns, before moving on.
        unsafe {
            let db = conn.handle();
            let mut stmt = ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
            while !stmt.is_null() {
                let sql = std::ffi::CStr::from_ptr(ffi::sqlite3_sql(stmt));
                statements.push(sql.to_string_lossy().into_owned());
                stmt = ffi::sqlite3_next_stmt(db, stmt);
            }
        }
        statements
    }

    /// Issue 11: an append must cost the same after a million kept chunks as in a new
    /// database. Every statement the append path prepares (each is cached, so all are
    /// still there after it ran, trimming included) seeks by primary key or through a
    /// covering index: none scans the chunks, sorts them, or reads rows it then drops.
    #[test]
    fn appends_run_no_scan() {
        let conn = database();
        let line = |seq: u64, stream: LogStream, text: &str| LogLine {
            run_id: "r1".into(),
            seq,
            task_id: "t".into(),
            attempt: 1,
            stream,
            line: text.into(),
            time: DateTime::from_timestamp_nanos(0),
        };
        // A 10-byte cap: the third append drops a whole chunk and cuts into another.
        append(&conn, &[line(1, LogStream::Stdout, "aaaa")], 10).expect("append");
        append(
            &conn,
            &[
                line(2, LogStream::Stdout, "bbbb"),
                line(3, LogStream::Stderr, "e"),
            ],
            10,
        )
        .expect("append");
        append(
            &conn,
            &[
                line(4, LogStream::Stdout, "cc"),
                line(5, LogStream::Stdout, "dddddd"),
            ],
            10,
        )
        .expect("append");
        let statements = prepared_statements(&conn);
        let kept: Vec<String> = read_page(
            &conn,
            "r1",
            Some("t"),
            LogStart::First,
            LogPageLimit {
                lines: 100,
                bytes: 1000,
            },
        )
        .expect("read")
        .lines
        .into_iter()
        .map(|l| l.line)
        .collect();
        assert_eq!(
            kept,
            ["e", "cc", "dddddd"],
            "trimmed, so trimming's queries ran"
        );

        for expected in [
            "MAX(batch)",
            "INSERT INTO log_chunks",
            "DELETE FROM log_chunks",
            "UPDATE log_chunks",
        ] {
            assert!(
                statements.iter().any(|sql| sql.contains(expected)),
                "the append path prepared no '{expected}': {statements:#?}"
            );
        }
        for sql in &statements {
            let plan = crate::store::tests::query_plan(&conn, sql);
            // Each step a seek that reads only rows it keeps: by primary key, or in an
            // index that holds every column it needs (none filters rows after a seek).
            for step in plan.lines() {
                let seek = step.starts_with("SEARCH ")
                    && ["PRIMARY KEY", "COVERING INDEX"]
                        .iter()
                        .any(|how| step.contains(how));
                assert!(seek, "{sql}\n{plan}");
            }
        }
    }

    #[test]
    fn encoding_round_trips() {
        let lines = vec![
            ChunkLine {
                pos: 0,
                attempt: 1,
                seq: 1,
                time: 1_700_000_000_123_456_789,
                line: "hello",
            },
            ChunkLine {
                pos: 1,
                attempt: 1,
                seq: 2,
                time: 1_700_000_000_123_456_789,
                line: "",
            },
            ChunkLine {
                pos: 300,
                attempt: 70000,
                seq: u64::MAX,
                time: -5,
                line: "multi\nline é",
            },
            ChunkLine {
                pos: 2,
                attempt: 0,
                seq: 0,
                time: 0,
                line: "",
            },
        ];
        let blob = encode(&lines);
        assert!(blob.starts_with(&V2));
        assert_eq!(decode(&blob), Some(lines.clone()));
        assert_eq!(decode(&encode(&[])), Some(Vec::new()));
        assert_eq!(decode(&[0x80]), None, "a truncated varint is corrupt");
        for len in 3..blob.len() {
            // Every cut of a blob is corrupt, or a whole segment short (never a panic).
            if let Some(got) = decode(&blob[..len]) {
                assert!(got.len() < lines.len() && lines.starts_with(&got));
            }
        }
        let mut bad = encode(&lines[..1]);
        let at = bad.len() - 3;
        bad[at] = 0xff; // invalid UTF-8 in the text
        assert_eq!(decode(&bad), None);
    }

    /// The first format, as it was written: chunks stored before the second format
    /// existed still read.
    fn encode_v1(lines: &[ChunkLine<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            put_varint(&mut out, l.pos);
            put_varint(&mut out, u64::from(l.attempt));
            put_varint(&mut out, l.seq);
            out.extend_from_slice(&l.time.to_le_bytes());
            put_varint(&mut out, l.line.len() as u64);
            out.extend_from_slice(l.line.as_bytes());
        }
        out
    }

    #[test]
    fn the_first_format_still_reads() {
        let lines = vec![
            ChunkLine {
                pos: 0,
                attempt: 1,
                seq: 1,
                time: 7,
                line: "old",
            },
            ChunkLine {
                pos: 128,
                attempt: 2,
                seq: 9,
                time: -1,
                line: "é",
            },
        ];
        let blob = encode_v1(&lines);
        assert!(!blob.starts_with(&V2));
        assert_eq!(decode(&blob), Some(lines.clone()));
        assert_eq!(decode(&encode_v1(&lines[1..])), Some(lines[1..].to_vec()));
        let short = encode_v1(&lines[..1]);
        assert_eq!(decode(&short[..10]), None);
    }

    #[test]
    fn cutting_to_the_cap_drops_the_fewest_oldest_lines() {
        let cases: [(&[usize], usize, (usize, bool)); 6] = [
            (&[3, 3], 6, (0, false)),
            (&[3, 3], 5, (1, true)),
            (&[1, 1, 5], 5, (2, true)),
            (&[1, 1, 5], 4, (3, true)),
            (&[9], 4, (1, true)),
            (&[], 0, (0, false)),
        ];
        for (sizes, cap, expected) in cases {
            let total = sizes.iter().sum();
            assert_eq!(
                cut_to_cap(sizes.iter().copied(), total, cap),
                expected,
                "{sizes:?} under {cap}"
            );
        }
    }

    fn database() -> Connection {
        let conn = Connection::open_in_memory().expect("database");
        for sql in super::super::sqlite::MIGRATIONS {
            conn.execute_batch(sql).expect("migration");
        }
        conn.execute(
            "INSERT INTO runs (id, job_id, status, \"trigger\", params, created_at)
             VALUES ('r1', 'job', 'running', 'manual', '{}', '2026-01-01T00:00:00Z')",
            [],
        )
        .expect("a run");
        conn
    }

    fn everything(conn: &Connection) -> Vec<LogLine> {
        read_page(
            conn,
            "r1",
            None,
            LogStart::First,
            LogPageLimit {
                lines: 1_000_000,
                bytes: usize::MAX,
            },
        )
        .expect("read")
        .lines
    }

    /// A batch appended as the capture made it is stored exactly as its lines appended
    /// one by one would be: the same lines kept, in the same order, at the same
    /// positions, whatever the cap cuts (older appends, or the batch itself).
    #[test]
    fn a_batch_is_stored_as_its_lines_would_be() {
        let chunk = |stream: LogStream, text: &str| {
            let mut c = LogChunk::new(stream);
            let mut at = 0;
            let mut spans = Vec::new();
            for piece in text.split_inclusive('\n') {
                let body = piece.trim_end_matches('\n').trim_end_matches('\r');
                spans.push((at, at + body.len()));
                at += piece.len();
            }
            c.extend(text, spans);
            c
        };
        let batch = |first_seq: u64, chunks: Vec<LogChunk>| {
            LogBatch::new(
                ("r1".into(), "t".into(), 2),
                DateTime::from_timestamp_nanos(1_000 + first_seq as i64),
                first_seq,
                chunks,
            )
        };
        let batches = vec![
            batch(1, vec![chunk(LogStream::Stdout, "aa\r\nbbb\n")]),
            batch(
                3,
                vec![
                    chunk(LogStream::Stdout, "c\n"),
                    chunk(LogStream::Stderr, "e1\ne2\n"),
                    chunk(LogStream::Stdout, "dddd\n\n"),
                ],
            ),
            // Over a 10-byte cap on its own: all older stdout goes, and its first lines.
            batch(
                8,
                vec![chunk(LogStream::Stdout, "123456\n78\n9\nabcdefgh\n")],
            ),
            batch(12, vec![chunk(LogStream::Stderr, "x\n")]),
            batch(13, vec![chunk(LogStream::Stdout, "0123456789A\n")]),
        ];
        for cap in [1, 4, 5, 10, 11, 12, 20, 1_000] {
            let (by_batch, by_line) = (database(), database());
            for b in &batches {
                append_batch(&by_batch, b, cap).expect("append a batch");
                append(&by_line, &b.to_lines(), cap).expect("append lines");
                assert_eq!(everything(&by_batch), everything(&by_line), "cap {cap}");
                for (task, start) in [(Some("t"), LogStart::Tail(2)), (None, LogStart::Tail(3))] {
                    let limit = LogPageLimit {
                        lines: 2,
                        bytes: 100,
                    };
                    assert_eq!(
                        read_page(&by_batch, "r1", task, start, limit).expect("read"),
                        read_page(&by_line, "r1", task, start, limit).expect("read"),
                        "cap {cap}"
                    );
                }
            }
            let totals = |conn: &Connection| -> Vec<(String, i64)> {
                let mut stmt = conn
                    .prepare("SELECT stream, bytes FROM log_totals ORDER BY stream")
                    .expect("totals");
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .expect("totals")
                    .map(|r| r.expect("total"))
                    .collect()
            };
            assert_eq!(totals(&by_batch), totals(&by_line), "cap {cap}");
            let kept: i64 = everything(&by_batch)
                .iter()
                .map(|l| l.line.len() as i64)
                .sum();
            assert_eq!(totals(&by_batch).iter().map(|t| t.1).sum::<i64>(), kept);
        }
        let all = everything(&{
            let conn = database();
            for b in &batches {
                append_batch(&conn, b, 1_000).expect("append");
            }
            conn
        });
        let texts: Vec<&str> = all.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(
            texts,
            [
                "aa",
                "bbb",
                "c",
                "e1",
                "e2",
                "dddd",
                "",
                "123456",
                "78",
                "9",
                "abcdefgh",
                "x",
                "0123456789A"
            ]
        );
        assert_eq!(
            all.iter().map(|l| l.seq).collect::<Vec<_>>(),
            (1..=13).collect::<Vec<_>>()
        );

        // Written in parts (here of a chunk or two each), a batch keeps the same lines,
        // totals and trims, and pages read across the parts give each line once.
        let one_batch = batch(
            1,
            batches.iter().flat_map(|b| b.chunks().to_vec()).collect(),
        );
        for part_limit in [1, 5, 12] {
            for cap in [1, 5, 10, 12, 20, 1_000] {
                let (in_parts, by_line) = (database(), database());
                for b in [&one_batch, &batches[1], &one_batch] {
                    let mut b = b.clone();
                    b.first_seq = everything(&in_parts).last().map_or(1, |l| l.seq + 1);
                    append_in_parts(&in_parts, &b, cap, part_limit).expect("append");
                    append(&by_line, &b.to_lines(), cap).expect("append lines");
                }
                let want = everything(&by_line);
                assert_eq!(everything(&in_parts), want, "parts {part_limit} cap {cap}");
                let rows: i64 = in_parts
                    .query_row("SELECT COUNT(DISTINCT batch) FROM log_chunks", [], |r| {
                        r.get(0)
                    })
                    .expect("rows");
                assert!(cap < 20 || rows > 3, "parts {part_limit}: {rows} batches");
                let mut paged = Vec::new();
                let mut start = LogStart::First;
                loop {
                    let limit = LogPageLimit {
                        lines: 2,
                        bytes: 100,
                    };
                    let page = read_page(&in_parts, "r1", Some("t"), start, limit).expect("read");
                    paged.extend(page.lines);
                    match page.next {
                        Some(next) => start = LogStart::At(next),
                        None => break,
                    }
                }
                assert_eq!(paged, want, "paged, parts {part_limit} cap {cap}");
                let tail = read_page(
                    &in_parts,
                    "r1",
                    None,
                    LogStart::Tail(3),
                    LogPageLimit {
                        lines: 100,
                        bytes: 1000,
                    },
                )
                .expect("tail");
                assert_eq!(tail.lines, want[want.len().saturating_sub(3)..]);
            }
        }
    }
}

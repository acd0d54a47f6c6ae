//! Log lines in SQLite, stored in chunks: the lines one append brings for one stream
//! of one task go into one row, so a chatty task costs a row per batch rather than a
//! row per line. Each line keeps its attempt, sequence number, time and its position
//! in its batch (so that reads give back the exact write order), and the byte cap per
//! stream still drops whole lines, oldest first. The table is `log_chunks` (see the
//! migrations in sqlite/schema.rs).

use chrono::DateTime;
use rusqlite::{params, Connection, OptionalExtension};

use super::{LogLine, LogPage, LogPageLimit, LogPosition, LogStart, StoreError, StoreResult};
use crate::core::LogStream;

/// One line as a chunk holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChunkLine {
    /// Position in its batch.
    pos: u64,
    attempt: u32,
    seq: u64,
    /// Nanoseconds since the Unix epoch.
    time: i64,
    line: String,
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

fn encode(lines: &[ChunkLine]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.line.len() + 16).sum());
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

fn decode(data: &[u8]) -> Option<Vec<ChunkLine>> {
    let mut lines = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let pos = get_varint(data, &mut at)?;
        let attempt = u32::try_from(get_varint(data, &mut at)?).ok()?;
        let seq = get_varint(data, &mut at)?;
        let time = i64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?);
        at += 8;
        let len = usize::try_from(get_varint(data, &mut at)?).ok()?;
        let line = String::from_utf8(data.get(at..at + len)?.to_vec()).ok()?;
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

fn corrupt(id: i64) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Blob,
        format!("log chunk {id} is corrupt").into(),
    )
}

/// (run id, task id, stream): what the byte cap applies to.
type StreamKey<'a> = (&'a str, &'a str, LogStream);

/// Appends `lines` (one batch), then trims each stream they touched back under `cap`.
pub fn append(conn: &Connection, lines: &[LogLine], cap: usize) -> StoreResult<()> {
    let failed = |e: rusqlite::Error| StoreError::sqlite("cannot append logs", e);
    if lines.is_empty() {
        return Ok(());
    }
    // All lines of a batch usually belong to one run: check each run once.
    let mut runs: Vec<&str> = lines.iter().map(|l| l.run_id.as_str()).collect();
    runs.sort_unstable();
    runs.dedup();
    {
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
    }
    // Group by stream, in order of first appearance.
    let mut chunks: Vec<(StreamKey, Vec<ChunkLine>, i64)> = Vec::new();
    for (pos, l) in lines.iter().enumerate() {
        let key = (l.run_id.as_str(), l.task_id.as_str(), l.stream);
        let line = ChunkLine {
            pos: pos as u64,
            attempt: l.attempt,
            seq: l.seq,
            time: l.time.timestamp_nanos_opt().unwrap_or(i64::MAX),
            line: l.line.clone(),
        };
        let bytes = l.line.len() as i64;
        match chunks.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, chunk, total)) => {
                chunk.push(line);
                *total += bytes;
            }
            None => chunks.push((key, vec![line], bytes)),
        }
    }
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
        for ((run_id, task_id, stream), chunk, bytes) in &chunks {
            insert
                .execute(params![
                    batch,
                    run_id,
                    task_id,
                    stream.as_str(),
                    encode(chunk),
                    chunk.len() as i64,
                    bytes
                ])
                .map_err(failed)?;
        }
    }
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    for ((run_id, task_id, stream), _, bytes) in chunks {
        let total: i64 = conn
            .prepare_cached(
                "INSERT INTO log_totals (run_id, task_id, stream, bytes) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (run_id, task_id, stream) DO UPDATE SET bytes = bytes + excluded.bytes
                 RETURNING bytes",
            )
            .and_then(|mut upsert| {
                upsert.query_row(params![run_id, task_id, stream.as_str(), bytes], |row| {
                    row.get(0)
                })
            })
            .map_err(failed)?;
        if total > cap {
            trim(conn, run_id, task_id, stream, total - cap).map_err(failed)?;
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
        let mut lines = decode(&blob).ok_or_else(|| corrupt(id))?;
        let mut cut = 0;
        while dropped < excess && cut < lines.len() {
            dropped += lines[cut].line.len() as i64;
            cut += 1;
        }
        lines.drain(..cut);
        let bytes: i64 = lines.iter().map(|l| l.line.len() as i64).sum();
        conn.prepare_cached(
            "UPDATE log_chunks SET lines = ?2, count = ?3, bytes = ?4 WHERE id = ?1",
        )?
        .execute(params![id, encode(&lines), lines.len() as i64, bytes])?;
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
                    line: l.line,
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
                line: "hello".into(),
            },
            ChunkLine {
                pos: 300,
                attempt: 70000,
                seq: u64::MAX,
                time: -5,
                line: "multi\nline é".into(),
            },
            ChunkLine {
                pos: 2,
                attempt: 0,
                seq: 0,
                time: 0,
                line: String::new(),
            },
        ];
        assert_eq!(decode(&encode(&lines)), Some(lines));
        assert_eq!(decode(&[0x80]), None, "a truncated varint is corrupt");
        assert_eq!(
            decode(
                &encode(&[ChunkLine {
                    pos: 0,
                    attempt: 0,
                    seq: 0,
                    time: 0,
                    line: "x".into()
                }])[..10]
            ),
            None
        );
    }
}

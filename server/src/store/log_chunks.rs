//! Log lines in SQLite, stored in chunks: the lines one append brings for one stream
//! of one task go into one row, so a chatty task costs a row per batch rather than a
//! row per line. Each line keeps its attempt, sequence number, time and its position
//! in its batch (so that reads give back the exact write order), and the byte cap per
//! stream still drops whole lines, oldest first. The table is `log_chunks` (see the
//! migrations in sqlite.rs).

use chrono::DateTime;
use rusqlite::{params, Connection, OptionalExtension};

use super::{LogRecord, StoreError, StoreResult};
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
pub fn append(conn: &Connection, lines: &[LogRecord], cap: usize) -> StoreResult<()> {
    let failed = |e: rusqlite::Error| StoreError(format!("cannot append logs: {e}"));
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
                return Err(StoreError(format!(
                    "cannot append logs: run '{run_id}' not found"
                )));
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
        .query_row(
            "SELECT COALESCE(MAX(batch), 0) + 1 FROM log_chunks",
            [],
            |r| r.get(0),
        )
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
        let mut oldest = conn.prepare_cached(
            "SELECT id, bytes FROM log_chunks WHERE run_id = ?1 AND task_id = ?2 AND stream = ?3 ORDER BY id",
        )?;
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
        let blob: Vec<u8> =
            conn.query_row("SELECT lines FROM log_chunks WHERE id = ?1", [id], |r| {
                r.get(0)
            })?;
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

/// The lines of a run (of one task, or all), in write order.
pub fn read(
    conn: &Connection,
    run_id: &str,
    task_id: Option<&str>,
) -> rusqlite::Result<Vec<LogRecord>> {
    let sql = match task_id {
        Some(_) => "SELECT id, batch, task_id, stream, lines FROM log_chunks WHERE run_id = ?1 AND task_id = ?2 ORDER BY id",
        None => "SELECT id, batch, task_id, stream, lines FROM log_chunks WHERE run_id = ?1 ORDER BY id",
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = match task_id {
        Some(task_id) => stmt.query(params![run_id, task_id])?,
        None => stmt.query(params![run_id])?,
    };
    let mut keyed: Vec<((i64, u64), LogRecord)> = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let batch: i64 = row.get(1)?;
        let task: String = row.get(2)?;
        let stream: String = row.get(3)?;
        let stream: LogStream = stream.parse().map_err(|_| corrupt(id))?;
        let blob: Vec<u8> = row.get(4)?;
        for l in decode(&blob).ok_or_else(|| corrupt(id))? {
            keyed.push((
                (batch, l.pos),
                LogRecord {
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
    keyed.sort_by_key(|(k, _)| *k);
    Ok(keyed.into_iter().map(|(_, l)| l).collect())
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

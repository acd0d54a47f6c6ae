//! Log lines in PostgreSQL, one row per line: appends (one `INSERT … unnest` per
//! append, its batch number from a sequence, fenced like every write of a claimed
//! run), the byte cap per stream (oldest lines dropped whole, found from the index of
//! the stream without reading a line), pages (an index seek at the page's start, rows
//! read in small steps until the page is full, so a page costs its own size), tails,
//! and pruning.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Client, GenericClient, Transaction};
use tokio_postgres::IsolationLevel;

use super::rows::{ns, pg};
use super::write::fenced;
use super::{execute, query, query_opt};
use crate::store::{
    Lease, LogLine, LogPage, LogPageLimit, LogPosition, LogStart, NoteKind, StoreError, StoreResult,
};

/// Rows a page or a trim reads per step.
const STEP: usize = 256;

/// Appends `lines` (one batch), then trims each stream they touched back under `cap`.
/// Sends one `Logs` note per run.
pub(super) async fn append(
    tx: &Transaction<'_>,
    lines: &[LogLine],
    cap: usize,
    lease: Option<&Lease>,
) -> StoreResult<Vec<NoteKind>> {
    let failed = || pg("cannot append logs");
    let mut runs: Vec<&str> = lines.iter().map(|l| l.run_id.as_str()).collect();
    runs.sort_unstable();
    runs.dedup();
    // The runs' rows held (shared) until commit, so a takeover cannot slip between
    // the owner check and the lines; locked in id order, as takeovers lock them.
    let owners = query(
        tx,
        "SELECT id, node_id, node_epoch FROM runs WHERE id = ANY($1) ORDER BY id FOR SHARE",
        &[&runs],
    )
    .await
    .map_err(failed())?;
    for run_id in &runs {
        let Some(row) = owners.iter().find(|row| row.get::<_, &str>(0) == *run_id) else {
            return Err(StoreError::RunNotFound {
                run_id: (*run_id).to_owned(),
            });
        };
        if fenced(row.get(1), row.get(2), lease) {
            return Err(StoreError::Fenced {
                run_id: (*run_id).to_owned(),
            });
        }
    }

    let mut columns = LineColumns::default();
    for (pos, line) in lines.iter().enumerate() {
        columns.push(pos as i64, line)?;
    }
    execute(
        tx,
        // One batch number for the whole append: the CTE draws it once.
        "WITH append AS (SELECT nextval('log_batches') AS batch)
         INSERT INTO log_lines (batch, run_id, pos, task_id, stream, attempt, seq, time, line,
             bytes)
         SELECT append.batch, lines.* FROM append, unnest($1::text[], $2::bigint[],
             $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bytea[],
             $9::int[]) AS lines",
        &[
            &columns.run_id,
            &columns.pos,
            &columns.task_id,
            &columns.stream,
            &columns.attempt,
            &columns.seq,
            &columns.time,
            &columns.line,
            &columns.bytes,
        ],
    )
    .await
    .map_err(failed())?;

    // Bytes added per stream, in key order: two appends lock the streams' totals in
    // the same order, so they cannot deadlock.
    let mut streams: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
    for l in lines {
        let key = (l.run_id.as_str(), l.task_id.as_str(), l.stream.as_str());
        *streams.entry(key).or_default() += l.line.len() as i64;
    }
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    for ((run_id, task_id, stream), bytes) in streams {
        let total: i64 = query_opt(
            tx,
            "INSERT INTO log_totals (run_id, task_id, stream, bytes) VALUES ($1, $2, $3, $4)
             ON CONFLICT (run_id, task_id, stream)
                 DO UPDATE SET bytes = log_totals.bytes + excluded.bytes
             RETURNING bytes",
            &[&run_id, &task_id, &stream, &bytes],
        )
        .await
        .map_err(failed())?
        .map_or(0, |row| row.get(0));
        if total > cap {
            trim(tx, run_id, task_id, stream, total - cap).await?;
        }
    }
    Ok(runs
        .into_iter()
        .map(|run_id| NoteKind::Logs {
            run_id: run_id.to_owned(),
        })
        .collect())
}

/// An append's lines, column by column, for one `unnest` insert.
#[derive(Default)]
struct LineColumns<'a> {
    run_id: Vec<&'a str>,
    pos: Vec<i64>,
    task_id: Vec<&'a str>,
    stream: Vec<&'static str>,
    attempt: Vec<i64>,
    seq: Vec<i64>,
    time: Vec<i64>,
    line: Vec<&'a [u8]>,
    bytes: Vec<i32>,
}

impl<'a> LineColumns<'a> {
    fn push(&mut self, pos: i64, l: &'a LogLine) -> StoreResult<()> {
        self.run_id.push(&l.run_id);
        self.pos.push(pos);
        self.task_id.push(&l.task_id);
        self.stream.push(l.stream.as_str());
        self.attempt.push(i64::from(l.attempt));
        // Kept bit for bit: a sequence number past i64::MAX reads back the same.
        self.seq.push(l.seq as i64);
        self.time.push(ns(&l.time)?);
        self.line.push(l.line.as_bytes());
        self.bytes.push(i32::try_from(l.line.len()).map_err(|_| {
            StoreError::Invalid(format!(
                "a log line of {} bytes is too long to keep",
                l.line.len()
            ))
        })?);
        Ok(())
    }
}

/// Drops the oldest lines of one stream until at least `excess` bytes are gone.
async fn trim(
    tx: &Transaction<'_>,
    run_id: &str,
    task_id: &str,
    stream: &str,
    excess: i64,
) -> StoreResult<()> {
    let failed = || pg("cannot trim logs");
    let mut dropped = 0i64;
    let mut cut: Option<(i64, i64)> = None;
    let step = STEP as i64;
    'walk: loop {
        let (after_batch, after_pos) = cut.unwrap_or((-1, -1));
        let rows = query(
            tx,
            OLDEST_OF_STREAM,
            &[&run_id, &task_id, &stream, &after_batch, &after_pos, &step],
        )
        .await
        .map_err(failed())?;
        let last_step = rows.len() < STEP;
        for row in &rows {
            dropped += i64::from(row.get::<_, i32>(2));
            cut = Some((row.get(0), row.get(1)));
            if dropped >= excess {
                break 'walk;
            }
        }
        if last_step {
            break;
        }
    }
    let Some((batch, pos)) = cut else {
        return Ok(());
    };
    execute(tx, CUT_STREAM, &[&run_id, &task_id, &stream, &batch, &pos])
        .await
        .map_err(failed())?;
    execute(
        tx,
        "UPDATE log_totals SET bytes = bytes - $4
         WHERE run_id = $1 AND task_id = $2 AND stream = $3",
        &[&run_id, &task_id, &stream, &dropped],
    )
    .await
    .map_err(failed())?;
    Ok(())
}

/// A stored position as the table keeps it (a start past any stored one stays so).
fn stored(position: LogPosition) -> (i64, i64) {
    (
        i64::try_from(position.batch).unwrap_or(i64::MAX),
        i64::try_from(position.pos).unwrap_or(i64::MAX),
    )
}

/// One page of a run's lines (of one task, or all), in write order, read from one
/// snapshot (a tail's start and its lines agree).
pub(super) async fn page(
    client: &mut Client,
    run_id: &str,
    task_id: Option<&str>,
    start: LogStart,
    limit: LogPageLimit,
) -> StoreResult<LogPage> {
    let failed = || pg("cannot read logs");
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(failed())?;
    let from = match start {
        LogStart::First => (-1, -1),
        LogStart::At(position) => stored(position),
        LogStart::Tail(0) => return Ok(LogPage::default()),
        LogStart::Tail(n) => tail_start(&tx, run_id, task_id, n).await?,
    };
    let mut page = PageBuilder {
        page: LogPage::default(),
        bytes: 0,
        limit,
    };
    let mut from = from;
    loop {
        let want = limit.lines.max(1).saturating_sub(page.page.lines.len()) + 1;
        let step = want.min(STEP) as i64;
        let rows = read_step(&tx, run_id, task_id, from, step).await?;
        let last_step = rows.len() < step as usize;
        for row in &rows {
            let (line, position) = line_from_row(run_id, row)?;
            if !page.push(line, position) {
                return Ok(page.page);
            }
            from = stored(position.successor());
        }
        if last_step {
            return Ok(page.page);
        }
    }
}

/// A page's rows from a position on, each through its index (schema.rs): a seek,
/// then rows in order, never a scan of the log or a sort.
pub(super) const PAGE_OF_RUN: &str = "SELECT batch, pos, task_id, stream, attempt, seq, time, line
     FROM log_lines WHERE run_id = $1 AND (batch, pos) >= ($2, $3)
     ORDER BY batch, pos LIMIT $4";
pub(super) const PAGE_OF_TASK: &str = "SELECT batch, pos, task_id, stream, attempt, seq, time, line
     FROM log_lines WHERE run_id = $1 AND task_id = $2 AND (batch, pos) >= ($3, $4)
     ORDER BY batch, pos LIMIT $5";
/// The n-th line from the end, walking the same indexes backwards.
pub(super) const TAIL_OF_RUN: &str = "SELECT batch, pos FROM log_lines WHERE run_id = $1
     ORDER BY batch DESC, pos DESC OFFSET $2 LIMIT 1";
pub(super) const TAIL_OF_TASK: &str =
    "SELECT batch, pos FROM log_lines WHERE run_id = $1 AND task_id = $2
     ORDER BY batch DESC, pos DESC OFFSET $3 LIMIT 1";
/// A stream's oldest lines and their sizes, from the index alone, for trimming.
pub(super) const OLDEST_OF_STREAM: &str = "SELECT batch, pos, bytes FROM log_lines
     WHERE run_id = $1 AND task_id = $2 AND stream = $3 AND (batch, pos) > ($4, $5)
     ORDER BY batch, pos LIMIT $6";
pub(super) const CUT_STREAM: &str = "DELETE FROM log_lines
     WHERE run_id = $1 AND task_id = $2 AND stream = $3 AND (batch, pos) <= ($4, $5)";

async fn read_step<C: GenericClient + Sync>(
    client: &C,
    run_id: &str,
    task_id: Option<&str>,
    (batch, pos): (i64, i64),
    step: i64,
) -> StoreResult<Vec<tokio_postgres::Row>> {
    match task_id {
        Some(task_id) => {
            query(
                client,
                PAGE_OF_TASK,
                &[&run_id, &task_id, &batch, &pos, &step],
            )
            .await
        }
        None => query(client, PAGE_OF_RUN, &[&run_id, &batch, &pos, &step]).await,
    }
    .map_err(pg("cannot read logs"))
}

/// Where the last `n` lines start: the n-th line from the end, found by walking the
/// index backwards (in proportion to `n`, the page asked for).
async fn tail_start<C: GenericClient + Sync>(
    client: &C,
    run_id: &str,
    task_id: Option<&str>,
    n: usize,
) -> StoreResult<(i64, i64)> {
    let skip = i64::try_from(n - 1).unwrap_or(i64::MAX);
    let row = match task_id {
        Some(task_id) => query_opt(client, TAIL_OF_TASK, &[&run_id, &task_id, &skip]).await,
        None => query_opt(client, TAIL_OF_RUN, &[&run_id, &skip]).await,
    }
    .map_err(pg("cannot read logs"))?;
    // Fewer lines than asked: all of them.
    Ok(row.map_or((-1, -1), |row| (row.get(0), row.get(1))))
}

fn line_from_row(run_id: &str, row: &tokio_postgres::Row) -> StoreResult<(LogLine, LogPosition)> {
    let corrupt = |detail: String| StoreError::Corrupt {
        context: format!("cannot read the logs of run '{run_id}'"),
        detail,
    };
    let batch: i64 = row.get(0);
    let pos: i64 = row.get(1);
    let stream: &str = row.get(3);
    let attempt: i64 = row.get(4);
    let seq: i64 = row.get(5);
    let line: Vec<u8> = row.get(7);
    let line = LogLine {
        run_id: run_id.to_owned(),
        seq: seq as u64,
        task_id: row.get(2),
        attempt: u32::try_from(attempt).map_err(|_| corrupt(format!("attempt {attempt}")))?,
        stream: stream
            .parse()
            .map_err(|_| corrupt(format!("stream '{stream}'")))?,
        line: String::from_utf8(line).map_err(|e| corrupt(e.to_string()))?,
        time: DateTime::<Utc>::from_timestamp_nanos(row.get(6)),
    };
    let position = LogPosition {
        batch: u64::try_from(batch).map_err(|_| corrupt(format!("batch {batch}")))?,
        pos: u64::try_from(pos).map_err(|_| corrupt(format!("pos {pos}")))?,
    };
    Ok((line, position))
}

/// Fills a page up to its limit; the first line that does not fit is where the next
/// page starts (the same rule as the SQLite store's).
struct PageBuilder {
    page: LogPage,
    bytes: usize,
    limit: LogPageLimit,
}

impl PageBuilder {
    fn push(&mut self, line: LogLine, position: LogPosition) -> bool {
        let lines = self.page.lines.len();
        let full = lines >= self.limit.lines.max(1)
            || (lines > 0 && self.bytes.saturating_add(line.line.len()) > self.limit.bytes);
        if full {
            self.page.next = Some(position);
            return false;
        }
        self.bytes += line.line.len();
        self.page.lines.push(line);
        self.page.last = Some(position);
        true
    }
}

/// Deletes the lines of runs that ended before `cutoff`; returns how many went.
pub(super) async fn prune(tx: &Transaction<'_>, cutoff: DateTime<Utc>) -> StoreResult<u64> {
    let failed = || pg("cannot prune logs");
    let cutoff = ns(&cutoff)?;
    let ended = "SELECT id FROM runs WHERE ended_at IS NOT NULL AND ended_at < $1";
    let gone = execute(
        tx,
        &format!("DELETE FROM log_lines WHERE run_id IN ({ended})"),
        &[&cutoff],
    )
    .await
    .map_err(failed())?;
    execute(
        tx,
        &format!("DELETE FROM log_totals WHERE run_id IN ({ended})"),
        &[&cutoff],
    )
    .await
    .map_err(failed())?;
    Ok(gone)
}

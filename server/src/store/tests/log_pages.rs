//! Conformance checks for reading logs by page: first, middle and last pages, the
//! byte bound, tails, starts past the end, and starts that outlive trimming.

use super::{lines, log, run, task, Subject};
use crate::core::{LogStream, RunStatus};
use crate::store::{LogLine, LogPage, LogPageLimit, LogPosition, LogStart, StoreResult};

fn by_lines(lines: usize) -> LogPageLimit {
    LogPageLimit {
        lines,
        bytes: usize::MAX,
    }
}

/// Run r1 with tasks a and b: 12 appends of 5 lines each, tasks and streams
/// interleaved inside each append; returns the lines in write order. Each stream gets
/// at most 15 lines of 2-3 bytes, under the suite's byte cap, so nothing is trimmed.
async fn interleaved_log(subject: &Subject) -> StoreResult<Vec<LogLine>> {
    let store = subject.store();
    store
        .create_run(
            run("r1", "job", RunStatus::Running, 1),
            vec![task("r1", "a"), task("r1", "b")],
        )
        .await?;
    use LogStream::{Stderr, Stdout};
    let mut written = Vec::new();
    let mut seq = [0u64; 2];
    for batch in 0..12 {
        let mut lines = Vec::new();
        for i in 0..5 {
            let n = batch * 5 + i;
            let (t, task_id) = if n % 3 == 0 { (1, "b") } else { (0, "a") };
            let stream = if n % 2 == 0 { Stdout } else { Stderr };
            seq[t] += 1;
            lines.push(log("r1", task_id, stream, seq[t], &format!("{task_id}{n}")));
        }
        store.append_logs(lines.clone()).await?;
        written.extend(lines);
    }
    Ok(written)
}

/// Every page from `start` on, following `next`.
async fn all_pages(
    subject: &Subject,
    task_id: Option<&str>,
    start: LogStart,
    limit: LogPageLimit,
) -> StoreResult<Vec<LogPage>> {
    let store = subject.store();
    let mut pages = Vec::new();
    let mut start = start;
    loop {
        let page = store.log_page("r1", task_id, start, limit).await?;
        let next = page.next;
        assert!(pages.len() < 1000, "paging does not move on");
        pages.push(page);
        match next {
            Some(next) => start = LogStart::At(next),
            None => return Ok(pages),
        }
    }
}

fn joined(pages: &[LogPage]) -> Vec<&str> {
    pages.iter().flat_map(|p| lines(&p.lines)).collect()
}

pub(super) async fn log_pages_give_every_line_once_in_order(subject: &Subject) -> StoreResult<()> {
    let written = interleaved_log(subject).await?;
    let store = subject.store();

    let first = store
        .log_page("r1", None, LogStart::First, by_lines(7))
        .await?;
    assert_eq!(first.lines, written[..7], "every field round-trips");
    assert!(first.next.is_some() && first.last.is_some());
    assert!(first.last < first.next);

    // A middle page, reached by the previous page's `next`, is where the whole log says.
    let second_start = first.next.map(LogStart::At).expect("a next page");
    let second = store
        .log_page("r1", None, second_start, by_lines(7))
        .await?;
    assert_eq!(lines(&second.lines), lines(&written[7..14]));

    for size in [1, 3, 7, 60, 61, 1000] {
        let pages = all_pages(subject, None, LogStart::First, by_lines(size)).await?;
        assert_eq!(joined(&pages), lines(&written), "page size {size}");
        assert_eq!(
            pages.len(),
            written.len().div_ceil(size).max(1),
            "size {size}"
        );
        assert!(pages.iter().all(|p| p.lines.len() <= size));
        let last = pages.last().expect("one page at least");
        assert_eq!(last.next, None, "the last page says it is the last");
    }

    // One task: its lines only, still in write order, across both streams.
    for task_id in ["a", "b"] {
        let wanted: Vec<&str> = written
            .iter()
            .filter(|l| l.task_id == task_id)
            .map(|l| l.line.as_str())
            .collect();
        let pages = all_pages(subject, Some(task_id), LogStart::First, by_lines(4)).await?;
        assert_eq!(joined(&pages), wanted, "task {task_id}");
    }
    Ok(())
}

pub(super) async fn log_pages_respect_the_byte_bound(subject: &Subject) -> StoreResult<()> {
    let written = interleaved_log(subject).await?;
    // "a1" and "b0" are 2 bytes, "a10" 3: a 5-byte page holds 2 lines, or 1 of 3 bytes
    // next to one of 3.
    let limit = LogPageLimit {
        lines: 100,
        bytes: 5,
    };
    let pages = all_pages(subject, None, LogStart::First, limit).await?;
    assert_eq!(joined(&pages), lines(&written));
    for page in &pages {
        let bytes: usize = page.lines.iter().map(|l| l.line.len()).sum();
        assert!(
            bytes <= 5 && !page.lines.is_empty(),
            "{:?}",
            lines(&page.lines)
        );
    }
    // A line longer than the bound still comes, alone: paging always moves on.
    let tiny = LogPageLimit {
        lines: 100,
        bytes: 0,
    };
    let pages = all_pages(subject, None, LogStart::First, tiny).await?;
    assert_eq!(pages.len(), written.len());
    assert_eq!(joined(&pages), lines(&written));
    Ok(())
}

pub(super) async fn log_tail_gives_the_last_lines(subject: &Subject) -> StoreResult<()> {
    let written = interleaved_log(subject).await?;
    let store = subject.store();
    let n = written.len();
    // Tails that cut inside an append (its chunks interleaved) and at its edge.
    for tail in [1, 4, 5, 6, 23] {
        let page = store
            .log_page("r1", None, LogStart::Tail(tail), by_lines(100))
            .await?;
        assert_eq!(
            lines(&page.lines),
            lines(&written[n - tail..]),
            "tail {tail}"
        );
        assert_eq!(page.next, None);
    }
    // A tail longer than a page: its first page, then the rest by `next`.
    let pages = all_pages(subject, None, LogStart::Tail(23), by_lines(10)).await?;
    assert_eq!(pages.len(), 3);
    assert_eq!(joined(&pages), lines(&written[n - 23..]));
    // Longer than the log: all of it. Zero: nothing.
    let page = store
        .log_page("r1", None, LogStart::Tail(10_000), by_lines(100))
        .await?;
    assert_eq!(lines(&page.lines), lines(&written));
    let page = store
        .log_page("r1", None, LogStart::Tail(0), by_lines(100))
        .await?;
    assert!(page.lines.is_empty() && page.next.is_none());
    // The tail of one task.
    let b: Vec<&str> = written
        .iter()
        .filter(|l| l.task_id == "b")
        .map(|l| l.line.as_str())
        .collect();
    let page = store
        .log_page("r1", Some("b"), LogStart::Tail(3), by_lines(100))
        .await?;
    assert_eq!(lines(&page.lines), b[b.len() - 3..]);
    Ok(())
}

pub(super) async fn log_pages_past_the_end_are_empty(subject: &Subject) -> StoreResult<()> {
    interleaved_log(subject).await?;
    let store = subject.store();
    let last = store
        .log_page("r1", None, LogStart::Tail(1), by_lines(1))
        .await?;
    let after_last = last.last.map(LogPosition::successor).expect("a last line");
    let far = LogPosition {
        batch: u64::MAX,
        pos: u64::MAX,
    };
    for start in [after_last, far] {
        let page = store
            .log_page("r1", None, LogStart::At(start), by_lines(10))
            .await?;
        assert_eq!(page, LogPage::default(), "{start:?}");
    }
    for (run_id, task_id) in [("nope", None), ("r1", Some("nope"))] {
        for start in [LogStart::First, LogStart::Tail(5)] {
            let page = store.log_page(run_id, task_id, start, by_lines(10)).await?;
            assert_eq!(page, LogPage::default(), "{run_id} {task_id:?}");
        }
    }
    Ok(())
}

pub(super) async fn log_page_starts_outlive_trimming(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    store
        .create_run(
            run("r1", "job", RunStatus::Running, 1),
            vec![task("r1", "a")],
        )
        .await?;
    // 10-byte lines under the suite's 100-byte cap: ten kept per stream.
    let line = |n: u64| format!("line {n:05}");
    for n in 1..=10 {
        store
            .append_logs(vec![log("r1", "a", LogStream::Stdout, n, &line(n))])
            .await?;
    }
    let first = store
        .log_page("r1", None, LogStart::First, by_lines(2))
        .await?;
    let start = first.next.map(LogStart::At).expect("more pages");
    // Five more lines push the five oldest out, the page's start among them.
    for n in 11..=15 {
        store
            .append_logs(vec![log("r1", "a", LogStream::Stdout, n, &line(n))])
            .await?;
    }
    let page = store.log_page("r1", None, start, by_lines(2)).await?;
    assert_eq!(
        lines(&page.lines),
        [line(6), line(7)],
        "the oldest kept line on"
    );
    Ok(())
}

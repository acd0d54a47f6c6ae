//! The bounds on what clients can hold of the daemon: the time limits of a
//! connection, how many connections may be open at once, and the open-file budget that
//! sets that number, so that descriptors stay in reserve for the runs (a task needs
//! pipes and an output file; a run that cannot create them fails).

use std::time::{Duration, Instant};

/// The limits the listener applies to every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (calls) on one connection.
    pub max_streams_per_connection: u32,
    /// Time for the TLS handshake, for a request's header to arrive in full, and for a
    /// new connection to start its first request.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed. A call in
    /// progress (a stream silent for an hour included) keeps its connection open.
    pub idle_timeout: Duration,
    /// How often the server pings an HTTP/2 peer, and how long it waits for the answer
    /// before closing the connection: catches peers that vanished mid-stream.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

/// The defaults; `--max-connections` and `petit.yaml`'s `connections:` override them.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_MAX_STREAMS: u32 = 100;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_streams_per_connection: DEFAULT_MAX_STREAMS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            keepalive_interval: KEEPALIVE_INTERVAL,
            keepalive_timeout: KEEPALIVE_TIMEOUT,
        }
    }
}

/// The open-file limit before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub before: u64,
    pub now: u64,
}

/// Raises the soft open-file limit to the hard limit: the soft default (often 1024) is
/// a compatibility value for `select()`, which petitd does not use.
pub fn raise_open_file_limit() -> std::io::Result<OpenFiles> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    }
    Ok(OpenFiles {
        before: soft,
        now: soft.max(hard),
    })
}

/// Descriptors petitd keeps for itself and its runs: its own files (database and its
/// readers, WAL, lock, ledger, listener, runtime) and, per task that may run at once,
/// its stdout and stderr pipes, its output file and one spare.
pub fn descriptors_for_runs(max_runs: usize, max_tasks_per_run: usize) -> u64 {
    const OWN: u64 = 64;
    const PER_TASK: u64 = 4;
    let tasks = (max_runs as u64).saturating_mul(max_tasks_per_run as u64);
    OWN.saturating_add(tasks.saturating_mul(PER_TASK))
}

/// How many connections may be open at once, and a warning when that is fewer than
/// asked. At least half the open-file limit stays for runs even when their reserve
/// would want more (then the warning says so): an unusably low limit still serves a
/// few clients, and the operator is told to raise it.
pub fn connection_budget(asked: usize, open_files: u64, reserve: u64) -> (usize, Option<String>) {
    let reserve_kept = reserve.min(open_files / 2);
    let room = open_files - reserve_kept;
    let budget = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    let mut warnings = Vec::new();
    if reserve_kept < reserve {
        warnings.push(format!(
            "the open-file limit ({open_files}) is below what runs may need ({reserve} descriptors); raise it (ulimit -n, LimitNOFILE=)"
        ));
    }
    if asked > budget {
        warnings.push(format!(
            "at most {budget} connections at once (asked for {asked}): the open-file limit is {open_files} and {reserve_kept} descriptors are kept for runs"
        ));
    }
    let warning = (!warnings.is_empty()).then(|| warnings.join("; "));
    (asked.min(budget), warning)
}

/// Reports a repeated event (a refused connection, an accept that failed for want of
/// descriptors) without a line per occurrence: the first of a burst, then a count at
/// most every `every`.
#[derive(Debug)]
pub struct RefusalLog {
    every: Duration,
    last: Option<Instant>,
    unreported: u64,
}

impl RefusalLog {
    pub fn new(every: Duration) -> RefusalLog {
        RefusalLog {
            every,
            last: None,
            unreported: 0,
        }
    }

    /// One more occurrence at `now`; the number to report, when it is time to.
    pub fn refused(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= self.every);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_grows_with_the_tasks_that_may_run() {
        assert_eq!(descriptors_for_runs(16, 8), 64 + 16 * 8 * 4);
        assert_eq!(descriptors_for_runs(1, 1), 68);
        assert_eq!(descriptors_for_runs(usize::MAX, usize::MAX), u64::MAX);
    }

    #[test]
    fn budgets() {
        // (asked, open files, reserve) -> (allowed, warns)
        let cases = [
            ((1024, 1 << 20, 576), (1024, false)),
            ((1024, 2048, 576), (1024, false)),
            ((1024, 1024, 576), (512, true)),
            ((1024, 1600, 576), (1024, false)),
            ((1024, 1500, 576), (924, true)),
            // The reserve wants more than there is: half the limit stays for runs.
            ((1024, 256, 576), (128, true)),
            ((10, 256, 576), (10, true)),
            ((5, 1 << 20, 576), (5, false)),
            ((1024, 1, 576), (1, true)),
            ((1024, 0, 576), (1, true)),
        ];
        for ((asked, files, reserve), (allowed, warns)) in cases {
            let (got, warning) = connection_budget(asked, files, reserve);
            assert_eq!(
                (got, warning.is_some()),
                (allowed, warns),
                "{asked} {files} {reserve}: {warning:?}"
            );
        }
    }

    #[test]
    fn refusals_are_reported_first_then_at_most_every_period() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut log = RefusalLog::new(Duration::from_secs(1));
        let got: Vec<Option<u64>> = [0, 10, 20, 999, 1000, 1500, 3000]
            .into_iter()
            .map(|ms| log.refused(at(ms)))
            .collect();
        assert_eq!(got, [Some(1), None, None, None, Some(4), None, Some(2)]);
    }
}

//! petitctl's command line: the commands, their flags and help texts, and the parsers
//! for the values flags take (`KEY=VALUE`, durations).

use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use petit_client::render::ZoneChoice;
use petit_client::ConnectArgs;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation failed (not found, refused, petitd's certificate not trusted...) or the
     awaited run did not succeed
  2  usage error
  3  petitd is unreachable or unavailable";

const TRIGGER_NOTES: &str = "\
Prints the new run's id alone on stdout, so that `id=$(petitctl trigger JOB)` works.
With --wait or --follow, a one-line summary goes to stderr when the run ends, and the exit
code is the run's outcome: 0 if it succeeded, 1 if it failed, was cancelled or interrupted.
With -o json: the TriggerJobResponse (with --wait, its run as it ended); with --follow, one
JSON document per line (NDJSON): the TriggerJobResponse, then a FollowTaskLogsResponse per
line of output.";

const WATCH_NOTES: &str = "\
Table output: a one-line summary of the snapshot (\"connected: N jobs, scheduler running\"),
then one line per event: time, type, job, run, task, message.
With -o json: one JSON document per line (NDJSON): each WatchEventsResponse as sent, the
snapshot first. Runs until interrupted (Ctrl-C) or until petitd goes away (exit code 3).";

/// Control a Petit daemon (petitd): list jobs, trigger and watch runs, read task logs.
#[derive(Debug, Parser)]
#[command(name = "petitctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten, next_help_heading = "Global options")]
    pub connection: ConnectArgs,

    /// Time limit for connecting and for each request (not for streams): 10s, 500ms, 1m
    #[arg(
        long,
        global = true,
        default_value = "10s",
        help_heading = "Global options",
        value_parser = parse_timeout,
        value_name = "DURATION"
    )]
    pub timeout: Duration,

    /// Show every time in UTC, next fire times included (default: a job's next fire times in the job's own zone, other times in local time; each time names its zone)
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        conflicts_with = "local"
    )]
    pub utc: bool,

    /// Show every time in local time (TZ, else the system's zone), next fire times included
    #[arg(long, global = true, help_heading = "Global options")]
    pub local: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses `args` (the program name first). Global options may come before or after
    /// the command, where clap checks conflicts apart: `--utc` with `--local` is
    /// refused here too.
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args)?;
        if cli.utc && cli.local {
            return Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--utc and --local cannot be used together",
            ));
        }
        Ok(cli)
    }

    /// The zones times are shown in, from `--utc` and `--local`.
    pub fn zone_choice(&self) -> ZoneChoice {
        match (self.utc, self.local) {
            (true, _) => ZoneChoice::Utc,
            (_, true) => ZoneChoice::Local,
            _ => ZoneChoice::Job,
        }
    }
}

/// How read commands print their result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    // Aligned columns for people (colour on a terminal unless NO_COLOR is set).
    Table,
    // The response message in the proto3 JSON mapping, one document.
    Json,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArg {
    /// Output format: table for people, json (the proto3 JSON mapping of the response) for scripts
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the jobs: schedule, next fire time, last run
    Jobs {
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show a job: its definition, task tree, next fire times and recent runs
    Job {
        /// Job id
        job: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Start a run of a job now, and print its id
    #[command(after_help = TRIGGER_NOTES)]
    Trigger(TriggerArgs),
    /// Queue one run per scheduled instant of a job in a range that has no run yet
    /// (at most 10,000 instants); they run within the job's max_concurrency
    Backfill {
        /// Job id
        job: String,
        /// Start of the range, included: RFC 3339 (2026-11-30T00:00:00Z) or a UTC date
        /// (2026-11-30)
        #[arg(long, value_parser = parse_instant)]
        from: chrono::DateTime<chrono::Utc>,
        /// End of the range, included, in the same forms
        #[arg(long, value_parser = parse_instant)]
        to: chrono::DateTime<chrono::Utc>,
        /// List the instants that would be queued, and queue nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Read the jobs directory (and petit.yaml) again without a restart: runs in flight
    /// finish on their definition; invalid files change nothing and are listed
    Reload {
        #[command(flatten)]
        output: OutputArg,
    },
    /// Start a new run of a run's job with the same params (reason retry, pointing at
    /// the original), and print its id
    Rerun {
        /// The run to repeat
        run_id: String,
        /// Wait for the new run to end; exit with its outcome
        #[arg(short, long)]
        wait: bool,
        #[command(flatten)]
        output: OutputArg,
    },
    /// List a job's runs, newest first
    Runs {
        /// Job id
        job: String,
        /// How many runs to show
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show a run and its tasks
    Run {
        /// Run id
        run_id: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show the tasks of a run: status, attempts, duration, exit code, error
    Tasks {
        /// Run id
        run_id: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Print the output of a run's tasks (each line prefixed by its task when showing all)
    #[command(
        after_help = "The stored output is read page by page (GetTaskLogs) and printed as it comes; with -o json, one GetTaskLogsResponse document per page.
With --follow and -o json: one FollowTaskLogsResponse per line (NDJSON)."
    )]
    Logs {
        /// Run id
        run_id: String,
        /// Only this task's output
        task: Option<String>,
        /// Keep printing new lines until the task (or the whole run) ends
        #[arg(short, long)]
        follow: bool,
        /// Only the last N stored lines (with --follow: then the live ones; needs a task)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        tail: Option<u32>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Cancel a run: its processes are killed and it ends cancelled
    Cancel {
        /// Run id
        run_id: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Stop scheduled fires until resumed, even across restarts (manual triggers work):
    /// of every job, or of one job when JOB is given
    Pause {
        /// Pause only this job (the scheduler-wide pause is separate)
        #[arg(value_name = "JOB")]
        job_id: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Resume scheduled fires (fires missed while paused are not made up): of every
    /// job, or of one job paused on its own when JOB is given
    Resume {
        /// Resume only this job
        #[arg(value_name = "JOB")]
        job_id: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show the scheduler's state: running or paused, jobs, runs in progress, limits
    State {
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show the audit record: who triggered, cancelled, paused or resumed, newest first (needs an admin token)
    Audit {
        /// How many entries to show
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        #[command(flatten)]
        output: OutputArg,
    },
    /// List the nodes of a cluster (petitd --db postgres://...): heartbeat, epoch,
    /// runs, and the jobs a node will not run because its job files differ
    Nodes {
        #[command(flatten)]
        output: OutputArg,
    },
    /// Check that petitd serves (exit code 3 if it does not)
    Health {
        #[command(flatten)]
        output: OutputArg,
    },
    /// Print engine events as they happen
    #[command(after_help = WATCH_NOTES)]
    Watch {
        /// Only events of this job
        #[arg(long)]
        job: Option<String>,
        /// Leave out the tasks' output lines (LOG_LINE events)
        #[arg(long)]
        no_logs: bool,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Print a shell completion script, e.g. `petitctl completions bash > /etc/bash_completion.d/petitctl`
    Completions {
        /// The shell to complete for
        shell: Shell,
    },
}

impl Command {
    /// The output format asked for (tables for commands without `-o`).
    pub fn format(&self) -> Format {
        match self {
            Command::Jobs { output }
            | Command::Job { output, .. }
            | Command::Trigger(TriggerArgs { output, .. })
            | Command::Backfill { output, .. }
            | Command::Reload { output }
            | Command::Rerun { output, .. }
            | Command::Runs { output, .. }
            | Command::Run { output, .. }
            | Command::Tasks { output, .. }
            | Command::Logs { output, .. }
            | Command::Cancel { output, .. }
            | Command::Pause { output, .. }
            | Command::Resume { output, .. }
            | Command::State { output }
            | Command::Audit { output, .. }
            | Command::Nodes { output }
            | Command::Health { output }
            | Command::Watch { output, .. } => output.format,
            Command::Completions { .. } => Format::Table,
        }
    }
}

#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// Job id
    pub job: String,
    /// Override one of the job's config values for this run (repeatable)
    #[arg(short, long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Start even if a job dependency is unmet
    #[arg(long)]
    pub force: bool,
    /// Wait for the run to end; exit with its outcome
    #[arg(short, long)]
    pub wait: bool,
    /// Print the tasks' output as it comes, each line prefixed by its task (implies --wait)
    #[arg(short, long)]
    pub follow: bool,
    #[command(flatten)]
    pub output: OutputArg,
}

/// An instant: RFC 3339 with its offset, or a date (midnight UTC).
pub fn parse_instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err("expected an instant: 2026-11-30T02:00:00Z (RFC 3339, with an offset) or a date, 2026-11-30 (midnight UTC)".to_string())
}

/// `KEY=VALUE`; the value may be empty, the key may not.
pub fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        None => Err("missing '=': expected KEY=VALUE".to_string()),
        Some(("", _)) => Err("empty key: expected KEY=VALUE".to_string()),
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
    }
}

/// A positive duration: a number with a unit (`500ms`, `10s`, `1m30s`, `2h`), or bare
/// seconds (`10`).
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".to_string());
    }
    Ok(d)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    const HELP: &str = "expected a duration like 500ms, 10s, 1m30s or 2h";
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("empty duration: {HELP}"));
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("'{s}': {HELP}"));
        }
        let amount: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("'{s}': number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3_600),
            "d" => Duration::from_secs(86_400),
            "" => return Err(format!("'{s}': missing unit after {amount}: {HELP}")),
            other => return Err(format!("'{s}': unknown unit '{other}': {HELP}")),
        };
        rest = &rest[unit_len..];
        total = unit
            .checked_mul(u32::try_from(amount).map_err(|_| format!("'{s}': number too large"))?)
            .and_then(|d| total.checked_add(d))
            .ok_or_else(|| format!("'{s}': duration too large"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        let cases = [
            ("key=value", Ok(("key", "value"))),
            ("key=", Ok(("key", ""))),
            ("url=http://x/?a=b", Ok(("url", "http://x/?a=b"))),
            ("=v", Err("empty key: expected KEY=VALUE")),
            ("novalue", Err("missing '=': expected KEY=VALUE")),
        ];
        for (input, want) in cases {
            let got = parse_param(input);
            let want = want
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .map_err(str::to_string);
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn timeouts() {
        let ok = [
            ("10s", 10_000),
            ("10", 10_000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
        ];
        for (input, ms) in ok {
            assert_eq!(
                parse_timeout(input),
                Ok(Duration::from_millis(ms)),
                "{input}"
            );
        }
        let bad = [
            ("", "empty duration"),
            ("0s", "must be greater than zero"),
            ("0", "must be greater than zero"),
            ("s", "expected a duration"),
            ("10x", "unknown unit 'x'"),
            ("1m30", "missing unit after 30"),
            ("-1s", "expected a duration"),
            ("99999999999999999999s", "number too large"),
        ];
        for (input, want) in bad {
            let err = parse_timeout(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn zone_options() {
        let cases: [(&[&str], ZoneChoice); 4] = [
            (&["jobs"], ZoneChoice::Job),
            (&["jobs", "--utc"], ZoneChoice::Utc),
            (&["--local", "jobs"], ZoneChoice::Local),
            (&["job", "x", "--local"], ZoneChoice::Local),
        ];
        for (args, want) in cases {
            let cli = Cli::try_parse_args(std::iter::once("petitctl").chain(args.iter().copied()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.zone_choice(), want, "{args:?}");
        }
        for args in [
            ["petitctl", "--utc", "jobs", "--local"],
            ["petitctl", "--utc", "--local", "jobs"],
            ["petitctl", "jobs", "--local", "--utc"],
        ] {
            let err = Cli::try_parse_args(args).expect_err("one zone at a time");
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains("--utc"), "{args:?}: {err}");
        }
    }

    #[test]
    fn bad_param_is_a_usage_error() {
        let err = Cli::try_parse_from(["petitctl", "trigger", "j", "--param", "novalue"])
            .expect_err("rejected");
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("missing '=': expected KEY=VALUE"),
            "{err}"
        );
    }
}

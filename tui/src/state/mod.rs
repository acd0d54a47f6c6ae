//! The dashboard's whole state and the reducer over it: what the server says
//! ([`State::apply`]) and what the user types ([`State::on_key`], in `keys.rs`) go in;
//! the view reads it out. No I/O here, and every buffer is bounded.

mod keys;
mod model;

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use petit_client::render::{Zone, ZoneChoice, Zones};
use petit_client::vocab::{Lifecycle as _, Vocabulary as _};

pub use model::*;

/// Entries kept in the Events feed.
pub const MAX_EVENTS: usize = 500;
/// Runs kept in the Runs table (the oldest finished ones go first).
pub const MAX_RUNS: usize = 500;
/// Lines kept in the log overlay (the oldest go first).
pub const MAX_LOG_LINES: usize = 2000;
/// Longest filter a user can type.
const MAX_FILTER_CHARS: usize = 64;
/// How long a notice stays in the message line.
const NOTICE_FOR: TimeDelta = TimeDelta::seconds(6);
const ERROR_NOTICE_FOR: TimeDelta = TimeDelta::seconds(12);
/// Least time between two requests for a job's fresh fire times.
const REFRESH_EVERY: TimeDelta = TimeDelta::seconds(5);
/// Jobs refreshed per tick at most, so a thousand jobs firing on the same minute do
/// not become a thousand requests in one second.
const MAX_REFRESH_PER_TICK: usize = 20;

/// What the connection task reports to the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg {
    /// The first message of every (re)connection: the dashboard is whole again.
    Snapshot(Snapshot),
    Event(ServerEvent),
    /// From `WatchRun`: the run as it now stands and its task runs (every one of
    /// them when `full`, else those that changed).
    RunState {
        run: RunRow,
        tasks: Vec<TaskRow>,
        full: bool,
    },
    Log(LogRow),
    /// `FollowTaskLogs` ended: the task (or run) has settled.
    LogsEnded {
        run_id: String,
        task_id: String,
    },
    /// A job read again (fresh fire times).
    Job(JobRow),
    /// Older runs of a job, read when the user drills into it.
    JobRuns(Vec<RunRow>),
    /// Cluster mode: the nodes as now listed (read again every few seconds).
    Cluster(Option<ClusterSummary>),
    /// The scheduler's state after a pause or resume the user asked for.
    Scheduler(SchedulerStatus),
    /// The outcome of a command, for the message line.
    Notice {
        text: String,
        error: bool,
    },
    /// The connection is lost; the next attempt is in `retry_in`.
    Disconnected {
        error: String,
        retry_in: Duration,
    },
}

/// What the dashboard asks the connection task to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Trigger {
        job_id: String,
    },
    Cancel {
        run_id: String,
    },
    Pause,
    Resume,
    /// Pause (or resume) one job's scheduled fires.
    PauseJob {
        job_id: String,
        paused: bool,
    },
    /// Stream this run's state (replaces any previous run watch).
    WatchRun {
        run_id: String,
    },
    /// Stream this task's output (empty `task_id`: every task of the run).
    FollowLogs {
        run_id: String,
        task_id: String,
    },
    StopLogs,
    LoadJobRuns {
        job_id: String,
    },
    RefreshJobs {
        job_ids: Vec<String>,
    },
}

/// The four lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Jobs,
    Runs,
    Tasks,
    Events,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Jobs, Tab::Runs, Tab::Tasks, Tab::Events];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn title(self) -> &'static str {
        match self {
            Tab::Jobs => "Jobs",
            Tab::Runs => "Runs",
            Tab::Tasks => "Tasks",
            Tab::Events => "Events",
        }
    }

    fn next(self) -> Tab {
        Tab::ALL[(self.index() + 1) % Tab::ALL.len()]
    }

    fn prev(self) -> Tab {
        Tab::ALL[(self.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
    }
}

/// Where the connection to petitd stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Connected,
    Reconnecting {
        retry_at: DateTime<Utc>,
        error: String,
    },
}

/// The run whose tasks the Tasks tab shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunView {
    pub run: RunRow,
    /// In the server's order (the job file's), new ones appended.
    pub tasks: Vec<TaskRow>,
}

/// The followed output of a task (or of every task of a run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogView {
    pub run_id: String,
    /// Empty: every task of the run.
    pub task_id: String,
    pub lines: VecDeque<LogRow>,
    /// The stream ended: the task or run has settled.
    pub ended: bool,
    /// Lines scrolled back from the newest (0: following the newest).
    pub scroll: usize,
    /// Highest sequence number seen per task, so the stored lines a reconnect sends
    /// again are not shown twice.
    last_seq: Vec<(String, u64)>,
}

impl LogView {
    fn new(run_id: String, task_id: String) -> LogView {
        LogView {
            run_id,
            task_id,
            lines: VecDeque::new(),
            ended: false,
            scroll: 0,
            last_seq: Vec::new(),
        }
    }

    fn push(&mut self, row: LogRow) {
        if row.seq > 0 {
            match self.last_seq.iter_mut().find(|(t, _)| *t == row.task_id) {
                Some((_, last)) if row.seq <= *last => return,
                Some((_, last)) => *last = row.seq,
                None => self.last_seq.push((row.task_id.clone(), row.seq)),
            }
        }
        if self.lines.len() == MAX_LOG_LINES {
            self.lines.pop_front();
        } else if self.scroll > 0 {
            // Keep the lines the user scrolled back to in place.
            self.scroll += 1;
        }
        self.lines.push_back(row);
    }
}

/// An action waiting for the user's yes or no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    Trigger { job_id: String },
    Cancel { run_id: String },
}

/// What covers the lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    Help,
    Confirm(Confirm),
    Logs(LogView),
}

/// A line for the message line, and when it was said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
    pub at: DateTime<Utc>,
}

/// The selected row of each list: by id, so that rows arriving above it do not move
/// the selection to another item (the Events feed has no ids: by position).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursors {
    pub job: Option<String>,
    pub run: Option<String>,
    pub task: Option<String>,
    pub event: usize,
}

/// Everything the dashboard shows.
#[derive(Debug, Clone)]
pub struct State {
    /// The server address, as shown in the status bar.
    pub server: String,
    /// Whether the view may use colours (`NO_COLOR` unset).
    pub color: bool,
    /// The clock, set by the caller (so that tests are repeatable).
    pub now: DateTime<Utc>,
    /// The zones times are shown in (`z` goes round the choices).
    pub zones: Zones,
    pub connection: Connection,
    pub scheduler: SchedulerStatus,
    /// Cluster mode: the node and the nodes alive, as of the last snapshot.
    pub cluster: Option<ClusterSummary>,
    /// Sorted by id.
    pub jobs: Vec<JobRow>,
    /// Newest first.
    pub runs: Vec<RunRow>,
    pub run_view: Option<RunView>,
    /// Newest first.
    pub events: VecDeque<FeedEntry>,
    pub tab: Tab,
    pub cursors: Cursors,
    /// One filter per tab, matched case-insensitively against the row's text.
    pub filters: [String; 4],
    /// The user is typing the current tab's filter.
    pub editing_filter: bool,
    /// The Runs tab shows only this job's runs.
    pub runs_of_job: Option<String>,
    pub overlay: Option<Overlay>,
    pub notice: Option<Notice>,
    /// Rows of a page of the lists (for PageUp/PageDown), set from the terminal size.
    pub page_rows: usize,
    quit: bool,
}

impl State {
    pub fn new(server: impl Into<String>, color: bool, now: DateTime<Utc>) -> State {
        State {
            server: server.into(),
            color,
            now,
            zones: Zones::new(ZoneChoice::Job, Zone::UTC),
            connection: Connection::Connecting,
            scheduler: SchedulerStatus::Unspecified,
            cluster: None,
            jobs: Vec::new(),
            runs: Vec::new(),
            run_view: None,
            events: VecDeque::new(),
            tab: Tab::Jobs,
            cursors: Cursors::default(),
            filters: Default::default(),
            editing_filter: false,
            runs_of_job: None,
            overlay: None,
            notice: None,
            page_rows: 10,
            quit: false,
        }
    }

    /// The user asked to leave.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    pub fn set_now(&mut self, now: DateTime<Utc>) {
        self.now = now;
    }

    pub fn set_zones(&mut self, zones: Zones) {
        self.zones = zones;
    }

    /// The clock moved on: asks for fresh fire times of the jobs whose listed ones
    /// have all passed (the snapshot lists only the next few).
    pub fn tick(&mut self, now: DateTime<Utc>) -> Option<Command> {
        self.now = now;
        if self.connection != Connection::Connected {
            return None;
        }
        let job_ids: Vec<String> = self
            .jobs
            .iter_mut()
            .filter(|j| {
                // An empty list means the server knows of no upcoming fire at all.
                j.enabled
                    && !j.next_fires.is_empty()
                    && j.next_fire(now).is_none()
                    && j.refreshed_at.is_none_or(|t| now - t >= REFRESH_EVERY)
            })
            .take(MAX_REFRESH_PER_TICK)
            .map(|j| {
                j.refreshed_at = Some(now);
                j.id.clone()
            })
            .collect();
        (!job_ids.is_empty()).then_some(Command::RefreshJobs { job_ids })
    }

    /// The notice to show now, if one is still fresh.
    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_ref().filter(|n| {
            let keep = if n.error {
                ERROR_NOTICE_FOR
            } else {
                NOTICE_FOR
            };
            self.now - n.at < keep
        })
    }

    fn say(&mut self, text: impl Into<String>, error: bool) {
        self.notice = Some(Notice {
            text: text.into(),
            error,
            at: self.now,
        });
    }

    /// Folds one server message into the state.
    pub fn apply(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Snapshot(s) => self.apply_snapshot(s),
            ServerMsg::Event(e) => self.apply_event(e),
            ServerMsg::RunState { run, tasks, full } => {
                if let Some(view) = self.run_view.as_mut().filter(|v| v.run.id == run.id) {
                    if full {
                        view.tasks = tasks;
                    } else {
                        for task in tasks {
                            upsert_task(&mut view.tasks, task);
                        }
                    }
                }
                self.upsert_run(run);
            }
            ServerMsg::Log(row) => {
                if let Some(Overlay::Logs(view)) = &mut self.overlay {
                    if view.run_id == row.run_id
                        && (view.task_id.is_empty() || view.task_id == row.task_id)
                    {
                        view.push(row);
                    }
                }
            }
            ServerMsg::LogsEnded { run_id, task_id } => {
                if let Some(Overlay::Logs(view)) = &mut self.overlay {
                    if view.run_id == run_id && view.task_id == task_id {
                        view.ended = true;
                    }
                }
            }
            ServerMsg::Job(mut job) => match self.job_index(&job.id) {
                Ok(i) => {
                    job.refreshed_at = self.jobs[i].refreshed_at;
                    self.jobs[i] = job;
                }
                Err(i) => self.jobs.insert(i, job),
            },
            ServerMsg::JobRuns(runs) => {
                for run in runs {
                    self.upsert_run(run);
                }
            }
            ServerMsg::Scheduler(status) => {
                self.scheduler = status;
                self.say(format!("scheduler {}", status.label()), false);
            }
            ServerMsg::Notice { text, error } => self.say(text, error),
            ServerMsg::Cluster(cluster) => self.cluster = cluster,
            ServerMsg::Disconnected { error, retry_in } => {
                let retry_in = TimeDelta::from_std(retry_in).unwrap_or(TimeDelta::MAX);
                self.connection = Connection::Reconnecting {
                    retry_at: self.now.checked_add_signed(retry_in).unwrap_or(self.now),
                    error,
                };
            }
        }
    }

    fn apply_snapshot(&mut self, s: Snapshot) {
        self.connection = Connection::Connected;
        self.scheduler = s.scheduler;
        self.cluster = s.cluster;
        self.jobs = s.jobs;
        self.jobs.sort_by(|a, b| a.id.cmp(&b.id));
        self.runs = s.runs;
        self.runs.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        self.runs.truncate(MAX_RUNS);
        if let Some(view) = &mut self.run_view {
            if let Some(run) = self.runs.iter().find(|r| r.id == view.run.id) {
                view.run = run.clone();
            }
        }
    }

    fn apply_event(&mut self, e: ServerEvent) {
        match e.kind {
            // Followed through FollowTaskLogs when wanted; far too many for the feed.
            EventType::LogLine => return,
            EventType::SchedulerPaused => self.scheduler = SchedulerStatus::Paused,
            EventType::SchedulerResumed => self.scheduler = SchedulerStatus::Running,
            _ => {}
        }
        let entry = FeedEntry::from(&e);
        if let Some(run) = e.run {
            self.upsert_run(run);
        }
        if let Some(task) = e.task {
            if let Some(view) = self.run_view.as_mut().filter(|v| v.run.id == task.run_id) {
                upsert_task(&mut view.tasks, task);
            }
        }
        // Keep the selected entry under the cursor as the feed grows above it.
        if self.cursors.event > 0 && entry_matches(&entry, &self.filters[Tab::Events.index()]) {
            self.cursors.event += 1;
        }
        if self.events.len() == MAX_EVENTS {
            self.events.pop_back();
        }
        self.events.push_front(entry);
    }

    fn job_index(&self, id: &str) -> Result<usize, usize> {
        self.jobs.binary_search_by(|j| j.id.as_str().cmp(id))
    }

    /// Adds or updates a run everywhere it shows: the Runs table (newest first,
    /// bounded), its job's last status, and the Tasks tab's header.
    fn upsert_run(&mut self, run: RunRow) {
        if let Ok(i) = self.job_index(&run.job_id) {
            self.jobs[i].observe_run(&run);
        }
        if let Some(view) = self.run_view.as_mut().filter(|v| v.run.id == run.id) {
            view.run = run.clone();
        }
        if let Some(existing) = self.runs.iter_mut().find(|r| r.id == run.id) {
            *existing = run;
            return;
        }
        let at = self.runs.partition_point(|r| r.created_at > run.created_at);
        self.runs.insert(at, run);
        if self.runs.len() > MAX_RUNS {
            // Drop the oldest run that has ended; a live one is worth more.
            match self.runs.iter().rposition(|r| r.status.is_terminal()) {
                Some(i) => {
                    self.runs.remove(i);
                }
                None => {
                    self.runs.pop();
                }
            }
        }
    }

    /// The filter of `tab`.
    pub fn filter(&self, tab: Tab) -> &str {
        &self.filters[tab.index()]
    }

    pub fn visible_jobs(&self) -> impl Iterator<Item = &JobRow> + Clone {
        let f = self.filter(Tab::Jobs);
        self.jobs.iter().filter(move |j| {
            contains_ci(&j.id, f)
                || contains_ci(&j.name, f)
                || j.schedule.as_deref().is_some_and(|s| contains_ci(s, f))
        })
    }

    pub fn visible_runs(&self) -> impl Iterator<Item = &RunRow> + Clone {
        let f = self.filter(Tab::Runs);
        let job = self.runs_of_job.as_deref();
        self.runs.iter().filter(move |r| {
            job.is_none_or(|j| r.job_id == j)
                && (contains_ci(&r.id, f)
                    || contains_ci(&r.job_id, f)
                    || contains_ci(r.status.label(), f)
                    || contains_ci(r.trigger.label(), f))
        })
    }

    pub fn visible_tasks(&self) -> impl Iterator<Item = &TaskRow> + Clone {
        let f = self.filter(Tab::Tasks);
        self.run_view
            .iter()
            .flat_map(|v| v.tasks.iter())
            .filter(move |t| {
                contains_ci(&t.task_id, f)
                    || contains_ci(t.status.label(), f)
                    || contains_ci(&t.error, f)
            })
    }

    pub fn visible_events(&self) -> impl Iterator<Item = &FeedEntry> + Clone {
        let f = self.filter(Tab::Events);
        self.events.iter().filter(move |e| entry_matches(e, f))
    }

    /// The selected row of `tab` and the number of rows it shows.
    pub fn position(&self, tab: Tab) -> (usize, usize) {
        match tab {
            Tab::Jobs => position(
                self.visible_jobs().map(|j| j.id.as_str()),
                self.cursors.job.as_deref(),
            ),
            Tab::Runs => position(
                self.visible_runs().map(|r| r.id.as_str()),
                self.cursors.run.as_deref(),
            ),
            Tab::Tasks => position(
                self.visible_tasks().map(|t| t.task_id.as_str()),
                self.cursors.task.as_deref(),
            ),
            Tab::Events => {
                let len = self.visible_events().count();
                (self.cursors.event.min(len.saturating_sub(1)), len)
            }
        }
    }

    pub fn selected_job(&self) -> Option<&JobRow> {
        let (i, _) = self.position(Tab::Jobs);
        self.visible_jobs().nth(i)
    }

    pub fn selected_run(&self) -> Option<&RunRow> {
        let (i, _) = self.position(Tab::Runs);
        self.visible_runs().nth(i)
    }

    pub fn selected_task(&self) -> Option<&TaskRow> {
        let (i, _) = self.position(Tab::Tasks);
        self.visible_tasks().nth(i)
    }

    pub fn selected_event(&self) -> Option<&FeedEntry> {
        let (i, _) = self.position(Tab::Events);
        self.visible_events().nth(i)
    }
}

/// Where `cursor` is among `ids` (the first row when it is not there) and how many
/// ids there are.
fn position<'a>(ids: impl Iterator<Item = &'a str>, cursor: Option<&str>) -> (usize, usize) {
    let mut at = None;
    let mut len = 0;
    for (i, id) in ids.enumerate() {
        if at.is_none() && Some(id) == cursor {
            at = Some(i);
        }
        len += 1;
    }
    (at.unwrap_or(0), len)
}

fn upsert_task(tasks: &mut Vec<TaskRow>, task: TaskRow) {
    match tasks.iter_mut().find(|t| t.task_id == task.task_id) {
        Some(existing) => *existing = task,
        None => tasks.push(task),
    }
}

fn entry_matches(e: &FeedEntry, f: &str) -> bool {
    contains_ci(e.kind.label(), f)
        || contains_ci(&e.job_id, f)
        || contains_ci(&e.run_id, f)
        || contains_ci(&e.task_id, f)
        || contains_ci(&e.message, f)
}

/// Whether `needle` occurs in `haystack`, ignoring ASCII case, without allocating
/// (this runs for every row on every frame while a filter is set).
pub fn contains_ci(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests;

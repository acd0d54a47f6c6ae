//! The connection task: it owns the gRPC streams (`WatchEvents` always, `WatchRun` and
//! `FollowTaskLogs` when the user asks), reconnects with backoff and says so, runs the
//! user's commands, and hands every answer to the dashboard as a [`ServerMsg`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use petit_client::{Client, ClientError, Stream};
use petit_proto::v1::{self, watch_events_response::Item};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::state::{
    scheduler_status, ClusterSummary, Command, JobRow, RunRow, ServerMsg, Snapshot, MAX_LOG_LINES,
};

/// Limit on connecting and on each unary call (streams have none).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Cluster mode: how often the nodes' list is read again.
const NODES_EVERY: Duration = Duration::from_secs(5);
/// Runs read when the user drills into a job.
const JOB_RUNS: u32 = 50;

/// Starts the connection task. It ends when `commands` closes or the dashboard stops
/// reading `updates`.
pub fn spawn(
    client: Client,
    updates: mpsc::Sender<ServerMsg>,
    commands: mpsc::UnboundedReceiver<Command>,
) -> JoinHandle<()> {
    let conn = Conn {
        client,
        updates,
        commands,
        run: None,
        logs: None,
    };
    tokio::spawn(conn.run())
}

/// Delays between connection attempts: 0.5 s, doubling, at most 5 s; back to the start
/// once a connection has delivered its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(500);
    pub const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// A stream the user asked for, and whether it has ended for good (so that a
/// reconnect opens it again only if not).
struct Wanted<T> {
    target: T,
    done: bool,
}

impl<T> Wanted<T> {
    fn new(target: T) -> Option<Wanted<T>> {
        Some(Wanted {
            target,
            done: false,
        })
    }
}

/// Why a connection's session ended.
enum Stop {
    /// The dashboard has gone: stop for good.
    Quit,
    /// The connection failed; try again later.
    Lost(String),
    /// petitd refused this dashboard's token (or lack of one): trying again soon
    /// cannot help, so the next try waits [`REFUSED_RETRY`].
    Refused(String),
}

/// How long the dashboard waits before trying again after petitd refused its token:
/// long enough not to hammer the daemon (or fill its log), short enough to notice a
/// tokens file that was fixed.
pub const REFUSED_RETRY: Duration = Duration::from_secs(30);

/// Unary calls in flight; each resolves to the messages its answer makes.
type Calls = FuturesUnordered<BoxFuture<'static, Vec<ServerMsg>>>;

struct Conn {
    /// Dials lazily and redials after a broken connection.
    client: Client,
    updates: mpsc::Sender<ServerMsg>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// The run whose state is streamed (`WatchRun`).
    run: Option<Wanted<String>>,
    /// The (run, task) whose output is streamed (`FollowTaskLogs`).
    logs: Option<Wanted<(String, String)>>,
}

impl Conn {
    async fn run(mut self) {
        let mut backoff = Backoff::new();
        loop {
            let (error, retry_in) = match self.session(&mut backoff).await {
                Err(Stop::Quit) => return,
                Err(Stop::Lost(error)) => (error, backoff.next_delay()),
                Err(Stop::Refused(error)) => (error, REFUSED_RETRY),
                Ok(never) => match never {},
            };
            if self
                .send(ServerMsg::Disconnected { error, retry_in })
                .await
                .is_err()
            {
                return;
            }
            // Keep taking commands while waiting, so that the user hears at once that
            // an action cannot be done now.
            let wait = tokio::time::sleep(retry_in);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    cmd = self.commands.recv() => match cmd {
                        None => return,
                        Some(cmd) => {
                            if let Some(msg) = self.offline(cmd) {
                                if self.send(msg).await.is_err() {
                                    return;
                                }
                            }
                        }
                    },
                }
            }
        }
    }

    async fn send(&self, msg: ServerMsg) -> Result<(), Stop> {
        self.updates.send(msg).await.map_err(|_| Stop::Quit)
    }

    /// One connection: the snapshot, then events, run state, logs and command
    /// answers until something breaks.
    async fn session(&mut self, backoff: &mut Backoff) -> Result<Infallible, Stop> {
        let client = self.client.clone();
        // Output is followed per task in the log overlay; the feed is state.
        let mut events = client.watch_events("", true).await.map_err(|err| {
            if err.is_denied() {
                Stop::Refused(err.to_string())
            } else {
                Stop::Lost(err.to_string())
            }
        })?;
        let mut run_stream = self.open_run_watch(&client).await?;
        let mut log_stream = self.open_logs(&client).await?;
        let mut calls = Calls::new();
        // Cluster mode: nodes come and go without an event; their list is read again
        // now and then (alone, never).
        let mut cluster = false;
        let mut nodes_every = tokio::time::interval(NODES_EVERY);
        nodes_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = nodes_every.tick(), if cluster => {
                    if let Ok(state) = client.scheduler_state().await {
                        let summary = state.state.as_ref().and_then(ClusterSummary::of);
                        self.send(ServerMsg::Cluster(summary)).await?;
                    }
                }
                msg = events.message() => match msg {
                    Ok(Some(v1::WatchEventsResponse { item: Some(item) })) => {
                        let msg = match item {
                            Item::Snapshot(snapshot) => {
                                backoff.reset();
                                cluster = snapshot
                                    .state
                                    .as_ref()
                                    .is_some_and(|s| !s.node_id.is_empty());
                                ServerMsg::Snapshot(Snapshot::from(snapshot))
                            }
                            // Log lines are followed through FollowTaskLogs when the
                            // user opens them; converting every one here is waste.
                            Item::Event(e) if e.r#type() == v1::EventType::LogLine => continue,
                            Item::Event(e) => ServerMsg::Event(e.into()),
                        };
                        self.send(msg).await?;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(Stop::Lost("petitd ended the event stream".into())),
                    Err(err) => return Err(Stop::Lost(err.to_string())),
                },
                msg = next_message(&mut run_stream) => {
                    if let Some(msg) = self.on_run_message(msg, &mut run_stream) {
                        self.send(msg).await?;
                    }
                }
                msg = next_message(&mut log_stream) => {
                    if let Some(msg) = self.on_log_message(msg, &mut log_stream) {
                        self.send(msg).await?;
                    }
                }
                Some(msgs) = calls.next() => {
                    for msg in msgs {
                        self.send(msg).await?;
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    None => return Err(Stop::Quit),
                    Some(Command::WatchRun { run_id }) => {
                        self.run = Wanted::new(run_id);
                        run_stream = self.open_run_watch(&client).await?;
                    }
                    Some(Command::FollowLogs { run_id, task_id }) => {
                        self.logs = Wanted::new((run_id, task_id));
                        log_stream = self.open_logs(&client).await?;
                    }
                    Some(Command::StopLogs) => {
                        self.logs = None;
                        log_stream = None;
                    }
                    Some(cmd) => calls.push(call(&client, cmd)),
                },
            }
        }
    }

    /// A command while disconnected: the streams to open on reconnecting are noted,
    /// actions are refused.
    fn offline(&mut self, cmd: Command) -> Option<ServerMsg> {
        match cmd {
            Command::WatchRun { run_id } => self.run = Wanted::new(run_id),
            Command::FollowLogs { run_id, task_id } => self.logs = Wanted::new((run_id, task_id)),
            Command::StopLogs => self.logs = None,
            // The snapshot after reconnecting brings jobs and recent runs up to date.
            Command::LoadJobRuns { .. } | Command::RefreshJobs { .. } => {}
            Command::Trigger { .. }
            | Command::Cancel { .. }
            | Command::Pause
            | Command::Resume
            | Command::PauseJob { .. } => {
                return Some(ServerMsg::Notice {
                    text: "not connected to petitd: try again once reconnected".into(),
                    error: true,
                })
            }
        }
        None
    }

    async fn open_run_watch(
        &mut self,
        client: &Client,
    ) -> Result<Option<Stream<v1::WatchRunResponse>>, Stop> {
        let Some(wanted) = self.run.as_mut().filter(|w| !w.done) else {
            return Ok(None);
        };
        match client.watch_run(&wanted.target).await {
            Ok(stream) => Ok(Some(stream)),
            Err(err) => {
                let text = format!("cannot watch run {}: {err}", wanted.target);
                wanted.done = err.is_fatal();
                self.refusal(err, text).await
            }
        }
    }

    async fn open_logs(
        &mut self,
        client: &Client,
    ) -> Result<Option<Stream<v1::FollowTaskLogsResponse>>, Stop> {
        let Some(wanted) = self.logs.as_mut().filter(|w| !w.done) else {
            return Ok(None);
        };
        let (run_id, task_id) = &wanted.target;
        // The view keeps its last MAX_LOG_LINES lines: older stored ones of a task would
        // only be sent to be dropped. (A whole run's log has no tail to ask for.)
        let tail = match task_id.is_empty() {
            true => 0,
            false => u32::try_from(MAX_LOG_LINES).unwrap_or(u32::MAX),
        };
        match client.follow_task_logs(run_id, task_id, tail).await {
            Ok(stream) => Ok(Some(stream)),
            Err(err) => {
                let text = format!("cannot follow logs: {err}");
                wanted.done = err.is_fatal();
                self.refusal(err, text).await
            }
        }
    }

    /// A stream could not be opened: a refusal is told to the user; a broken
    /// connection ends the session (it is opened again after reconnecting).
    async fn refusal<T>(&self, err: ClientError, text: String) -> Result<Option<T>, Stop> {
        if err.is_fatal() {
            self.send(ServerMsg::Notice { text, error: true }).await?;
            Ok(None)
        } else {
            Err(Stop::Lost(err.to_string()))
        }
    }

    fn on_run_message(
        &mut self,
        msg: Result<Option<v1::WatchRunResponse>, ClientError>,
        stream: &mut Option<Stream<v1::WatchRunResponse>>,
    ) -> Option<ServerMsg> {
        match msg {
            Ok(Some(resp)) => {
                // Only the first message comes without an event: it lists every task.
                let full = resp.event.is_none();
                let run = RunRow::from(resp.run?);
                let tasks = resp.task_runs.into_iter().map(Into::into).collect();
                Some(ServerMsg::RunState { run, tasks, full })
            }
            Ok(None) => {
                // The run has ended; nothing more will come.
                *stream = None;
                if let Some(w) = &mut self.run {
                    w.done = true;
                }
                None
            }
            Err(err) => {
                // A broken connection also breaks the event stream, which reconnects
                // (and reopens this one); a refusal is final.
                *stream = None;
                let w = self.run.as_mut()?;
                w.done = err.is_fatal();
                w.done.then(|| ServerMsg::Notice {
                    text: format!("watching run {} failed: {err}", w.target),
                    error: true,
                })
            }
        }
    }

    fn on_log_message(
        &mut self,
        msg: Result<Option<v1::FollowTaskLogsResponse>, ClientError>,
        stream: &mut Option<Stream<v1::FollowTaskLogsResponse>>,
    ) -> Option<ServerMsg> {
        match msg {
            Ok(Some(resp)) => resp.line.map(|line| ServerMsg::Log(line.into())),
            Ok(None) => {
                *stream = None;
                let w = self.logs.as_mut()?;
                w.done = true;
                let (run_id, task_id) = w.target.clone();
                Some(ServerMsg::LogsEnded { run_id, task_id })
            }
            Err(err) => {
                *stream = None;
                let w = self.logs.as_mut()?;
                w.done = err.is_fatal();
                w.done.then(|| ServerMsg::Notice {
                    text: format!("following logs failed: {err}"),
                    error: true,
                })
            }
        }
    }
}

/// The next message of a stream that may not be open (then: never).
async fn next_message<T>(stream: &mut Option<Stream<T>>) -> Result<Option<T>, ClientError> {
    match stream {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

/// A unary call for a user command, resolving to what its answer says.
fn call(client: &Client, cmd: Command) -> BoxFuture<'static, Vec<ServerMsg>> {
    let client = client.clone();
    Box::pin(async move {
        let result = match cmd {
            Command::Trigger { job_id } => client
                .trigger_job(&job_id, HashMap::new(), false)
                .await
                .map(|resp| {
                    let run = resp.run.map(|r| r.id).unwrap_or_default();
                    vec![notice(format!("triggered {job_id}: run {run}"))]
                }),
            Command::Cancel { run_id } => client
                .cancel_run(&run_id)
                .await
                .map(|_| vec![notice(format!("cancelled run {run_id}"))]),
            Command::Pause => client
                .pause()
                .await
                .map(|resp| vec![ServerMsg::Scheduler(scheduler_status(resp.state.as_ref()))]),
            Command::Resume => client
                .resume()
                .await
                .map(|resp| vec![ServerMsg::Scheduler(scheduler_status(resp.state.as_ref()))]),
            Command::PauseJob { job_id, paused } => {
                let job = if paused {
                    client.pause_job(&job_id).await.map(|r| r.job)
                } else {
                    client.resume_job(&job_id).await.map(|r| r.job)
                };
                job.map(|job| {
                    let word = if paused { "paused" } else { "resumed" };
                    let mut msgs = vec![notice(format!("{word} job {job_id}"))];
                    msgs.extend(job.map(|j| ServerMsg::Job(JobRow::from(j))));
                    msgs
                })
            }
            Command::LoadJobRuns { job_id } => {
                client.list_job_runs(&job_id, JOB_RUNS).await.map(|resp| {
                    let runs = resp.runs.into_iter().map(RunRow::from).collect();
                    vec![ServerMsg::JobRuns(runs)]
                })
            }
            Command::RefreshJobs { job_ids } => {
                let mut msgs = Vec::with_capacity(job_ids.len());
                for job_id in job_ids {
                    match client.get_job(&job_id).await {
                        Ok(resp) => msgs.extend(resp.job.map(|j| ServerMsg::Job(JobRow::from(j)))),
                        // A job gone since the snapshot: the next snapshot drops it.
                        Err(err) if err.is_fatal() => {}
                        Err(err) => return vec![error_notice(&err)],
                    }
                }
                Ok(msgs)
            }
            // Streams are handled by the session itself.
            Command::WatchRun { .. } | Command::FollowLogs { .. } | Command::StopLogs => {
                Ok(Vec::new())
            }
        };
        result.unwrap_or_else(|err| vec![error_notice(&err)])
    })
}

fn notice(text: String) -> ServerMsg {
    ServerMsg::Notice { text, error: false }
}

fn error_notice(err: &ClientError) -> ServerMsg {
    ServerMsg::Notice {
        text: err.to_string(),
        error: true,
    }
}

/// A client with the connection flags given and the dashboard's call time limit.
pub fn client(connection: &petit_client::ConnectArgs) -> Result<Client, ClientError> {
    petit_client::connect_lazy(&connection.options(CALL_TIMEOUT)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let got: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Backoff::FIRST);
    }
}

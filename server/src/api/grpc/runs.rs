//! `RunService`: a run, its task runs, cancellation, stored logs, and the two live
//! streams (`WatchRun`, `FollowTaskLogs`).
//!
//! Both streams subscribe to the event bus before they read the store, and the engine
//! stores a change before it publishes its event: so a change is either in what was
//! read, or in an event still to come (or both, which the streams tolerate).

use std::collections::HashMap;

use chrono::Utc;
use petit_proto::v1 as pb;
use petit_proto::v1::run_service_server::RunService;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use super::error::required;
use super::stream::{self, ClientGone, Outbox, ResponseStream};
use super::{convert, log_page, PetitApi};
use crate::auth::Caller;
use crate::engine::Engine;
use crate::events::{Event, EventKind, Logs, Subscription};
use crate::store::{LogLine, LogPosition, LogStart, Run, TaskRun};

#[tonic::async_trait]
impl RunService for PetitApi {
    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::GetRunResponse>, Status> {
        let request = request.into_inner();
        let run_id = required("run_id", &request.run_id)?;
        let run = self.engine.get_run(run_id).await?;
        let notifications = self.engine.store().notifications(run_id).await?;
        Ok(Response::new(pb::GetRunResponse {
            run: Some(convert::run(&run, Utc::now())),
            notifications: notifications
                .into_iter()
                .map(convert::notification)
                .collect(),
        }))
    }

    async fn list_task_runs(
        &self,
        request: Request<pb::ListTaskRunsRequest>,
    ) -> Result<Response<pb::ListTaskRunsResponse>, Status> {
        let request = request.into_inner();
        let (_, tasks) = run_state(&self.engine, required("run_id", &request.run_id)?).await?;
        let now = Utc::now();
        Ok(Response::new(pb::ListTaskRunsResponse {
            task_runs: tasks.iter().map(|t| convert::task_run(t, now)).collect(),
        }))
    }

    async fn rerun_run(
        &self,
        request: Request<pb::RerunRunRequest>,
    ) -> Result<Response<pb::RerunRunResponse>, Status> {
        let caller = Caller::of(&request);
        let run_id = required("run_id", &request.get_ref().run_id)?.to_string();
        let result = self
            .engine
            .rerun(&run_id, Some(caller.name.clone()))
            .await
            .map_err(Status::from);
        self.audit(&caller, "RerunRun", &run_id, &result, |run| {
            format!("run {}", run.id)
        })
        .await;
        Ok(Response::new(pb::RerunRunResponse {
            run: Some(convert::run(&result?, Utc::now())),
        }))
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::CancelRunResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let run_id = required("run_id", &request.run_id)?;
        let result = self.engine.cancel(run_id).await.map_err(Status::from);
        self.audit(&caller, "CancelRun", run_id, &result, |_| String::new())
            .await;
        Ok(Response::new(pb::CancelRunResponse {
            run: Some(convert::run(&result?, Utc::now())),
        }))
    }

    type WatchRunStream = ResponseStream<pb::WatchRunResponse>;

    async fn watch_run(
        &self,
        request: Request<pb::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        let request = request.into_inner();
        let run_id = required("run_id", &request.run_id)?.to_string();
        let mut events = self.engine.subscribe_with(Logs::None);
        let (run, tasks) = run_state(&self.engine, &run_id).await?;
        let engine = self.engine.clone();
        let stream = stream::spawn(&self.streams, move |out| async move {
            let mut run = run;
            if send_whole_run(&out, &run, &tasks).await? {
                return Ok(());
            }
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(RecvError::Lagged(_)) => {
                        // Changes were lost: send the whole run again.
                        match run_state(&engine, &run_id).await {
                            Ok((now, tasks)) => {
                                if send_whole_run(&out, &now, &tasks).await? {
                                    return Ok(());
                                }
                                run = now;
                                continue;
                            }
                            Err(status) => return out.fail(status).await,
                        }
                    }
                    Err(RecvError::Closed) => return Ok(()),
                };
                // Log lines are for FollowTaskLogs; a run's watcher wants state changes.
                if event.kind() == EventKind::LogLine || event.run_id() != Some(run_id.as_str()) {
                    continue;
                }
                if let Some(now) = event.run() {
                    run = now.clone();
                }
                out.send(pb::WatchRunResponse {
                    run: Some(convert::run(&run, event.time())),
                    task_runs: event
                        .task_run()
                        .into_iter()
                        .map(|t| convert::task_run(t, event.time()))
                        .collect(),
                    event: Some(convert::event(&event)),
                })
                .await?;
                if event.ends_run() {
                    return Ok(());
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn get_task_logs(
        &self,
        request: Request<pb::GetTaskLogsRequest>,
    ) -> Result<Response<pb::GetTaskLogsResponse>, Status> {
        let request = request.into_inner();
        let run_id = required("run_id", &request.run_id)?;
        let task_id = Some(request.task_id.as_str()).filter(|t| !t.is_empty());
        let (_, tasks) = run_state(&self.engine, run_id).await?;
        if let Some(task_id) = task_id {
            find_task(&tasks, run_id, task_id)?;
        }
        let (start, limit) = log_page::parse(request.page_size, &request.page_token, request.tail)?;
        let page = self
            .engine
            .store()
            .log_page(run_id, task_id, start, limit)
            .await?;
        crate::alloc::large_response_built();
        Ok(Response::new(pb::GetTaskLogsResponse {
            lines: page.lines.into_iter().map(convert::into_log_line).collect(),
            next_page_token: log_page::token(page.next),
        }))
    }

    type FollowTaskLogsStream = ResponseStream<pb::FollowTaskLogsResponse>;

    async fn follow_task_logs(
        &self,
        request: Request<pb::FollowTaskLogsRequest>,
    ) -> Result<Response<Self::FollowTaskLogsStream>, Status> {
        let request = request.into_inner();
        let run_id = required("run_id", &request.run_id)?.to_string();
        let task_id = Some(request.task_id).filter(|t| !t.is_empty());
        // A tail of the whole run would leave lines of other tasks, stored before the
        // tail and still on their way through the event bus, to come through as live
        // ones: only a task's lines have one `seq` order to cut them by.
        if request.tail > 0 && task_id.is_none() {
            return Err(Status::invalid_argument(
                "tail needs a task_id: follow one task's last lines, or a whole run from its first",
            ));
        }
        let first = match request.tail {
            0 => LogStart::First,
            n => LogStart::Tail(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        let events = self.engine.subscribe_with(Logs::OfRun(run_id.clone()));
        // Check the task exists now, so that a typo is NOT_FOUND rather than a stream
        // that never says anything.
        let (_, tasks) = run_state(&self.engine, &run_id).await?;
        if let Some(task_id) = &task_id {
            find_task(&tasks, &run_id, task_id)?;
        }
        let mut follower = LogFollower {
            engine: self.engine.clone(),
            run_id,
            cursor: LogCursor {
                task_id,
                sent: HashMap::new(),
            },
            first,
            resume: None,
        };
        let stream = stream::spawn(&self.streams, move |out| async move {
            follower.follow(events, &out).await
        });
        Ok(Response::new(stream))
    }
}

/// A run and its task runs, as stored; NOT_FOUND for an unknown run.
async fn run_state(engine: &Engine, run_id: &str) -> Result<(Run, Vec<TaskRun>), Status> {
    let run = engine.get_run(run_id).await?;
    let tasks = engine.store().task_runs(run_id).await?;
    Ok((run, tasks))
}

fn find_task<'a>(tasks: &'a [TaskRun], run_id: &str, task_id: &str) -> Result<&'a TaskRun, Status> {
    tasks.iter().find(|t| t.task_id == task_id).ok_or_else(|| {
        let known: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
        Status::not_found(format!(
            "run '{run_id}' has no task '{task_id}' (its tasks: {})",
            known.join(", ")
        ))
    })
}

/// Sends the run with every task run; true when the run has ended (the stream is done).
async fn send_whole_run(
    out: &Outbox<pb::WatchRunResponse>,
    run: &Run,
    tasks: &[TaskRun],
) -> Result<bool, ClientGone> {
    let now = Utc::now();
    out.send(pb::WatchRunResponse {
        run: Some(convert::run(run, now)),
        task_runs: tasks.iter().map(|t| convert::task_run(t, now)).collect(),
        event: None,
    })
    .await?;
    Ok(run.status.is_terminal())
}

/// Follows the log of one run (or one task of it): stored lines, then live ones.
struct LogFollower {
    engine: Engine,
    run_id: String,
    cursor: LogCursor,
    /// Where the first catch-up starts (the first line, or a tail).
    first: LogStart,
    /// Where the stored lines not read yet start (`None`: nothing read yet).
    resume: Option<LogPosition>,
}

/// Which lines a follower still has to send.
#[derive(Debug, Default)]
struct LogCursor {
    /// The task followed; every task of the run when `None`.
    task_id: Option<String>,
    /// The highest `seq` sent, per task: a live line at or below it was already sent
    /// from the store.
    sent: HashMap<String, u64>,
}

impl LogCursor {
    fn wants(&self, task_id: &str, seq: u64) -> bool {
        self.task_id.as_ref().is_none_or(|t| t == task_id)
            && self.sent.get(task_id).is_none_or(|&sent| seq > sent)
    }

    fn record(&mut self, task_id: &str, seq: u64) {
        match self.sent.get_mut(task_id) {
            Some(sent) => *sent = seq,
            None => {
                self.sent.insert(task_id.to_string(), seq);
            }
        }
    }

    /// Whether this event says the followed task has settled.
    fn settles_task(&self, event: &Event) -> bool {
        match (&self.task_id, event.task_run()) {
            (Some(task_id), Some(task)) => task.task_id == *task_id && task.status.is_terminal(),
            _ => false,
        }
    }

    /// Whether the followed task has settled, in a run's stored task runs.
    fn task_settled(&self, tasks: &[TaskRun]) -> bool {
        self.task_id.as_ref().is_some_and(|task_id| {
            tasks
                .iter()
                .any(|t| t.task_id == *task_id && t.status.is_terminal())
        })
    }
}

impl LogFollower {
    async fn follow(
        &mut self,
        mut events: Subscription,
        out: &Outbox<pb::FollowTaskLogsResponse>,
    ) -> Result<(), ClientGone> {
        if self.catch_up(out).await? {
            return Ok(());
        }
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(_)) => {
                    // Live lines were lost, but they are in the store by now.
                    if self.catch_up(out).await? {
                        return Ok(());
                    }
                    continue;
                }
                Err(RecvError::Closed) => return Ok(()),
            };
            if event.run_id() != Some(self.run_id.as_str()) {
                continue;
            }
            if let Some(batch) = event.log() {
                // A batch of lines: those not sent yet go, one message each.
                for line in batch.lines() {
                    if self.cursor.wants(line.task_id, line.seq) {
                        self.cursor.record(line.task_id, line.seq);
                        out.send(pb::FollowTaskLogsResponse {
                            line: Some(convert::log_line_ref(line)),
                        })
                        .await?;
                    }
                }
            } else if event.ends_run() || self.cursor.settles_task(&event) {
                return Ok(());
            }
        }
    }

    /// Sends the stored lines not sent yet; true when there will be no more lines.
    async fn catch_up(
        &mut self,
        out: &Outbox<pb::FollowTaskLogsResponse>,
    ) -> Result<bool, ClientGone> {
        // The state is read before the lines: a task seen settled has all its lines
        // stored already, so the lines read next are the last ones.
        let store = std::sync::Arc::clone(self.engine.store());
        let state = match run_state(&self.engine, &self.run_id).await {
            Ok(state) => state,
            Err(status) => return out.fail(status).await.map(|()| true),
        };
        // Page by page, each sent before the next is read: the stored part is never
        // whole in memory, and a slow client holds back only the next read.
        // A later catch-up (after lagging on the bus) starts after what was read.
        let mut start = self.resume.map_or(self.first, LogStart::At);
        loop {
            let page = match store
                .log_page(
                    &self.run_id,
                    self.cursor.task_id.as_deref(),
                    start,
                    log_page::FOLLOW_PAGE,
                )
                .await
            {
                Ok(page) => page,
                Err(e) => return out.fail(e.into()).await.map(|()| true),
            };
            for line in &page.lines {
                if self.cursor.wants(&line.task_id, line.seq) {
                    self.send(out, line).await?;
                }
            }
            if let Some(last) = page.last {
                self.resume = Some(last.successor());
                crate::alloc::large_response_built();
            }
            match page.next {
                Some(next) => start = LogStart::At(next),
                None => break,
            }
        }
        let (run, tasks) = state;
        Ok(run.status.is_terminal() || self.cursor.task_settled(&tasks))
    }

    async fn send(
        &mut self,
        out: &Outbox<pb::FollowTaskLogsResponse>,
        line: &LogLine,
    ) -> Result<(), ClientGone> {
        self.cursor.record(&line.task_id, line.seq);
        out.send(pb::FollowTaskLogsResponse {
            line: Some(convert::log_line(line)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{LogStream, TaskStatus};
    use chrono::TimeZone;

    fn line(task: &str, seq: u64) -> LogLine {
        LogLine {
            run_id: "r".into(),
            seq,
            task_id: task.into(),
            attempt: 1,
            stream: LogStream::Stdout,
            line: format!("{task} {seq}"),
            time: Utc.timestamp_opt(0, 0).single().unwrap_or_default(),
        }
    }

    fn task(task_id: &str, status: TaskStatus) -> TaskRun {
        TaskRun {
            run_id: "r".into(),
            task_id: task_id.into(),
            status,
            attempts: 1,
            exit_code: None,
            started_at: None,
            ended_at: None,
            error: None,
            outputs: Default::default(),
        }
    }

    #[test]
    fn cursor_skips_lines_already_sent_and_other_tasks() {
        // (followed task, line, wanted)
        let cases = [
            (None, line("a", 3), false),
            (None, line("a", 4), true),
            (None, line("b", 1), true),
            (Some("a"), line("b", 1), false),
            (Some("a"), line("a", 2), false),
            (Some("a"), line("a", 9), true),
        ];
        for (followed, l, want) in cases {
            let cursor = LogCursor {
                task_id: followed.map(String::from),
                sent: HashMap::from([("a".to_string(), 3)]),
            };
            assert_eq!(
                cursor.wants(&l.task_id, l.seq),
                want,
                "{followed:?} {} {}",
                l.task_id,
                l.seq
            );
        }
    }

    #[test]
    fn cursor_records_what_it_sent() {
        let mut cursor = LogCursor::default();
        assert!(cursor.wants("a", 1));
        cursor.record("a", 1);
        assert!(!cursor.wants("a", 1));
        assert!(cursor.wants("a", 2));
    }

    #[test]
    fn cursor_sees_its_task_settle() {
        let settled = |followed: Option<&str>, task_id: &str, status| {
            let cursor = LogCursor {
                task_id: followed.map(String::from),
                sent: HashMap::new(),
            };
            let event = Event::of_task("j", task(task_id, status), None);
            let by_event = cursor.settles_task(&event);
            assert_eq!(by_event, cursor.task_settled(&[task(task_id, status)]));
            by_event
        };
        let cases = [
            (Some("a"), "a", TaskStatus::Succeeded, true),
            (Some("a"), "a", TaskStatus::TimedOut, true),
            (Some("a"), "a", TaskStatus::Retrying, false),
            (Some("a"), "b", TaskStatus::Failed, false),
            // Following the whole run: only the run's end ends the stream.
            (None, "a", TaskStatus::Failed, false),
        ];
        for (followed, task_id, status, want) in cases {
            assert_eq!(
                settled(followed, task_id, status),
                want,
                "{followed:?} {task_id} {status}"
            );
        }
    }

    #[test]
    fn find_task_lists_the_known_tasks() {
        let tasks = [
            task("a", TaskStatus::Pending),
            task("b", TaskStatus::Running),
        ];
        assert!(find_task(&tasks, "r", "b").is_ok());
        let err = find_task(&tasks, "r", "c")
            .err()
            .map(|s| (s.code(), s.message().to_string()));
        assert_eq!(
            err,
            Some((
                tonic::Code::NotFound,
                "run 'r' has no task 'c' (its tasks: a, b)".to_string()
            ))
        );
    }
}

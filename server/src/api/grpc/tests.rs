//! The services in process, over a real engine (in-memory store, real processes): the
//! stream behaviours end-to-end tests cannot force, such as a client too slow for the
//! event bus.

use std::time::Duration;

use petit_proto::v1 as pb;
use petit_proto::v1::run_service_server::RunService;
use petit_proto::v1::scheduler_service_server::SchedulerService;
use petit_proto::v1::watch_events_response::Item;
use prost_reflect::DescriptorPool;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::StreamExt;
use tonic::Request;

use super::PetitApi;
use crate::engine::{Engine, EngineOptions};
use crate::events::Subscription;
use crate::store::Run;
use crate::testing::Harness;
use tokio_util::sync::CancellationToken;

/// Prints many lines fast: far more events than the bus below holds. Lines travel in
/// batches of up to 512 KiB (one event each), and the bus's log ring keeps 4 KiB of
/// them (but always the newest), so `roar` prints 400,000 lines (~2.7 MB): five batches
/// or more, which lap a watcher that holds one and reads no further (300 lines, as here
/// before, now come as one batch, which laps nobody). `shout`'s 100,000 lines (~590
/// KB) stay under the store's cap per stream, so that a follower who lags can still
/// read every one of them back.
const LOUD: &str = r#"
id: loud
name: Loud
tasks:
  - id: shout
    type: command
    command: seq
    args: ["100000"]
  - id: roar
    type: command
    command: seq
    args: ["400000"]
"#;

const LIMIT: Duration = Duration::from_secs(10);

/// An engine whose event bus holds only 16 events, and the API over it.
async fn small_bus() -> (Engine, PetitApi) {
    let engine = Harness::from_yaml(LOUD)
        .expect("valid job")
        .with_options(EngineOptions {
            event_capacity: 16,
            ..EngineOptions::default()
        })
        .start()
        .await
        .expect("engine");
    let api = PetitApi::new(engine.clone(), CancellationToken::new());
    (engine, api)
}

/// Waits for the end of a run subscribed to before it started, whatever the bus lost.
async fn wait_end(engine: &Engine, mut events: Subscription, run_id: &str) -> Run {
    tokio::time::timeout(LIMIT, async {
        loop {
            match events.recv().await {
                Ok(e) if !(e.ends_run() && e.run_id() == Some(run_id)) => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("the bus closed"),
            }
            let run = engine.get_run(run_id).await.expect("the run");
            if run.status.is_terminal() {
                return run;
            }
        }
    })
    .await
    .expect("the run ends")
}

/// Triggers `loud` and waits for its run to end.
async fn run_loud(engine: &Engine) -> Run {
    let events = engine.subscribe();
    let run = engine
        .trigger("loud", Default::default(), false)
        .await
        .expect("trigger");
    wait_end(engine, events, &run.id).await
}

#[tokio::test]
async fn a_lagging_event_watcher_gets_a_fresh_snapshot() {
    let (engine, api) = small_bus().await;
    let mut events = api
        .watch_events(Request::new(pb::WatchEventsRequest::default()))
        .await
        .expect("watch_events")
        .into_inner();
    let first = events
        .next()
        .await
        .and_then(Result::ok)
        .and_then(|m| m.item);
    assert!(matches!(first, Some(Item::Snapshot(_))), "{first:?}");

    // Not reading while the run goes: the forwarder's queue fills up and the bus laps it.
    let run_id = run_loud(&engine).await.id;

    // The watcher learns it lagged (when depends on scheduling), gets a new snapshot,
    // and from there on is whole: it ends up knowing the run succeeded.
    let mut snapshots = 0;
    tokio::time::timeout(LIMIT, async {
        while let Some(message) = events.next().await {
            match message.expect("no error").item {
                Some(Item::Snapshot(snapshot)) => {
                    snapshots += 1;
                    let run = snapshot.runs.iter().find(|r| r.id == run_id);
                    if run.is_some_and(|r| r.status() == pb::RunStatus::Succeeded) {
                        return;
                    }
                }
                Some(Item::Event(event))
                    if event.run_id == run_id && event.r#type() == pb::EventType::RunSucceeded =>
                {
                    return;
                }
                Some(Item::Event(_)) => {}
                None => {}
            }
        }
        panic!("the stream ended");
    })
    .await
    .expect("the run's end, after a lag");
    assert!(snapshots >= 1, "no fresh snapshot after lagging");
}

#[tokio::test]
async fn a_lagging_log_follower_still_gets_every_line_once() {
    let (engine, api) = small_bus().await;
    let events = engine.subscribe();
    let run = engine
        .trigger("loud", Default::default(), false)
        .await
        .expect("trigger");
    let mut lines = api
        .follow_task_logs(Request::new(pb::FollowTaskLogsRequest {
            run_id: run.id.clone(),
            task_id: "shout".into(),
            ..Default::default()
        }))
        .await
        .expect("follow_task_logs")
        .into_inner();
    // Let the run end before reading anything.
    wait_end(&engine, events, &run.id).await;

    let seqs: Vec<u64> = tokio::time::timeout(LIMIT, async {
        let mut seqs = Vec::new();
        while let Some(message) = lines.next().await {
            seqs.extend(message.expect("no error").line.map(|l| l.seq));
        }
        seqs
    })
    .await
    .expect("the stream ends with the task");
    assert_eq!(seqs, (1..=100_000).collect::<Vec<u64>>());
}

/// Prints more lines than one page of stored lines holds (1,000).
const LONG: &str = r#"
id: long
name: Long
tasks:
  - id: count
    type: command
    command: seq
    args: ["2500"]
"#;

/// The seq numbers a follower gets, to the end of its stream.
async fn followed_seqs(api: &PetitApi, run_id: &str, tail: u32) -> Vec<u64> {
    let lines = api
        .follow_task_logs(Request::new(pb::FollowTaskLogsRequest {
            run_id: run_id.into(),
            task_id: "count".into(),
            tail,
        }))
        .await
        .expect("follow_task_logs")
        .into_inner();
    tokio::time::timeout(LIMIT, async {
        lines
            .map(|m| m.expect("no error").line.map_or(0, |l| l.seq))
            .collect::<Vec<u64>>()
            .await
    })
    .await
    .expect("the stream ends with the task")
}

#[tokio::test]
async fn a_follower_sends_the_stored_lines_page_after_page() {
    let engine = Harness::from_yaml(LONG)
        .expect("valid job")
        .start()
        .await
        .expect("engine");
    let api = PetitApi::new(engine.clone(), CancellationToken::new());
    let events = engine.subscribe();
    let run = engine
        .trigger("long", Default::default(), false)
        .await
        .expect("trigger");
    wait_end(&engine, events, &run.id).await;
    // Three pages of stored lines, in order, each once; then a tail of them.
    assert_eq!(
        followed_seqs(&api, &run.id, 0).await,
        (1..=2500).collect::<Vec<u64>>()
    );
    assert_eq!(followed_seqs(&api, &run.id, 3).await, [2498, 2499, 2500]);
}

#[tokio::test]
async fn watching_an_ended_run_sends_its_state_and_ends() {
    let (engine, api) = small_bus().await;
    let run = run_loud(&engine).await;
    let messages: Vec<pb::WatchRunResponse> = api
        .watch_run(Request::new(pb::WatchRunRequest {
            run_id: run.id.clone(),
        }))
        .await
        .expect("watch_run")
        .into_inner()
        .map(|m| m.expect("no error"))
        .collect()
        .await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].run.as_ref().map(|r| r.status()),
        Some(pb::RunStatus::Succeeded)
    );
    assert_eq!(messages[0].task_runs.len(), 2, "shout and roar");
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let (_engine, api) = small_bus().await;
    let shutdown = api.streams.clone();
    let mut events = api
        .watch_events(Request::new(pb::WatchEventsRequest::default()))
        .await
        .expect("watch_events")
        .into_inner();
    assert!(events.next().await.is_some_and(|m| m.is_ok()));
    shutdown.cancel();
    let end = tokio::time::timeout(LIMIT, events.next())
        .await
        .expect("the stream ends");
    assert_eq!(
        end.and_then(|m| m.err()).map(|s| s.code()),
        Some(tonic::Code::Unavailable)
    );
}

/// The descriptor set that reflection and the REST shim serve decodes, and holds
/// every service and method the generated servers answer.
#[test]
fn descriptor_set_lists_every_service() {
    let pool = DescriptorPool::decode(petit_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut names: Vec<String> = pool.services().map(|s| s.full_name().to_string()).collect();
    names.sort();
    let mut want: Vec<String> = petit_proto::SERVICES
        .iter()
        .map(|s| s.to_string())
        .collect();
    want.sort();
    assert_eq!(names, want);

    let methods: Vec<String> = pool
        .services()
        .flat_map(|s| {
            s.methods()
                .map(|m| m.full_name().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for method in [
        "petit.v1.SchedulerService.GetHealth",
        "petit.v1.SchedulerService.WatchEvents",
        "petit.v1.JobService.ListJobs",
        "petit.v1.JobService.TriggerJob",
        "petit.v1.RunService.WatchRun",
        "petit.v1.RunService.FollowTaskLogs",
    ] {
        assert!(methods.iter().any(|m| m == method), "{method} missing");
    }
}

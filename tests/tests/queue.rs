//! A run waiting for a slot, seen from outside: the real `petitd` with one run slot
//! (`--max-jobs 1`). The waiting run is `queued` over gRPC (its trigger's reply, GetRun,
//! a RUN_QUEUED event on WatchEvents, the scheduler state's count), over REST, and in
//! petitctl, which can cancel it before it starts.

use std::time::Duration;

use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::scheduler_service_client::SchedulerServiceClient;
use petit_proto::v1::watch_events_response::Item;
use petit_proto::v1::*;
use petit_tests::{get_run, jobs_dir, petitctl_run, trigger, Daemon};
use serde_json::Value;

const SLOW: &str = "id: slow\ntasks:\n  - {id: wait, command: sleep, args: ['30']}\n";
const QUICK: &str = "id: quick\ntasks:\n  - {id: t, command: 'true'}\n";
const LIMIT: Duration = Duration::from_secs(10);

/// The next event of `kind` about `run_id` on a WatchEvents stream.
async fn next_event(
    stream: &mut tonic::Streaming<WatchEventsResponse>,
    kind: EventType,
    run_id: &str,
) -> Event {
    tokio::time::timeout(LIMIT, async {
        loop {
            let message = stream.message().await.expect("stream").expect("open");
            if let Some(Item::Event(e)) = message.item {
                if e.r#type() == kind && e.run_id == run_id {
                    return e;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} event for {run_id}"))
}

#[tokio::test]
async fn a_run_waiting_for_a_slot_is_queued_everywhere_and_can_be_cancelled_there() {
    let jobs = jobs_dir(&[("slow.yaml", SLOW), ("quick.yaml", QUICK)]);
    let daemon = Daemon::start_with(jobs.path(), &["--max-jobs", "1"]);
    let channel = daemon.channel().await;
    let mut watch = SchedulerServiceClient::new(channel.clone())
        .watch_events(WatchEventsRequest {
            job_id: String::new(),
            exclude_logs: true,
        })
        .await
        .expect("watch")
        .into_inner();

    let slow = trigger(&channel, "slow", &[]).await;
    next_event(&mut watch, EventType::RunStarted, &slow.id).await;
    let queued = trigger(&channel, "quick", &[]).await;
    assert_eq!(queued.status(), RunStatus::Queued, "the trigger's reply");
    let event = next_event(&mut watch, EventType::RunQueued, &queued.id).await;
    assert_eq!(event.run.expect("the run").status(), RunStatus::Queued);
    assert_eq!(
        get_run(&channel, &queued.id).await.status(),
        RunStatus::Queued
    );
    let state = SchedulerServiceClient::new(channel.clone())
        .get_scheduler_state(GetSchedulerStateRequest {})
        .await
        .expect("state")
        .into_inner()
        .state
        .expect("state");
    assert_eq!((state.running_runs, state.queued_runs), (1, 1));

    // REST says the same.
    let http = reqwest::Client::new();
    let run: Value = http
        .get(format!("{}/api/runs/{}", daemon.url(), queued.id))
        .send()
        .await
        .expect("GET run")
        .json()
        .await
        .expect("json");
    assert_eq!(run["run"]["status"], "RUN_STATUS_QUEUED", "{run}");
    let state: Value = http
        .get(format!("{}/api/scheduler/state", daemon.url()))
        .send()
        .await
        .expect("GET state")
        .json()
        .await
        .expect("json");
    assert_eq!(state["state"]["queuedRuns"], 1, "{state}");

    // petitctl shows it queued, and cancels it before it starts.
    let (code, text, _) = petitctl_run(&daemon.url(), &["run", &queued.id], LIMIT);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("queued"),
        "petitctl run shows the status:\n{text}"
    );
    let (code, _, stderr) = petitctl_run(&daemon.url(), &["cancel", &queued.id], LIMIT);
    assert_eq!(code, 0, "{stderr}");
    let event = next_event(&mut watch, EventType::RunCancelled, &queued.id).await;
    let cancelled = event.run.expect("the run");
    assert_eq!(cancelled.status(), RunStatus::Cancelled);
    assert!(cancelled.started_at.is_none(), "it never started");
    assert_eq!(
        get_run(&channel, &queued.id).await.status(),
        RunStatus::Cancelled
    );

    // The slow run still holds the slot; a cancel of it lets the next queued run start.
    let next = trigger(&channel, "quick", &[]).await;
    RunServiceClient::new(channel.clone())
        .cancel_run(CancelRunRequest {
            run_id: slow.id.clone(),
        })
        .await
        .expect("cancel slow");
    next_event(&mut watch, EventType::RunSucceeded, &next.id).await;
}

//! Clients that stop reading: ten streams (watches with log lines, and log follows) go
//! quiet on their side while a task prints 2,000,000 lines. Each holds a bounded
//! buffer on the server, so petitd's memory stays bounded, and a watcher that reads
//! again is told it fell behind by a fresh snapshot, then carries on. The figures are
//! printed; the bound asserted is generous (a debug build), the release figures are in
//! BENCHMARKS.md (`make bench`, log_memory).

use std::time::Duration;

use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::scheduler_service_client::SchedulerServiceClient;
use petit_proto::v1::watch_events_response::Item;
use petit_proto::v1::*;
use petit_tests::{get_run, jobs_dir, rss_kib, trigger, Daemon};

const WAIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_whose_clients_stop_reading_stay_bounded_and_resync() {
    let jobs = jobs_dir(&[(
        "flood.yaml",
        "id: flood\ntasks:\n  - {id: t, command: seq, args: ['2000000']}\n",
    )]);
    let daemon = Daemon::start(jobs.path());
    let pid = daemon.child.id();
    let url = daemon.url();
    let channel = daemon.channel().await;
    let baseline = rss_kib(pid);

    // Five watchers: each reads its snapshot, then stops reading.
    let mut watchers = Vec::new();
    for _ in 0..5 {
        let channel = tonic::transport::Channel::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut stream = SchedulerServiceClient::new(channel)
            .watch_events(WatchEventsRequest::default())
            .await
            .expect("watch")
            .into_inner();
        let first = stream.message().await.expect("first").expect("snapshot");
        assert!(matches!(first.item, Some(Item::Snapshot(_))));
        watchers.push(stream);
    }
    let run = trigger(&channel, "flood", &[]).await;
    // Five followers of the flooding task: each reads one message, then stops.
    let mut followers = Vec::new();
    for _ in 0..5 {
        let channel = tonic::transport::Channel::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut stream = RunServiceClient::new(channel)
            .follow_task_logs(FollowTaskLogsRequest {
                run_id: run.id.clone(),
                task_id: "t".into(),
                ..Default::default()
            })
            .await
            .expect("follow")
            .into_inner();
        stream.message().await.expect("first line");
        followers.push(stream);
    }

    let mut peak = baseline;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        peak = peak.max(rss_kib(pid));
        let status = get_run(&channel, &run.id).await.status();
        if !matches!(status, RunStatus::Queued | RunStatus::Running) {
            assert_eq!(status, RunStatus::Succeeded);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flood did not end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "RSS baseline {baseline} KiB, peak {peak} KiB (+{} KiB) with 10 stalled streams over 2,000,000 lines",
        peak - baseline
    );
    // Ten stalled streams cost what their bounded buffers hold, not the 14 MB of text
    // each saw go by (140 MB if each kept its own copy).
    assert!(
        peak - baseline < 24 * 1024,
        "petitd grew by {} KiB with 10 stalled streams",
        peak - baseline
    );

    // A watcher that reads again hears that it fell behind: a fresh snapshot, then
    // events again.
    let mut watcher = watchers.pop().expect("a watcher");
    let resynced = tokio::time::timeout(WAIT, async {
        while let Some(message) = watcher.message().await.expect("watch") {
            if matches!(message.item, Some(Item::Snapshot(_))) {
                return true;
            }
        }
        false
    })
    .await
    .expect("the watcher read on");
    assert!(resynced, "no snapshot after the lag");
    drop((watchers, followers));
}

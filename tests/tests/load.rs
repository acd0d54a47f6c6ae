//! Load: 200 concurrent clients (each its own connection) mix reads, triggers, watch
//! streams and log follows while a 100-task run executes. No call fails but the
//! deliberate refusals (RESOURCE_EXHAUSTED: a job at its `max_concurrency`), and
//! petitd's resident memory comes back near where it started a few seconds after.
//! `PETIT_LOAD_SECONDS` sets how long the clients keep going (3 here, 20 in
//! `make test-long`). The latency percentiles are printed, never asserted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use petit_proto::v1::job_service_client::JobServiceClient;
use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::scheduler_service_client::SchedulerServiceClient;
use petit_proto::v1::*;
use petit_tests::{eventually, get_run, jobs_dir, rss_kib, trigger, Daemon};
use tonic::transport::Channel;

const CLIENTS: usize = 200;

fn wide_job() -> String {
    let mut yaml = String::from("id: wide\ntasks:\n");
    for i in 0..100 {
        yaml += &format!(
            "  - {{id: t{i}, command: sh, args: ['-c', 'for i in 1 2 3 4 5 6 7 8 9 10; do echo task {i} line $i; sleep 0.05; done']}}\n"
        );
    }
    yaml
}

/// Reads a stream until `deadline` (or its end): the error that ended it, if any.
async fn read_until<T>(
    stream: &mut tonic::Streaming<T>,
    deadline: Instant,
) -> Result<(), tonic::Status> {
    while Instant::now() < deadline {
        // Short waits, so that a quiet stream still lets the deadline be seen.
        match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
            Ok(Ok(Some(_))) | Err(_) => {}
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(status)) => return Err(status),
        }
    }
    Ok(())
}

/// Reads a stream to its end: `None` for a clean end, else the status it ended with.
async fn how_it_ends<T>(stream: &mut tonic::Streaming<T>) -> Option<tonic::Code> {
    loop {
        match stream.message().await {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(status) => return Some(status.code()),
        }
    }
}

#[derive(Default)]
struct Tally {
    calls: AtomicUsize,
    refused: AtomicUsize,
    failed: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_get_answers_and_memory_comes_back() {
    let seconds: u64 = std::env::var("PETIT_LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let wide = wide_job();
    let jobs = jobs_dir(&[
        ("wide.yaml", wide.as_str()),
        (
            "quick.yaml",
            "id: quick\nmax_concurrency: 2\ntasks:\n  - {id: t, command: echo, args: [hi]}\n",
        ),
    ]);
    let daemon = Daemon::start(jobs.path());
    let pid = daemon.child.id();
    let url = daemon.url();
    let channel = daemon.channel().await;
    // A warmed-up baseline: the daemon has served each kind of call once.
    let warm = trigger(&channel, "quick", &[]).await;
    eventually(Duration::from_secs(30), "the warm-up run", || async {
        (get_run(&channel, &warm.id).await.status() == RunStatus::Succeeded).then_some(())
    })
    .await;
    let baseline = rss_kib(pid);
    let wide_run = trigger(&channel, "wide", &[]).await;

    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let url = url.clone();
        let tally = tally.clone();
        let run_id = wide_run.id.clone();
        clients.push(tokio::spawn(async move {
            // Each client its own connection, as 200 separate programs would have.
            let channel = Channel::from_shared(url)
                .expect("url")
                .connect()
                .await
                .expect("connect");
            let mut latencies = Vec::new();
            match i % 10 {
                // 20 watchers and 20 log followers hold a stream for the whole time.
                0 => {
                    let mut stream = SchedulerServiceClient::new(channel)
                        .watch_events(WatchEventsRequest::default())
                        .await
                        .expect("watch")
                        .into_inner();
                    if let Err(e) = read_until(&mut stream, deadline).await {
                        eprintln!("watch failed: {e}");
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                1 => {
                    let mut stream = RunServiceClient::new(channel)
                        .follow_task_logs(FollowTaskLogsRequest {
                            run_id,
                            task_id: format!("t{}", i % 100),
                            ..Default::default()
                        })
                        .await
                        .expect("follow")
                        .into_inner();
                    if let Err(e) = read_until(&mut stream, deadline).await {
                        eprintln!("follow failed: {e}");
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // The rest call in a loop: reads, and now and then a trigger.
                n => {
                    let mut jobs = JobServiceClient::new(channel.clone());
                    let mut runs = RunServiceClient::new(channel);
                    let mut k = 0usize;
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        let result = match (n + k) % 4 {
                            0 => jobs
                                .trigger_job(TriggerJobRequest {
                                    job_id: "quick".into(),
                                    ..Default::default()
                                })
                                .await
                                .map(|_| ()),
                            1 => jobs.list_jobs(ListJobsRequest::default()).await.map(|_| ()),
                            2 => runs
                                .get_run(GetRunRequest {
                                    run_id: run_id.clone(),
                                })
                                .await
                                .map(|_| ()),
                            _ => jobs
                                .list_job_runs(ListJobRunsRequest {
                                    job_id: "quick".into(),
                                    page_size: 20,
                                    ..Default::default()
                                })
                                .await
                                .map(|_| ()),
                        };
                        latencies.push(started.elapsed());
                        tally.calls.fetch_add(1, Ordering::Relaxed);
                        match result {
                            Ok(()) => {}
                            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                                tally.refused.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(s) => {
                                eprintln!("call failed: {s}");
                                tally.failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        k += 1;
                    }
                }
            }
            latencies
        }));
    }
    let mut peak = baseline;
    let mut latencies = Vec::new();
    for client in clients {
        peak = peak.max(rss_kib(pid));
        latencies.extend(client.await.expect("client"));
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    eprintln!(
        "{} calls ({} refused as over max_concurrency), p50 {:?}, p99 {:?}; RSS baseline {} KiB, peak {} KiB",
        tally.calls.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        pct(0.5),
        pct(0.99),
        baseline,
        peak
    );
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "calls failed");
    assert!(tally.calls.load(Ordering::Relaxed) > 0);

    // The wide run goes on to its end.
    eventually(
        Duration::from_secs(120),
        "the 100-task run to end",
        || async {
            (get_run(&channel, &wide_run.id).await.status() == RunStatus::Succeeded).then_some(())
        },
    )
    .await;
    // Within 10 % and 4 MiB of the baseline, a few seconds after.
    let bound = baseline + baseline / 10 + 4 * 1024;
    let settled = eventually(Duration::from_secs(20), "memory to come back", || async {
        let now = rss_kib(pid);
        (now <= bound).then_some(now)
    })
    .await;
    eprintln!("RSS after: {settled} KiB (bound {bound} KiB)");
}

/// SIGTERM in the middle of the load: petitd stops within its grace period, its watch
/// streams end with UNAVAILABLE (log follows end with their run, or so), and the run
/// ends interrupted or finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_stops_within_the_grace_period() {
    let wide = wide_job();
    let jobs = jobs_dir(&[("wide.yaml", wide.as_str())]);
    let mut daemon = Daemon::start_with(jobs.path(), &["--shutdown-grace", "2s"]);
    let url = daemon.url();
    let channel = daemon.channel().await;
    let wide_run = trigger(&channel, "wide", &[]).await;
    let mut streams = Vec::new();
    for i in 0..40 {
        let url = url.clone();
        let run_id = wide_run.id.clone();
        streams.push(tokio::spawn(async move {
            let channel = Channel::from_shared(url)
                .expect("url")
                .connect()
                .await
                .expect("connect");
            let ended = if i % 2 == 0 {
                let mut stream = SchedulerServiceClient::new(channel)
                    .watch_events(WatchEventsRequest::default())
                    .await
                    .expect("watch")
                    .into_inner();
                how_it_ends(&mut stream).await
            } else {
                let mut stream = RunServiceClient::new(channel)
                    .follow_task_logs(FollowTaskLogsRequest {
                        run_id,
                        task_id: "t99".into(),
                        ..Default::default()
                    })
                    .await
                    .expect("follow")
                    .into_inner();
                how_it_ends(&mut stream).await
            };
            (i % 2 == 0, ended)
        }));
    }
    eventually(Duration::from_secs(30), "the run to be going", || async {
        (get_run(&channel, &wide_run.id).await.status() == RunStatus::Running).then_some(())
    })
    .await;
    daemon.signal("TERM");
    // The grace period, plus the time to stop the tasks and close the connections.
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", daemon.stderr());
    for stream in streams {
        let (watch, ended) = stream.await.expect("stream task");
        match watch {
            true => assert_eq!(
                ended,
                Some(tonic::Code::Unavailable),
                "a watch ended otherwise"
            ),
            // A follow ends cleanly with its run (interrupted by the stop), or is cut.
            false => assert!(
                matches!(ended, None | Some(tonic::Code::Unavailable)),
                "a follow ended with {ended:?}"
            ),
        }
    }
    // Exited already: this only hands the data directory back.
    let (data, db) = daemon.crash();
    let again = Daemon::start_on(jobs.path(), data, db, &[]);
    let run = get_run(&again.channel().await, &wide_run.id).await;
    assert!(
        matches!(run.status(), RunStatus::Interrupted | RunStatus::Succeeded),
        "{run:?}"
    );
}

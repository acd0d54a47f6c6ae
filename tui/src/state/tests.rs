//! The reducer: server messages and keys in, state and commands out.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use petit_proto::v1;

use super::*;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 11, 26, 10, 0, 0).unwrap() + TimeDelta::seconds(secs)
}

fn job(id: &str) -> JobRow {
    JobRow {
        id: id.into(),
        name: format!("{id} job"),
        enabled: true,
        schedule: Some("@every 1m".into()),
        zone: Zone::UTC,
        next_fires: vec![t(60), t(120)],
        last_run: None,
        paused: false,
        policy: String::new(),
        refreshed_at: None,
    }
}

fn run(id: &str, job_id: &str, status: RunStatus, created: i64) -> RunRow {
    RunRow {
        id: id.into(),
        job_id: job_id.into(),
        status,
        trigger: TriggerReason::Manual,
        created_at: t(created),
        started_at: Some(t(created)),
        ended_at: None,
        error: String::new(),
        triggered_by: String::new(),
    }
}

fn task(run_id: &str, id: &str, status: TaskStatus) -> TaskRow {
    TaskRow {
        run_id: run_id.into(),
        task_id: id.into(),
        status,
        attempts: 1,
        exit_code: None,
        started_at: Some(t(1)),
        ended_at: None,
        error: String::new(),
    }
}

fn event(kind: EventType, job_id: &str, run: Option<RunRow>, task: Option<TaskRow>) -> ServerMsg {
    ServerMsg::Event(ServerEvent {
        kind,
        time: Some(t(5)),
        job_id: job_id.into(),
        run_id: run
            .as_ref()
            .map(|r| r.id.clone())
            .or_else(|| task.as_ref().map(|t| t.run_id.clone()))
            .unwrap_or_default(),
        task_id: task.as_ref().map(|t| t.task_id.clone()).unwrap_or_default(),
        message: String::new(),
        run,
        task,
    })
}

fn log(run_id: &str, task_id: &str, seq: u64, line: &str) -> ServerMsg {
    ServerMsg::Log(LogRow {
        run_id: run_id.into(),
        task_id: task_id.into(),
        stderr: false,
        line: line.into(),
        seq,
    })
}

/// Connected, with jobs `alpha`, `beta`, `gamma` and runs r1 (alpha, succeeded) and
/// r2 (beta, running, newer).
fn connected() -> State {
    let mut s = State::new("http://test:8565", false, t(0));
    let mut r1 = run("r1", "alpha", RunStatus::Succeeded, -60);
    r1.ended_at = Some(t(-50));
    s.apply(ServerMsg::Snapshot(Snapshot {
        scheduler: SchedulerStatus::Running,
        cluster: None,
        jobs: vec![job("gamma"), job("alpha"), job("beta")],
        runs: vec![r1, run("r2", "beta", RunStatus::Running, -10)],
    }));
    s
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// Presses each key in turn; returns the commands they produced.
fn press(s: &mut State, keys: &[KeyEvent]) -> Vec<Command> {
    keys.iter().filter_map(|k| s.on_key(*k)).collect()
}

fn ids<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    it.collect()
}

#[test]
fn snapshot_makes_the_dashboard_whole() {
    let s = connected();
    assert_eq!(s.connection, Connection::Connected);
    assert_eq!(s.scheduler, SchedulerStatus::Running);
    assert_eq!(
        ids(s.jobs.iter().map(|j| j.id.as_str())),
        ["alpha", "beta", "gamma"],
        "jobs are sorted by id"
    );
    assert_eq!(ids(s.runs.iter().map(|r| r.id.as_str())), ["r2", "r1"]);
}

#[test]
fn run_started_adds_a_run_on_top_and_updates_its_job() {
    let mut s = connected();
    s.apply(event(
        EventType::RunStarted,
        "gamma",
        Some(run("r3", "gamma", RunStatus::Running, 5)),
        None,
    ));
    assert_eq!(
        ids(s.runs.iter().map(|r| r.id.as_str())),
        ["r3", "r2", "r1"]
    );
    let gamma = &s.jobs[2];
    assert_eq!(gamma.last_run.map(|l| l.status), Some(RunStatus::Running));
    assert_eq!(s.events.len(), 1);
    assert_eq!(s.events[0].kind, EventType::RunStarted);
    assert_eq!(s.events[0].run_id, "r3");

    // Its end updates the same row, and the job's last status.
    let mut done = run("r3", "gamma", RunStatus::Failed, 5);
    done.ended_at = Some(t(9));
    s.apply(event(EventType::RunFailed, "gamma", Some(done), None));
    assert_eq!(s.runs.len(), 3);
    assert_eq!(s.runs[0].status, RunStatus::Failed);
    assert_eq!(
        s.jobs[2].last_run.map(|l| l.status),
        Some(RunStatus::Failed)
    );
    assert_eq!(s.events[0].kind, EventType::RunFailed, "newest first");
}

#[test]
fn an_older_run_does_not_replace_the_last_status() {
    let mut s = connected();
    s.apply(event(
        EventType::RunStarted,
        "alpha",
        Some(run("new", "alpha", RunStatus::Running, 1)),
        None,
    ));
    s.apply(ServerMsg::JobRuns(vec![run(
        "old",
        "alpha",
        RunStatus::Failed,
        -500,
    )]));
    assert_eq!(
        s.jobs[0].last_run.map(|l| l.status),
        Some(RunStatus::Running)
    );
    assert_eq!(
        s.runs.last().map(|r| r.id.as_str()),
        Some("old"),
        "oldest last"
    );
}

#[test]
fn task_events_update_the_task_table_of_the_selected_run() {
    let mut s = connected();
    // Runs tab, first row (r2), Enter: its tasks.
    let cmds = press(&mut s, &[ch('2'), key(KeyCode::Enter)]);
    assert_eq!(
        cmds,
        [Command::WatchRun {
            run_id: "r2".into()
        }]
    );
    assert_eq!(s.tab, Tab::Tasks);

    s.apply(ServerMsg::RunState {
        run: run("r2", "beta", RunStatus::Running, -10),
        tasks: vec![
            task("r2", "extract", TaskStatus::Running),
            task("r2", "load", TaskStatus::Pending),
        ],
        full: true,
    });
    let mut extracted = task("r2", "extract", TaskStatus::Succeeded);
    extracted.exit_code = Some(0);
    s.apply(event(
        EventType::TaskSucceeded,
        "beta",
        None,
        Some(extracted),
    ));
    s.apply(event(
        EventType::TaskStarted,
        "beta",
        None,
        Some(task("r2", "load", TaskStatus::Running)),
    ));
    // Another run's task changes nothing here.
    s.apply(event(
        EventType::TaskFailed,
        "alpha",
        None,
        Some(task("r1", "load", TaskStatus::Failed)),
    ));
    // A later WatchRun message with only what changed.
    s.apply(ServerMsg::RunState {
        run: run("r2", "beta", RunStatus::Running, -10),
        tasks: vec![task("r2", "report", TaskStatus::Retrying)],
        full: false,
    });

    let got: Vec<(&str, TaskStatus, Option<i32>)> = s
        .visible_tasks()
        .map(|t| (t.task_id.as_str(), t.status, t.exit_code))
        .collect();
    assert_eq!(
        got,
        [
            ("extract", TaskStatus::Succeeded, Some(0)),
            ("load", TaskStatus::Running, None),
            ("report", TaskStatus::Retrying, None),
        ]
    );
}

#[test]
fn a_full_run_state_replaces_the_tasks() {
    let mut s = connected();
    press(&mut s, &[ch('2'), key(KeyCode::Enter)]);
    let full = |tasks| ServerMsg::RunState {
        run: run("r2", "beta", RunStatus::Running, -10),
        tasks,
        full: true,
    };
    s.apply(full(vec![task("r2", "a", TaskStatus::Running)]));
    // After a reconnect, WatchRun starts over with every task.
    s.apply(full(vec![
        task("r2", "a", TaskStatus::Succeeded),
        task("r2", "b", TaskStatus::Running),
    ]));
    assert_eq!(
        ids(s.visible_tasks().map(|t| t.task_id.as_str())),
        ["a", "b"]
    );
    assert_eq!(
        s.run_view.as_ref().map(|v| v.tasks[0].status),
        Some(TaskStatus::Succeeded)
    );
}

#[test]
fn moving_the_selection() {
    // (keys, selected job)
    let cases: &[(&[KeyEvent], &str)] = &[
        (&[], "alpha"),
        (&[ch('j')], "beta"),
        (&[key(KeyCode::Down), key(KeyCode::Down)], "gamma"),
        (&[ch('j'), ch('j'), ch('j'), ch('j')], "gamma"),
        (&[ch('j'), ch('k')], "alpha"),
        (&[key(KeyCode::Up)], "alpha"),
        (&[ch('G')], "gamma"),
        (&[key(KeyCode::End), ch('g')], "alpha"),
        (&[key(KeyCode::PageDown)], "gamma"),
        (&[ch('G'), key(KeyCode::PageUp)], "alpha"),
    ];
    for (keys, want) in cases {
        let mut s = connected();
        press(&mut s, keys);
        assert_eq!(
            s.selected_job().map(|j| j.id.as_str()),
            Some(*want),
            "{keys:?}"
        );
    }
}

#[test]
fn selection_follows_the_row_when_rows_arrive_above_it() {
    let mut s = connected();
    press(&mut s, &[ch('2'), ch('j')]);
    assert_eq!(s.selected_run().map(|r| r.id.as_str()), Some("r1"));
    s.apply(event(
        EventType::RunStarted,
        "gamma",
        Some(run("r3", "gamma", RunStatus::Running, 5)),
        None,
    ));
    assert_eq!(s.selected_run().map(|r| r.id.as_str()), Some("r1"));
    assert_eq!(s.position(Tab::Runs), (2, 3));
}

#[test]
fn switching_tabs() {
    let cases: &[(&[KeyEvent], Tab)] = &[
        (&[], Tab::Jobs),
        (&[key(KeyCode::Tab)], Tab::Runs),
        (
            &[key(KeyCode::Tab), key(KeyCode::Tab), key(KeyCode::Tab)],
            Tab::Events,
        ),
        (&[ch('4'), key(KeyCode::Tab)], Tab::Jobs),
        (&[key(KeyCode::BackTab)], Tab::Events),
        (&[ch('3')], Tab::Tasks),
        (&[ch('2'), ch('1')], Tab::Jobs),
    ];
    for (keys, want) in cases {
        let mut s = connected();
        press(&mut s, keys);
        assert_eq!(s.tab, *want, "{keys:?}");
    }
}

#[test]
fn the_tasks_tab_shows_the_run_under_the_runs_cursor_until_one_is_chosen() {
    let mut s = connected();
    let cmds = press(&mut s, &[ch('2'), ch('j'), ch('3')]);
    assert_eq!(
        cmds,
        [Command::WatchRun {
            run_id: "r1".into()
        }]
    );
    // Coming back does not switch runs behind the user's back.
    let cmds = press(&mut s, &[ch('2'), ch('k'), ch('3')]);
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_eq!(s.run_view.as_ref().map(|v| v.run.id.as_str()), Some("r1"));
}

#[test]
fn filtering_a_list() {
    let mut s = connected();
    press(&mut s, &[ch('/'), ch('G'), ch('a'), ch('m')]);
    assert!(s.editing_filter);
    assert_eq!(s.filter(Tab::Jobs), "Gam");
    assert_eq!(
        ids(s.visible_jobs().map(|j| j.id.as_str())),
        ["gamma"],
        "case-insensitive"
    );
    // Enter keeps it; keys act on the filtered list again.
    press(&mut s, &[key(KeyCode::Enter)]);
    assert!(!s.editing_filter);
    assert_eq!(s.selected_job().map(|j| j.id.as_str()), Some("gamma"));
    // Other tabs have their own filter.
    press(&mut s, &[ch('2')]);
    assert_eq!(s.visible_runs().count(), 2);
    // Esc while typing clears it.
    press(
        &mut s,
        &[ch('1'), ch('/'), ch('x'), key(KeyCode::Backspace), ch('z')],
    );
    assert_eq!(s.filter(Tab::Jobs), "z");
    assert_eq!(s.visible_jobs().count(), 0);
    press(&mut s, &[key(KeyCode::Esc)]);
    assert_eq!(s.filter(Tab::Jobs), "");
    assert_eq!(s.visible_jobs().count(), 3);
    assert!(!s.should_quit());
}

#[test]
fn esc_steps_back_before_quitting() {
    let mut s = connected();
    press(&mut s, &[ch('/'), ch('a'), key(KeyCode::Enter)]);
    press(&mut s, &[key(KeyCode::Esc)]);
    assert_eq!(s.filter(Tab::Jobs), "", "first Esc clears a kept filter");
    assert!(!s.should_quit());
    press(&mut s, &[key(KeyCode::Enter)]);
    assert_eq!(s.runs_of_job.as_deref(), Some("alpha"));
    press(&mut s, &[key(KeyCode::Esc)]);
    assert_eq!(s.runs_of_job, None, "then the job filter of the Runs tab");
    press(&mut s, &[key(KeyCode::Esc)]);
    assert!(s.should_quit());
}

#[test]
fn enter_drills_down_from_job_to_runs_to_tasks_to_logs() {
    let mut s = connected();
    let cmds = press(&mut s, &[ch('j'), key(KeyCode::Enter)]);
    assert_eq!(
        cmds,
        [Command::LoadJobRuns {
            job_id: "beta".into()
        }]
    );
    assert_eq!((s.tab, s.runs_of_job.as_deref()), (Tab::Runs, Some("beta")));
    assert_eq!(ids(s.visible_runs().map(|r| r.id.as_str())), ["r2"]);

    let cmds = press(&mut s, &[key(KeyCode::Enter)]);
    assert_eq!(
        cmds,
        [Command::WatchRun {
            run_id: "r2".into()
        }]
    );
    assert_eq!(s.tab, Tab::Tasks);

    s.apply(ServerMsg::RunState {
        run: run("r2", "beta", RunStatus::Running, -10),
        tasks: vec![task("r2", "extract", TaskStatus::Running)],
        full: true,
    });
    let cmds = press(&mut s, &[key(KeyCode::Enter)]);
    assert_eq!(
        cmds,
        [Command::FollowLogs {
            run_id: "r2".into(),
            task_id: "extract".into()
        }]
    );
    assert!(matches!(s.overlay, Some(Overlay::Logs(_))));
}

#[test]
fn trigger_asks_first() {
    // (keys after `t`, command, overlay still open)
    let cases: &[(&[KeyEvent], Option<Command>, bool)] = &[
        (
            &[ch('y')],
            Some(Command::Trigger {
                job_id: "beta".into(),
            }),
            false,
        ),
        (
            &[ch('Y')],
            Some(Command::Trigger {
                job_id: "beta".into(),
            }),
            false,
        ),
        (&[ch('n')], None, false),
        (&[key(KeyCode::Esc)], None, false),
        (&[ch('x')], None, true),
        (
            &[ch('x'), ch('y')],
            Some(Command::Trigger {
                job_id: "beta".into(),
            }),
            false,
        ),
    ];
    for (keys, want, open) in cases {
        let mut s = connected();
        assert!(press(&mut s, &[ch('j'), ch('t')]).is_empty());
        assert_eq!(
            s.overlay,
            Some(Overlay::Confirm(Confirm::Trigger {
                job_id: "beta".into()
            }))
        );
        let cmds = press(&mut s, keys);
        assert_eq!(cmds.first(), want.as_ref(), "{keys:?}");
        assert_eq!(s.overlay.is_some(), *open, "{keys:?}");
        assert!(!s.should_quit(), "{keys:?}");
    }
}

#[test]
fn cancel_asks_first_and_only_for_live_runs() {
    let mut s = connected();
    let cmds = press(&mut s, &[ch('2'), ch('c'), ch('y')]);
    assert_eq!(
        cmds,
        [Command::Cancel {
            run_id: "r2".into()
        }]
    );
    assert_eq!(
        s.notice().map(|n| n.text.as_str()),
        Some("cancelling run r2…")
    );

    // r1 has ended: nothing to confirm, a word why.
    let cmds = press(&mut s, &[ch('j'), ch('c')]);
    assert!(cmds.is_empty());
    assert_eq!(s.overlay, None);
    let notice = s.notice().expect("a notice");
    assert!(
        notice.error && notice.text.contains("already ended"),
        "{notice:?}"
    );
}

/// A queued run has not started but can be cancelled, like a running one; so can a run
/// an old server calls pending (its word for queued).
#[test]
fn cancel_is_offered_for_queued_runs() {
    for status in [RunStatus::Queued as i32, 1] {
        let mut s = connected();
        let queued = v1::Run {
            id: "r3".into(),
            job_id: "gamma".into(),
            status,
            created_at: Some(prost_types::Timestamp {
                seconds: t(1).timestamp(),
                nanos: 0,
            }),
            ..Default::default()
        };
        s.apply(ServerMsg::JobRuns(vec![RunRow::from(queued)]));
        let cmds = press(&mut s, &[ch('2'), ch('c'), ch('y')]);
        assert_eq!(
            cmds,
            [Command::Cancel {
                run_id: "r3".into()
            }],
            "status {status}"
        );
        let shown = s.runs.iter().find(|r| r.id == "r3").map(|r| r.status);
        assert_eq!(
            shown.map(petit_client::vocab::Vocabulary::label),
            Some("queued")
        );
    }
}

#[test]
fn pause_or_resume_follows_the_scheduler_state() {
    let mut s = connected();
    assert_eq!(press(&mut s, &[ch('P')]), [Command::Pause]);
    s.apply(event(EventType::SchedulerPaused, "", None, None));
    assert_eq!(s.scheduler, SchedulerStatus::Paused);
    assert_eq!(press(&mut s, &[ch('P')]), [Command::Resume]);
    s.apply(ServerMsg::Scheduler(SchedulerStatus::Running));
    assert_eq!(s.scheduler, SchedulerStatus::Running);
    assert_eq!(
        s.notice().map(|n| n.text.as_str()),
        Some("scheduler running")
    );
}

#[test]
fn p_pauses_or_resumes_the_selected_job() {
    let mut s = connected();
    let first = s.selected_job().expect("a job").clone();
    assert_eq!(
        press(&mut s, &[ch('p')]),
        [Command::PauseJob {
            job_id: first.id.clone(),
            paused: true
        }]
    );
    let mut paused = first.clone();
    paused.paused = true;
    s.apply(ServerMsg::Job(paused));
    assert_eq!(
        press(&mut s, &[ch('p')]),
        [Command::PauseJob {
            job_id: first.id,
            paused: false
        }]
    );
}

#[test]
fn connection_lost_then_restored() {
    let mut s = connected();
    s.set_now(t(100));
    s.apply(ServerMsg::Disconnected {
        error: "cannot reach petitd at http://test:8565: connection refused".into(),
        retry_in: Duration::from_millis(2000),
    });
    match &s.connection {
        Connection::Reconnecting { retry_at, error } => {
            assert_eq!(*retry_at, t(102));
            assert!(error.contains("connection refused"));
        }
        other => panic!("{other:?}"),
    }
    // What was known stays on screen meanwhile.
    assert_eq!(s.jobs.len(), 3);
    // No refreshes while away.
    assert_eq!(s.tick(t(500)), None);

    s.apply(ServerMsg::Snapshot(Snapshot {
        scheduler: SchedulerStatus::Paused,
        cluster: None,
        jobs: vec![job("alpha")],
        runs: vec![],
    }));
    assert_eq!(s.connection, Connection::Connected);
    assert_eq!(s.scheduler, SchedulerStatus::Paused);
    assert_eq!(s.jobs.len(), 1, "the snapshot replaces what was known");
    assert!(s.runs.is_empty());
}

#[test]
fn logs_overlay_follows_dedupes_and_closes() {
    let mut s = connected();
    press(&mut s, &[ch('2'), key(KeyCode::Enter)]);
    s.apply(ServerMsg::RunState {
        run: run("r2", "beta", RunStatus::Running, -10),
        tasks: vec![task("r2", "extract", TaskStatus::Running)],
        full: true,
    });
    let cmds = press(&mut s, &[ch('l')]);
    assert_eq!(
        cmds,
        [Command::FollowLogs {
            run_id: "r2".into(),
            task_id: "extract".into()
        }]
    );
    s.apply(log("r2", "extract", 1, "one"));
    s.apply(log("r2", "extract", 2, "two"));
    // After a reconnect the stored lines come again.
    s.apply(log("r2", "extract", 1, "one"));
    s.apply(log("r2", "extract", 2, "two"));
    s.apply(log("r2", "extract", 3, "three"));
    // Other tasks' lines are not ours.
    s.apply(log("r2", "load", 1, "elsewhere"));
    s.apply(ServerMsg::LogsEnded {
        run_id: "r2".into(),
        task_id: "extract".into(),
    });
    let Some(Overlay::Logs(view)) = &s.overlay else {
        panic!("no log overlay: {:?}", s.overlay);
    };
    let lines: Vec<&str> = view.lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(lines, ["one", "two", "three"]);
    assert!(view.ended);

    // Keys scroll within the overlay rather than moving the list.
    press(&mut s, &[ch('k'), ch('k'), ch('k')]);
    let Some(Overlay::Logs(view)) = &s.overlay else {
        panic!("closed too early");
    };
    assert_eq!(view.scroll, 2, "at most back to the first line");

    assert_eq!(press(&mut s, &[ch('q')]), [Command::StopLogs]);
    assert_eq!(s.overlay, None);
    assert!(!s.should_quit());
}

#[test]
fn logs_overlay_is_bounded() {
    let mut s = connected();
    press(&mut s, &[ch('2'), ch('l')]);
    for seq in 1..=(MAX_LOG_LINES as u64 + 10) {
        s.apply(log("r2", "t", seq, "x"));
    }
    let Some(Overlay::Logs(view)) = &s.overlay else {
        panic!("no log overlay");
    };
    assert_eq!(view.task_id, "", "a run's logs: every task");
    assert_eq!(view.lines.len(), MAX_LOG_LINES);
    assert_eq!(view.lines.front().map(|l| l.seq), Some(11));
}

#[test]
fn feed_and_runs_are_bounded() {
    let mut s = connected();
    for i in 0..(MAX_RUNS + 20) {
        let id = format!("run{i}");
        let mut r = run(&id, "alpha", RunStatus::Succeeded, i as i64);
        r.ended_at = Some(t(i as i64 + 1));
        s.apply(event(EventType::RunSucceeded, "alpha", Some(r), None));
    }
    assert_eq!(s.events.len(), MAX_EVENTS);
    assert_eq!(s.runs.len(), MAX_RUNS);
    assert_eq!(s.runs[0].id, format!("run{}", MAX_RUNS + 19), "newest kept");
    assert!(
        s.runs.iter().any(|r| r.id == "r2"),
        "a running run outlives finished ones"
    );
}

#[test]
fn log_line_events_stay_out_of_the_feed() {
    let mut s = connected();
    s.apply(event(EventType::LogLine, "alpha", None, None));
    s.apply(event(EventType::JobSkipped, "alpha", None, None));
    assert_eq!(
        s.events.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventType::JobSkipped]
    );
}

#[test]
fn tick_refreshes_jobs_whose_listed_fires_have_passed() {
    let mut s = connected();
    let mut manual = job("manual");
    manual.schedule = None;
    manual.next_fires.clear();
    let mut off = job("off");
    off.enabled = false;
    s.apply(ServerMsg::Job(manual));
    s.apply(ServerMsg::Job(off));

    assert_eq!(s.tick(t(1)), None, "fires still ahead");
    let want = Command::RefreshJobs {
        job_ids: vec!["alpha".into(), "beta".into(), "gamma".into()],
    };
    assert_eq!(s.tick(t(121)), Some(want.clone()));
    assert_eq!(s.tick(t(122)), None, "asked already");
    // The answer for alpha brings fresh times; the others are asked again later.
    let mut alpha = job("alpha");
    alpha.next_fires = vec![t(180)];
    s.apply(ServerMsg::Job(alpha));
    assert_eq!(
        s.tick(t(127)),
        Some(Command::RefreshJobs {
            job_ids: vec!["beta".into(), "gamma".into()]
        })
    );
}

#[test]
fn ctrl_c_and_q_quit() {
    for k in [
        ch('q'),
        KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
    ] {
        let mut s = connected();
        s.on_key(k);
        assert!(s.should_quit(), "{k:?}");
    }
    // q closes an overlay first.
    let mut s = connected();
    press(&mut s, &[ch('?'), ch('q')]);
    assert!(!s.should_quit());
    assert_eq!(s.overlay, None);
}

#[test]
fn case_insensitive_contains() {
    let cases = [
        ("hello_world", "", true),
        ("hello_world", "WORLD", true),
        ("hello_world", "o_w", true),
        ("hello", "hello!", false),
        ("", "a", false),
        ("Ünïcode", "ünï", false),
        ("Ünïcode", "Ünï", true),
    ];
    for (hay, needle, want) in cases {
        assert_eq!(contains_ci(hay, needle), want, "{hay:?} {needle:?}");
    }
}

#[test]
fn a_jobs_scheduling_knobs_are_summed_up_for_its_footer() {
    let job = v1::Job {
        id: "nightly".into(),
        overlap: "queue".into(),
        max_queued: 3,
        catchup: "all".into(),
        catchup_window: Some(prost_types::Duration {
            seconds: 86_400,
            nanos: 0,
        }),
        timeout: Some(prost_types::Duration {
            seconds: 7_200,
            nanos: 0,
        }),
        history_max_runs: 50,
        ..Default::default()
    };
    assert_eq!(
        JobRow::from(job).policy,
        "overlap queue (3 queued) · catch-up all (1d) · timeout 2h · keeps 50 runs"
    );
    let plain = v1::Job {
        overlap: "skip".into(),
        catchup: "none".into(),
        ..Default::default()
    };
    assert_eq!(JobRow::from(plain).policy, "");
}

/// Cluster mode: the snapshot says which node and how many are alive; the nodes' list
/// read again later replaces it (a node died meanwhile), and a reconnection to a
/// daemon alone clears it.
#[test]
fn the_cluster_summary_follows_the_snapshot_and_the_nodes_read_again() {
    let mut s = connected();
    assert_eq!(s.cluster, None);
    let state = v1::SchedulerState {
        node_id: "b".into(),
        node_epoch: 3,
        nodes: ["a", "b", "c"]
            .iter()
            .map(|id| v1::Node {
                id: id.to_string(),
                alive: true,
                mismatched_jobs: if *id == "b" {
                    vec!["nightly".into()]
                } else {
                    vec![]
                },
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let summary = ClusterSummary::of(&state).expect("a cluster");
    assert_eq!(
        summary,
        ClusterSummary {
            node: "b".into(),
            alive: 3,
            total: 3,
            mismatched: vec!["nightly".into()],
        }
    );
    s.apply(ServerMsg::Cluster(Some(summary.clone())));
    assert_eq!(s.cluster.as_ref(), Some(&summary));
    let fewer = ClusterSummary {
        alive: 2,
        ..summary
    };
    s.apply(ServerMsg::Cluster(Some(fewer.clone())));
    assert_eq!(s.cluster, Some(fewer));
    s.apply(ServerMsg::Snapshot(Snapshot {
        scheduler: SchedulerStatus::Running,
        cluster: None,
        jobs: vec![],
        runs: vec![],
    }));
    assert_eq!(s.cluster, None);
    assert_eq!(ClusterSummary::of(&v1::SchedulerState::default()), None);
}

//! The screen at 80×24 for each tab and overlay, from a fixed state and clock
//! (snapshots in `tui/src/snapshots/`; review changes with `cargo insta review`, or
//! rerun with `INSTA_UPDATE=always` and read the diff).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use petit_client::vocab::Lifecycle as _;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::draw;
use crate::state::*;
use petit_client::render::{Tz, Zone, ZoneChoice, Zones};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 11, 26, 10, 0, 0).unwrap() + TimeDelta::seconds(secs)
}

fn run(id: &str, job_id: &str, status: RunStatus, trigger: TriggerReason, created: i64) -> RunRow {
    let ended = status.is_terminal().then(|| t(created + 42));
    RunRow {
        id: id.into(),
        job_id: job_id.into(),
        status,
        trigger,
        created_at: t(created),
        started_at: Some(t(created)),
        ended_at: ended,
        error: String::new(),
        triggered_by: String::new(),
    }
}

fn job(id: &str, name: &str, schedule: Option<&str>, fires: &[i64], enabled: bool) -> JobRow {
    JobRow {
        id: id.into(),
        name: name.into(),
        enabled,
        schedule: schedule.map(Into::into),
        zone: Zone::UTC,
        next_fires: fires.iter().map(|s| t(*s)).collect(),
        last_run: None,
        paused: false,
        policy: String::new(),
        refreshed_at: None,
    }
}

fn press(state: &mut State, keys: &[KeyCode]) -> Vec<Command> {
    keys.iter()
        .filter_map(|k| state.on_key(KeyEvent::new(*k, KeyModifiers::NONE)))
        .collect()
}

/// A dashboard connected to a server with a few jobs, runs and events, at 10:00:30
/// UTC on 2025-11-26.
fn dashboard() -> State {
    let mut s = State::new("http://127.0.0.1:8565", false, t(30));
    s.apply(ServerMsg::Snapshot(Snapshot {
        scheduler: SchedulerStatus::Running,
        cluster: None,
        jobs: vec![
            job("hello_world", "Hello World Job", None, &[], true),
            job(
                "minute_tick",
                "Minute Tick",
                Some("* * * * *"),
                &[30, 90],
                true,
            ),
            // 02:00 in Paris: 01:00 UTC on 2025-11-27.
            JobRow {
                zone: Zone::Named(Tz::Europe__Paris),
                ..job(
                    "data_pipeline",
                    "Data Pipeline",
                    Some("0 2 * * *"),
                    &[54_000],
                    true,
                )
            },
            job(
                "hourly_check",
                "Hourly Check",
                Some("@hourly"),
                &[3_600],
                false,
            ),
            job(
                "failing_job",
                "Always Fails",
                Some("@every 90s"),
                &[10],
                true,
            ),
        ],
        runs: vec![
            run(
                "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9fa0b1",
                "data_pipeline",
                RunStatus::Running,
                TriggerReason::Manual,
                5,
            ),
            run(
                "0193a1b2-7c3d-7e4f-8a5b-000000000002",
                "failing_job",
                RunStatus::Failed,
                TriggerReason::Schedule,
                -100,
            ),
            run(
                "0193a1b2-7c3d-7e4f-8a5b-000000000001",
                "hello_world",
                RunStatus::Succeeded,
                TriggerReason::Manual,
                -90_000,
            ),
        ],
    }));
    // The snapshot's jobs carry their last run; here events bring them.
    let events = [
        (EventType::RunStarted, "data_pipeline", "", ""),
        (EventType::TaskStarted, "data_pipeline", "extract", ""),
        (EventType::TaskFailed, "failing_job", "boom", "exit code 1"),
        (EventType::JobSkipped, "minute_tick", "", "already running"),
        (EventType::SchedulerPaused, "", "", ""),
        (EventType::SchedulerResumed, "", "", ""),
    ];
    for (i, (kind, job_id, task_id, message)) in events.into_iter().enumerate() {
        let run_id = match job_id {
            "data_pipeline" => "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9fa0b1",
            "failing_job" => "0193a1b2-7c3d-7e4f-8a5b-000000000002",
            _ => "",
        };
        s.apply(ServerMsg::Event(ServerEvent {
            kind,
            time: Some(t(i as i64)),
            job_id: job_id.into(),
            run_id: run_id.into(),
            task_id: task_id.into(),
            message: message.into(),
            run: None,
            task: None,
        }));
    }
    for r in s.runs.clone() {
        s.apply(ServerMsg::JobRuns(vec![r]));
    }
    s
}

/// The dashboard on the Tasks tab of the running data_pipeline run.
fn tasks() -> State {
    let mut s = dashboard();
    press(&mut s, &[KeyCode::Char('2'), KeyCode::Enter]);
    let run_id = "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9fa0b1";
    let task =
        |id: &str, status, attempts, exit_code, started: Option<i64>, ended: Option<i64>| TaskRow {
            run_id: run_id.into(),
            task_id: id.into(),
            status,
            attempts,
            exit_code,
            started_at: started.map(t),
            ended_at: ended.map(t),
            error: match status {
                TaskStatus::Failed => "exit code 2: table missing".into(),
                _ => String::new(),
            },
        };
    s.apply(ServerMsg::RunState {
        run: run(
            run_id,
            "data_pipeline",
            RunStatus::Running,
            TriggerReason::Manual,
            5,
        ),
        tasks: vec![
            task(
                "extract",
                TaskStatus::Succeeded,
                1,
                Some(0),
                Some(5),
                Some(8),
            ),
            task(
                "validate",
                TaskStatus::Failed,
                3,
                Some(2),
                Some(8),
                Some(20),
            ),
            task("transform", TaskStatus::Running, 1, None, Some(20), None),
            task("load", TaskStatus::Pending, 0, None, None, None),
        ],
        full: true,
    });
    s
}

fn render(state: &State) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
    terminal.draw(|frame| draw(frame, state)).expect("draw");
    terminal.backend().clone()
}

fn check(name: &str, state: &State) {
    let backend = render(state);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, backend));
}

#[test]
fn jobs_tab() {
    let mut s = dashboard();
    press(&mut s, &[KeyCode::Char('j')]);
    check("jobs", &s);
}

/// `z` goes from each job's zone to local time (Tokyo here) to UTC, for the next
/// fire times and for the other times (the clock, runs, events) alike.
#[test]
fn zones_switch_with_z() {
    let mut s = dashboard();
    s.set_zones(Zones::new(ZoneChoice::Job, Zone::Named(Tz::Asia__Tokyo)));
    check("jobs_zone_job", &s);
    press(&mut s, &[KeyCode::Char('z')]);
    assert_eq!(s.zones.choice, ZoneChoice::Local);
    check("jobs_zone_local", &s);
    press(&mut s, &[KeyCode::Char('z'), KeyCode::Char('2')]);
    assert_eq!(s.zones.choice, ZoneChoice::Utc);
    check("runs_zone_utc", &s);
}

#[test]
fn runs_tab() {
    let mut s = dashboard();
    press(&mut s, &[KeyCode::Char('2')]);
    check("runs", &s);
}

#[test]
fn runs_of_one_job_with_a_notice() {
    let mut s = dashboard();
    // data_pipeline is the first job (sorted by id).
    press(&mut s, &[KeyCode::Enter]);
    s.apply(ServerMsg::Notice {
        text: "triggered data_pipeline: run 0193a1b2-7c3d-7e4f-8a5b-6c7d8e9fa0b1".into(),
        error: false,
    });
    check("runs_of_job", &s);
}

#[test]
fn tasks_tab() {
    check("tasks", &tasks());
}

#[test]
fn events_tab() {
    let mut s = dashboard();
    press(&mut s, &[KeyCode::Char('4')]);
    check("events", &s);
}

#[test]
fn help_overlay() {
    let mut s = dashboard();
    press(&mut s, &[KeyCode::Char('?')]);
    check("help", &s);
}

#[test]
fn log_overlay() {
    let mut s = tasks();
    press(&mut s, &[KeyCode::Char('j'), KeyCode::Char('l')]);
    let run_id = "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9fa0b1";
    for seq in 1..=30 {
        s.apply(ServerMsg::Log(LogRow {
            run_id: run_id.into(),
            task_id: "validate".into(),
            stderr: seq == 30,
            line: if seq == 30 {
                "error: table 'orders' is missing".into()
            } else {
                format!("checked batch {seq} of 29")
            },
            seq,
        }));
    }
    check("logs", &s);
}

#[test]
fn trigger_confirmation() {
    let mut s = dashboard();
    press(&mut s, &[KeyCode::Char('j'), KeyCode::Char('t')]);
    check("confirm_trigger", &s);
}

#[test]
fn reconnecting_with_a_kept_filter() {
    let mut s = dashboard();
    s.apply(ServerMsg::Disconnected {
        error: "cannot reach petitd at http://127.0.0.1:8565: connection refused".into(),
        retry_in: Duration::from_millis(2500),
    });
    press(
        &mut s,
        &[
            KeyCode::Char('/'),
            KeyCode::Char('i'),
            KeyCode::Char('n'),
            KeyCode::Enter,
        ],
    );
    check("reconnecting", &s);
}

#[test]
fn typing_a_filter() {
    let mut s = dashboard();
    press(
        &mut s,
        &[
            KeyCode::Char('4'),
            KeyCode::Char('/'),
            KeyCode::Char('t'),
            KeyCode::Char('a'),
            KeyCode::Char('s'),
            KeyCode::Char('k'),
        ],
    );
    check("filter_typing", &s);
}

#[test]
fn waiting_for_the_first_snapshot() {
    let s = State::new("http://127.0.0.1:8565", false, t(0));
    check("connecting", &s);
}

#[test]
fn a_long_list_pages() {
    let mut s = State::new("http://127.0.0.1:8565", false, t(0));
    s.apply(ServerMsg::Snapshot(Snapshot {
        scheduler: SchedulerStatus::Paused,
        cluster: None,
        jobs: (0..1000)
            .map(|i| {
                job(
                    &format!("job{i:04}"),
                    "generated",
                    Some("@daily"),
                    &[50_400],
                    true,
                )
            })
            .collect(),
        runs: vec![],
    }));
    // Down 20 rows: the second page (18 rows a page) with job0020 selected.
    press(&mut s, &[KeyCode::Down; 20]);
    check("jobs_page_two", &s);
}

/// Colour off means no colour anywhere: only reverse video and bold remain.
#[test]
fn no_color_draws_no_colour() {
    use ratatui::style::Color;
    let mut s = tasks();
    press(&mut s, &[KeyCode::Char('?')]);
    let backend = render(&s);
    let coloured = backend
        .buffer()
        .content()
        .iter()
        .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
        .count();
    assert_eq!(coloured, 0);

    // And with colour, statuses are coloured.
    s.color = true;
    let backend = render(&s);
    assert!(backend
        .buffer()
        .content()
        .iter()
        .any(|c| c.fg == Color::Red));
}

/// A node of a cluster says which node it is and how many are alive; a node down or a
/// job whose definition differs shows in the warning colour.
#[test]
fn a_cluster_node_shows_the_cluster_in_the_status_bar() {
    let mut s = dashboard();
    s.cluster = Some(ClusterSummary {
        node: "pi-2".into(),
        alive: 2,
        total: 3,
        mismatched: vec!["nightly".into()],
    });
    check("cluster_status", &s);
}

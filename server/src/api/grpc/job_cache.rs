//! The jobs as the API shows them, built once per change of a job and shared by every
//! call that reads them: `ListJobs`, `GetJob`, the jobs of a `WatchEvents` snapshot,
//! and their REST routes, which write the JSON each entry keeps.
//!
//! An entry is made of what the engine publishes for the job (its definition, its armed
//! fire instants, its newest run, its pause); while those are the same `Arc`s (the
//! engine keeps a run that did not change in the same one) and the pause is, the entry
//! is. An entry whose newest run is going is not kept: its duration grows with the
//! clock, so it is built for each call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use petit_proto::json::{self, JsonError, JsonWriter, ToJson};
use petit_proto::v1 as pb;

use super::convert;
use crate::core::JobDef;
use crate::engine::{fires_from, Engine, View};
use crate::store::Run;

/// Fire instants shown with a job's schedule (the full view; the basic view shows one).
pub const NEXT_FIRES: usize = 5;

/// Which of a job's views a call sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Basic,
    Full,
}

impl Shape {
    /// The view a `ListJobs` request asks for (BASIC unless it says FULL).
    pub fn of_list(view: i32) -> Shape {
        match pb::JobView::try_from(view) {
            Ok(pb::JobView::Full) => Shape::Full,
            _ => Shape::Basic,
        }
    }
}

/// What an entry was built from.
struct Inputs {
    def: Arc<JobDef>,
    armed: Option<Arc<[DateTime<Utc>]>>,
    last: Option<Arc<Run>>,
    paused: bool,
}

impl Inputs {
    fn of(view: &View, def: &Arc<JobDef>) -> Inputs {
        Inputs {
            def: def.clone(),
            armed: view.upcoming.get(&def.id).cloned(),
            last: view.last_runs.get(&def.id).cloned(),
            paused: view.paused_jobs.contains(&def.id),
        }
    }

    fn matches(&self, view: &View, def: &Arc<JobDef>) -> bool {
        Arc::ptr_eq(&self.def, def)
            && match (&self.armed, view.upcoming.get(&def.id)) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
            && self.paused == view.paused_jobs.contains(&def.id)
            && match (&self.last, view.last_runs.get(&def.id)) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }

    /// Whether the view depends on the time of the call (a going run's duration).
    fn live(&self) -> bool {
        self.last
            .as_ref()
            .is_some_and(|r| r.started_at.is_some() && r.ended_at.is_none())
    }
}

/// One job's views, each built (and written as JSON or as protobuf) the first time it
/// is asked for.
pub struct JobEntry {
    inputs: Inputs,
    full: pb::Job,
    basic: OnceLock<pb::Job>,
    full_json: OnceLock<Result<Vec<u8>, JsonError>>,
    basic_json: OnceLock<Result<Vec<u8>, JsonError>>,
    full_proto: OnceLock<Vec<u8>>,
    basic_proto: OnceLock<Vec<u8>>,
}

impl JobEntry {
    fn build(inputs: Inputs, now: DateTime<Utc>) -> JobEntry {
        let fires = match &inputs.armed {
            Some(armed) => fires_from(armed, Some(&inputs.def), NEXT_FIRES),
            None => Vec::new(),
        };
        let full = convert::job(
            &inputs.def,
            &fires,
            inputs.last.as_deref(),
            inputs.paused,
            now,
        );
        JobEntry {
            inputs,
            full,
            basic: OnceLock::new(),
            full_json: OnceLock::new(),
            basic_json: OnceLock::new(),
            full_proto: OnceLock::new(),
            basic_proto: OnceLock::new(),
        }
    }

    pub fn job(&self, shape: Shape) -> &pb::Job {
        match shape {
            Shape::Full => &self.full,
            Shape::Basic => self.basic.get_or_init(|| basic(&self.full)),
        }
    }

    /// The view as proto3 JSON, as `petit_proto::json` writes the message.
    pub fn json(&self, shape: Shape) -> Result<&[u8], JsonError> {
        let cell = match shape {
            Shape::Full => &self.full_json,
            Shape::Basic => &self.basic_json,
        };
        cell.get_or_init(|| {
            let job = self.job(shape);
            json::to_json(job, 512 + 256 * job.tasks.len())
        })
        .as_deref()
        .map_err(|e| *e)
    }
}

impl JobEntry {
    /// The view as an encoded `pb::Job` message (what gRPC sends of it).
    pub fn proto(&self, shape: Shape) -> &[u8] {
        let cell = match shape {
            Shape::Full => &self.full_proto,
            Shape::Basic => &self.basic_proto,
        };
        cell.get_or_init(|| prost::Message::encode_to_vec(self.job(shape)))
    }
}

/// The basic view of a full job: no tasks, dependencies or config, one next fire.
fn basic(full: &pb::Job) -> pb::Job {
    pb::Job {
        tasks: Vec::new(),
        depends_on: Vec::new(),
        config: Default::default(),
        schedule: full.schedule.as_ref().map(|s| pb::Schedule {
            expression: s.expression.clone(),
            timezone: s.timezone.clone(),
            next_fire_times: s.next_fire_times.iter().take(1).cloned().collect(),
        }),
        ..full.clone()
    }
}

/// The entries, by job id.
#[derive(Default)]
pub struct JobCache {
    entries: Mutex<HashMap<String, Arc<JobEntry>>>,
}

impl JobCache {
    /// The entries of the jobs (ordered by id) from `offset`, at most `size` of them,
    /// and how many jobs there are.
    pub fn page(&self, engine: &Engine, offset: usize, size: usize) -> (Vec<Arc<JobEntry>>, usize) {
        self.select(engine, |view| {
            let jobs: Vec<&Arc<JobDef>> = view.jobs.values().skip(offset).take(size).collect();
            (jobs, view.jobs.len())
        })
    }

    /// The entry of one job; `None` for a job not loaded.
    pub fn one(&self, engine: &Engine, job_id: &str) -> Option<Arc<JobEntry>> {
        let (mut entries, _) = self.select(engine, |view| {
            (view.jobs.get(job_id).into_iter().collect(), 0)
        });
        entries.pop()
    }

    /// The entries of the jobs `pick` chooses in the view (with a number it returns),
    /// reusing the kept ones that still match and building the others.
    fn select(
        &self,
        engine: &Engine,
        pick: impl FnOnce(&View) -> (Vec<&Arc<JobDef>>, usize),
    ) -> (Vec<Arc<JobEntry>>, usize) {
        let mut found: Vec<Option<Arc<JobEntry>>> = Vec::new();
        let mut missing: Vec<(usize, Inputs)> = Vec::new();
        let (count, loaded) = engine.with_view(|view| {
            let (jobs, count) = pick(view);
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            for def in jobs {
                match entries.get(&def.id) {
                    Some(entry) if entry.inputs.matches(view, def) => {
                        found.push(Some(entry.clone()))
                    }
                    _ => {
                        missing.push((found.len(), Inputs::of(view, def)));
                        found.push(None);
                    }
                }
            }
            (count, view.jobs.len())
        });
        if !missing.is_empty() {
            let now = Utc::now();
            let mut built = Vec::with_capacity(missing.len());
            for (at, inputs) in missing {
                let entry = Arc::new(JobEntry::build(inputs, now));
                found[at] = Some(entry.clone());
                if !entry.inputs.live() {
                    built.push(entry);
                }
            }
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            for entry in built {
                entries.insert(entry.inputs.def.id.clone(), entry);
            }
            // Jobs a reload removed: drop their entries once they outnumber the loaded.
            if entries.len() > loaded.saturating_mul(2) + 16 {
                engine.with_view(|view| entries.retain(|id, _| view.jobs.contains_key(id)));
            }
        }
        (found.into_iter().flatten().collect(), count)
    }
}

/// `ListJobsResponse` as JSON, written from the entries' own JSON: the same bytes as
/// `json::to_json` of the message (a unit test holds them equal).
pub fn list_json(
    entries: &[Arc<JobEntry>],
    shape: Shape,
    next_page_token: &str,
    capacity: usize,
) -> Result<Vec<u8>, JsonError> {
    let parts = entries
        .iter()
        .map(|e| e.json(shape))
        .collect::<Result<Vec<&[u8]>, JsonError>>()?;
    struct Reply<'a> {
        parts: Vec<&'a [u8]>,
        token: &'a str,
    }
    impl ToJson for Reply<'_> {
        fn write_json(&self, w: &mut JsonWriter) {
            w.begin_object();
            w.key("\"jobs\":");
            w.begin_array();
            for part in &self.parts {
                w.element();
                w.raw(part);
            }
            w.end_array();
            w.key("\"nextPageToken\":");
            w.string(self.token);
            w.end_object();
        }
    }
    let size: usize = parts.iter().map(|p| p.len() + 1).sum::<usize>() + 64;
    json::to_json(
        &Reply {
            parts,
            token: next_page_token,
        },
        capacity.max(size),
    )
}

/// `GetJobResponse` as JSON, written from the entry's own.
pub fn get_json(entry: &JobEntry) -> Result<Vec<u8>, JsonError> {
    let part = entry.json(Shape::Full)?;
    let mut out = Vec::with_capacity(part.len() + 8);
    out.extend_from_slice(b"{\"job\":");
    out.extend_from_slice(part);
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::{parse_job, GlobalConfig};
    use crate::core::{RunStatus, TriggerReason};
    use chrono::TimeZone;
    use std::path::Path;

    const JOB: &str = r#"
id: nightly
name: "Nightly \"export\""
description: "tabs\tand ünïcode"
schedule: "0 30 2 * * *"
config:
  b: "2"
  a: "1"
tasks:
  - id: extract
    command: echo
    args: ["${config.a}"]
    environment: {Y: "y", X: "x"}
  - id: load
    command: "true"
    depends_on: [extract]
"#;

    fn inputs(last: Option<Run>, paused: bool) -> Inputs {
        let def = parse_job(JOB, Path::new("nightly.yaml"), &GlobalConfig::default()).expect("job");
        let start = Utc.with_ymd_and_hms(2026, 12, 1, 2, 30, 0).unwrap();
        let armed = def
            .schedule
            .as_ref()
            .map(|s| Arc::from(s.upcoming(start, crate::engine::UPCOMING)));
        Inputs {
            def: Arc::new(def),
            armed,
            last: last.map(Arc::new),
            paused,
        }
    }

    /// An entry of the test job: with a run (ended or going) or none, paused or not.
    pub(in crate::api::grpc) fn entry(with_run: bool, paused: bool) -> JobEntry {
        let last = with_run.then(|| run(!paused));
        JobEntry::build(inputs(last, paused), Utc::now())
    }

    fn run(ended: bool) -> Run {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 2, 30, 0).unwrap();
        Run {
            id: "r1".into(),
            job_id: "nightly".into(),
            status: if ended {
                RunStatus::Succeeded
            } else {
                RunStatus::Running
            },
            trigger: TriggerReason::Schedule,
            params: [("k".to_string(), "v".to_string())].into(),
            created_at: at,
            started_at: Some(at),
            ended_at: ended.then(|| at + chrono::Duration::milliseconds(1500)),
            error: None,
            triggered_by: None,
            scheduled_for: Some(at),
            definition: Some("abc".into()),
            retry_of: None,
        }
    }

    #[test]
    fn the_basic_view_leaves_out_tasks_dependencies_config_and_later_fires() {
        let entry = JobEntry::build(inputs(Some(run(true)), false), Utc::now());
        let full = entry.job(Shape::Full);
        assert_eq!(full.tasks.len(), 2);
        assert_eq!(full.task_count, 2);
        assert_eq!(
            full.schedule.as_ref().unwrap().next_fire_times.len(),
            NEXT_FIRES
        );
        let basic = entry.job(Shape::Basic);
        assert!(basic.tasks.is_empty() && basic.config.is_empty() && basic.depends_on.is_empty());
        assert_eq!(basic.task_count, 2);
        let schedule = basic.schedule.as_ref().unwrap();
        assert_eq!(
            schedule.next_fire_times,
            full.schedule.as_ref().unwrap().next_fire_times[..1]
        );
        assert_eq!(basic.last_run, full.last_run);
        assert_eq!(
            (basic.id.as_str(), basic.name.as_str()),
            ("nightly", full.name.as_str())
        );
    }

    #[test]
    fn spliced_replies_are_the_bytes_of_the_whole_message() {
        let entries: Vec<Arc<JobEntry>> = [
            (None, false),
            (Some(run(true)), true),
            (Some(run(false)), false),
        ]
        .into_iter()
        .map(|(last, paused)| Arc::new(JobEntry::build(inputs(last, paused), Utc::now())))
        .collect();
        for shape in [Shape::Basic, Shape::Full] {
            for token in ["", "50", "a\"b"] {
                for n in 0..=entries.len() {
                    let message = pb::ListJobsResponse {
                        jobs: entries[..n].iter().map(|e| e.job(shape).clone()).collect(),
                        next_page_token: token.to_string(),
                    };
                    let whole = json::to_json(&message, 0).unwrap();
                    let spliced = list_json(&entries[..n], shape, token, 0).unwrap();
                    assert_eq!(
                        String::from_utf8(spliced).unwrap(),
                        String::from_utf8(whole).unwrap()
                    );
                }
            }
        }
        for entry in &entries {
            let message = pb::GetJobResponse {
                job: Some(entry.job(Shape::Full).clone()),
            };
            assert_eq!(
                get_json(entry).unwrap(),
                json::to_json(&message, 0).unwrap()
            );
        }
    }

    #[test]
    fn an_entry_matches_the_view_it_was_built_from_only() {
        let base = inputs(Some(run(true)), false);
        let def = base.def.clone();
        let view = View {
            jobs: Arc::new([(def.id.clone(), def.clone())].into()),
            upcoming: [(def.id.clone(), base.armed.clone().unwrap())].into(),
            paused_jobs: Default::default(),
            last_runs: [(def.id.clone(), base.last.clone().unwrap())].into(),
            paused: false,
            stopping: false,
            running: 0,
            queued: 0,
            mismatched: Default::default(),
        };
        assert!(base.matches(&view, &def));
        assert!(!base.live());

        let mut paused = clone_view(&view);
        paused.paused_jobs.insert(def.id.clone());
        assert!(!base.matches(&paused, &def));
        paused.paused_jobs.clear();
        assert!(base.matches(&paused, &def));

        let mut newer = clone_view(&view);
        newer.last_runs.insert(def.id.clone(), Arc::new(run(false)));
        assert!(!base.matches(&newer, &def));

        // The engine replaces a run that changed: an equal run in another `Arc` is
        // taken as a change (the entry is built again, never shown stale).
        let mut renewed = clone_view(&view);
        renewed
            .last_runs
            .insert(def.id.clone(), Arc::new(run(true)));
        assert!(!base.matches(&renewed, &def));
        assert!(Inputs::of(&newer, &def).live(), "a going run is not kept");

        let mut rearmed = clone_view(&view);
        let again: Arc<[DateTime<Utc>]> = Arc::from(base.armed.as_deref().unwrap().to_vec());
        rearmed.upcoming.insert(def.id.clone(), again);
        assert!(
            !base.matches(&rearmed, &def),
            "a re-armed timer is a new entry"
        );

        let reloaded = Arc::new((*def).clone());
        assert!(!base.matches(&view, &reloaded));
    }

    fn clone_view(view: &View) -> View {
        View {
            jobs: view.jobs.clone(),
            upcoming: view.upcoming.clone(),
            paused_jobs: view.paused_jobs.clone(),
            last_runs: view.last_runs.clone(),
            paused: view.paused,
            stopping: view.stopping,
            running: view.running,
            queued: view.queued,
            mismatched: view.mismatched.clone(),
        }
    }
}

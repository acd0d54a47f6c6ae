//! The checks of one job file's raw structs, into a `JobDef`: ids, schedule and time
//! zone, job dependencies, each task (kind, timeout, retry, pools), the task DAG and the
//! placeholders; every error with the line of what it is about, asked of the file's
//! tree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use chrono_tz::Tz;

use super::raw::{
    RawBackoff, RawCondition, RawJob, RawKind, RawRetry, RawRetryCondition, RawSchedule, RawTask,
};
use super::FileDependency;
use crate::config::de::{DurationText, StrOrMap};
use crate::config::global::env_policy;
use crate::config::notify::notify_rule;
use crate::config::yaml::{At, Unreadable};
use crate::config::{ConfigError, GlobalConfig};
use crate::core::job::{Catchup, Overlap, Placeholder, Template};
use crate::core::schedule::parse_duration;
use crate::core::{
    Backoff, Condition, Dag, DagError, DepCondition, JobDef, JobDependency, RetryCondition,
    RetryPolicy, Schedule, TaskDef, TaskKind,
};

/// What the checks of one file found.
pub(super) struct Checked {
    pub depends_on: Vec<FileDependency>,
    /// The job, unless the checks found errors.
    pub job: Option<JobDef>,
    pub errors: Vec<ConfigError>,
}

/// Checks `raw`, read from `root` (the tree of `text`, whose `unreadable` values are
/// reported already).
pub(super) fn job(
    raw: RawJob,
    root: At<'_>,
    text: &str,
    unreadable: &Unreadable,
    file: &Path,
    global: &GlobalConfig,
) -> Checked {
    let mut checker = JobChecker {
        file,
        root,
        text,
        text_lines: Vec::new(),
        unreadable,
        errors: Vec::new(),
    };
    let depends_on = checker.dependency_lines(&raw);
    let job = checker.job(raw, global);
    Checked {
        depends_on,
        job,
        errors: checker.errors,
    }
}

/// Job and task ids appear in URLs, placeholders (`${tasks.<id>.outputs.k}`, split on
/// dots) and log file names: keep them to a safe alphabet.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".to_string());
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some(c) => Err(format!(
            "'{id}' contains '{c}' (use letters, digits, '_' and '-')"
        )),
        None => Ok(()),
    }
}

/// The retry policy a `retry:` block describes (shared with `default_retry`).
pub(in crate::config) fn retry_policy(raw: &RawRetry) -> Result<RetryPolicy, String> {
    let delay = match (raw.delay_secs, raw.delay) {
        (Some(_), Some(_)) => return Err("give either `delay` or `delay_secs`, not both".into()),
        (Some(secs), None) => Duration::from_secs(secs),
        (None, Some(DurationText(d))) => d,
        (None, None) => Duration::ZERO,
    };
    let max_delay = match (raw.max_delay_secs, raw.max_delay) {
        (Some(_), Some(_)) => {
            return Err("give either `max_delay` or `max_delay_secs`, not both".into())
        }
        (Some(secs), None) => Some(Duration::from_secs(secs)),
        (None, Some(DurationText(d))) => Some(d),
        (None, None) => None,
    };
    if max_delay.is_some_and(|max| max < delay) {
        return Err("max_delay is shorter than delay".into());
    }
    Ok(RetryPolicy {
        max_attempts: raw.max_attempts,
        delay,
        condition: match raw.condition {
            None | Some(RawRetryCondition::Always) => RetryCondition::Always,
            Some(RawRetryCondition::TransientOnly) => RetryCondition::TransientOnly,
            Some(RawRetryCondition::Never) => RetryCondition::Never,
        },
        backoff: match raw.backoff {
            None | Some(RawBackoff::Fixed) => Backoff::Fixed,
            Some(RawBackoff::Exponential) => Backoff::Exponential,
        },
        max_delay,
        jitter: raw.jitter.unwrap_or(false),
    })
}

/// Validation of one parsed file; errors accumulate in `errors`.
struct JobChecker<'a> {
    file: &'a Path,
    /// The file's tree, for the line of each value.
    root: At<'a>,
    text: &'a str,
    /// The lines of `text`, split the first time a value spanning lines is searched.
    text_lines: Vec<&'a str>,
    /// The values that could not be read (their errors are reported already).
    unreadable: &'a Unreadable,
    errors: Vec<ConfigError>,
}

/// A field of a task that may hold placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field<'a> {
    Arg(usize),
    Env(&'a str),
    WorkingDir,
    Script,
}

impl Field<'_> {
    /// The key the field is under.
    fn key(self) -> &'static str {
        match self {
            Field::Arg(_) => "args",
            Field::Env(_) => "environment",
            Field::WorkingDir => "working_dir",
            Field::Script => "script",
        }
    }
}

impl<'a> JobChecker<'a> {
    fn error(&mut self, line: Option<usize>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(self.file, line, message.into()));
    }

    /// The line of the top-level key `key`.
    fn key(&self, key: &str) -> Option<usize> {
        self.root.key_line(key)
    }

    /// The line of `key` in the mapping under the top-level key `top`.
    fn nested_key(&self, top: &str, key: &str) -> Option<usize> {
        self.root.get(top).and_then(|at| at.key_line(key))
    }

    fn dependency_line(&self, index: usize) -> Option<usize> {
        self.root
            .get("depends_on")
            .and_then(|deps| deps.item(index))
            .map(At::line)
            .or(self.key("depends_on"))
    }

    fn dependency_lines(&self, raw: &RawJob) -> Vec<FileDependency> {
        raw.depends_on
            .iter()
            .enumerate()
            .map(|(i, dep)| FileDependency {
                job_id: match dep {
                    StrOrMap::Str(job) => job.clone(),
                    StrOrMap::Map(m) => m.job.clone(),
                },
                line: self.dependency_line(i),
            })
            .collect()
    }

    /// Task `index` of the tree.
    fn task_node(&self, index: usize) -> Option<At<'a>> {
        self.root.get("tasks").and_then(|tasks| tasks.item(index))
    }

    fn task_line(&self, index: usize) -> Option<usize> {
        self.task_node(index).map(At::line).or(self.key("tasks"))
    }

    fn task_key_line(&self, index: usize, key: &str) -> Option<usize> {
        self.task_node(index)
            .and_then(|task| task.key_line(key))
            .or(self.task_line(index))
    }

    fn job(&mut self, raw: RawJob, global: &GlobalConfig) -> Option<JobDef> {
        let id_line = self.key("id");
        if let Err(e) = check_id(&raw.id) {
            self.error(id_line, format!("job id {e}"));
        }

        let schedule = raw
            .schedule
            .as_ref()
            .and_then(|s| self.schedule(s, global.timezone));

        if raw.max_concurrency == Some(0) {
            self.error(
                self.key("max_concurrency"),
                "max_concurrency must be at least 1",
            );
        }

        let depends_on = self.job_dependencies(&raw);
        let environment_policy = match raw.environment_policy.as_ref().map(env_policy) {
            None => global.environment_policy.clone(),
            Some(Ok(own)) => global.environment_policy.narrowed_by(&own),
            Some(Err(message)) => {
                self.error(self.key("environment_policy"), message);
                global.environment_policy.clone()
            }
        };
        let notify = match raw.notify.as_ref().map(notify_rule) {
            None => global.notify.clone(),
            Some(Ok(rule)) => Some(rule),
            Some(Err(message)) => {
                self.error(self.key("notify"), message);
                None
            }
        };
        let config: BTreeMap<String, String> =
            raw.config.into_iter().map(|(k, v)| (k, v.0)).collect();

        let overlap = match raw.overlap.as_deref().map(|s| (s, Overlap::parse(s))) {
            None => Overlap::Skip,
            Some((_, Some(o))) => o,
            Some((text, None)) => {
                self.error(
                    self.key("overlap"),
                    format!("overlap '{text}' is not one of skip, queue, allow, cancel_previous"),
                );
                Overlap::Skip
            }
        };
        let catchup = match raw.catchup.as_deref().map(|s| (s, Catchup::parse(s))) {
            None => Catchup::None,
            Some((_, Some(c))) => c,
            Some((text, None)) => {
                self.error(
                    self.key("catchup"),
                    format!("catchup '{text}' is not one of none, latest, all"),
                );
                Catchup::None
            }
        };
        if catchup != Catchup::None && schedule.is_none() && raw.schedule.is_none() {
            self.error(
                self.key("catchup"),
                "catchup needs a schedule (there are no fires to catch up on)",
            );
        }
        let timeout = match (&raw.timeout, raw.timeout_secs) {
            (Some(_), Some(_)) => {
                self.error(
                    self.key("timeout_secs"),
                    "give the run's time limit once: timeout or timeout_secs, not both",
                );
                None
            }
            (Some(t), None) => Some(t.0),
            (None, Some(s)) => Some(std::time::Duration::from_secs(s)),
            (None, None) => None,
        };
        if timeout.is_some_and(|t| t.is_zero()) {
            self.error(
                self.key("timeout").or(self.key("timeout_secs")),
                "a run's timeout must be more than 0",
            );
        }
        let history = match raw.history.as_ref().map(crate::config::global::history) {
            None => global.history,
            Some(Ok(own)) => own,
            Some(Err(message)) => {
                self.error(self.key("history"), message);
                global.history
            }
        };
        if raw.max_queued == Some(0) && overlap == Overlap::Queue {
            self.error(
                self.key("max_queued"),
                "max_queued must be at least 1 under overlap: queue",
            );
        }
        if raw.tasks.is_empty() {
            self.error(self.key("tasks"), "a job needs at least one task");
        }
        // Every text that may hold placeholders, lexed once: checked here, then kept
        // in the tasks for `exec` to render.
        let templates: Vec<TaskTemplates> = raw
            .tasks
            .iter()
            .enumerate()
            .map(|(index, task)| self.templates(index, task))
            .collect();

        let graph: Vec<(&str, Vec<&str>)> = raw
            .tasks
            .iter()
            .map(|t| {
                (
                    t.id.as_str(),
                    t.depends_on.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        let dag = match Dag::build(&graph) {
            Ok(dag) => Some(dag),
            Err(errors) => {
                let places = TaskPlaces::new(&raw.tasks);
                for e in errors {
                    self.dag_error(&e, &places);
                }
                None
            }
        };
        self.placeholders(&raw.tasks, &templates, &config, dag.as_ref());

        let tasks: Vec<Option<TaskDef>> = raw
            .tasks
            .iter()
            .zip(templates)
            .enumerate()
            .map(|(index, (task, templates))| self.task(task, index, templates, global))
            .collect();
        let tasks: Vec<TaskDef> = tasks.into_iter().collect::<Option<_>>()?;
        let dag = dag?;
        if !self.errors.is_empty() {
            return None;
        }
        Some(JobDef {
            overlap,
            max_queued: raw.max_queued.unwrap_or(10),
            catchup,
            catchup_window: raw
                .catchup_window
                .map_or(std::time::Duration::from_secs(24 * 3600), |d| d.0),
            timeout,
            jitter: raw.jitter.map(|d| d.0).filter(|d| !d.is_zero()),
            definition: String::new(),
            history,
            name: raw.name.unwrap_or_else(|| raw.id.clone()),
            id: raw.id,
            description: raw.description,
            schedule,
            enabled: raw.enabled.unwrap_or(true),
            max_concurrency: raw.max_concurrency.unwrap_or(1),
            depends_on,
            config,
            tasks,
            dag,
            source: self.file.to_path_buf(),
            environment_policy,
            notify,
        })
    }

    fn schedule(&mut self, raw: &StrOrMap<RawSchedule>, default_tz: Tz) -> Option<Schedule> {
        let line = self.key("schedule");
        let (expr, tz) = match raw {
            StrOrMap::Str(expr) => (expr.as_str(), default_tz),
            StrOrMap::Map(RawSchedule { cron, timezone }) => {
                let tz = match timezone {
                    None => default_tz,
                    Some(name) => match name.parse::<Tz>() {
                        Ok(tz) => tz,
                        Err(_) => {
                            self.error(
                                self.nested_key("schedule", "timezone").or(line),
                                format!(
                                    "unknown time zone '{name}' (use an IANA name such as \
                                     Europe/Paris)"
                                ),
                            );
                            return None;
                        }
                    },
                };
                (cron.as_str(), tz)
            }
        };
        let expr_line = self.nested_key("schedule", "cron").or(line);
        match Schedule::parse(expr, tz) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(expr_line, e.to_string());
                None
            }
        }
    }

    fn job_dependencies(&mut self, raw: &RawJob) -> Vec<JobDependency> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(raw.depends_on.len());
        for (i, dep) in raw.depends_on.iter().enumerate() {
            let line = self.dependency_line(i);
            let (job_id, condition) = match dep {
                StrOrMap::Str(job) => (job, None),
                StrOrMap::Map(m) => (&m.job, m.condition.as_ref()),
            };
            if *job_id == raw.id {
                self.error(line, format!("job '{job_id}' depends on itself"));
                continue;
            }
            if !seen.insert(job_id.as_str()) {
                self.error(
                    line,
                    format!("job '{job_id}' is listed twice in depends_on"),
                );
                continue;
            }
            let condition = match condition {
                None => DepCondition::LastSuccess,
                Some(StrOrMap::Str(c)) => match c.as_str() {
                    "last_success" => DepCondition::LastSuccess,
                    "last_complete" => DepCondition::LastComplete,
                    other => {
                        self.error(
                            line,
                            format!(
                                "unknown dependency condition '{other}' (expected \
                                 last_success, last_complete or {{within_window: {{seconds: N}}}})"
                            ),
                        );
                        continue;
                    }
                },
                Some(StrOrMap::Map(w)) => {
                    let window = match &w.within_window {
                        StrOrMap::Map(s) => Duration::from_secs(s.seconds),
                        StrOrMap::Str(text) => match parse_duration(text) {
                            Ok(d) => d,
                            Err(e) => {
                                self.error(line, format!("within_window: {e}"));
                                continue;
                            }
                        },
                    };
                    if window.is_zero() {
                        self.error(line, "within_window must be longer than 0 seconds");
                        continue;
                    }
                    DepCondition::WithinWindow(window)
                }
            };
            out.push(JobDependency {
                job_id: job_id.clone(),
                condition,
            });
        }
        out
    }

    /// The texts of task `index` that may hold placeholders, each with the lines it
    /// was written on.
    fn templates<'r>(&self, index: usize, raw: &'r RawTask) -> TaskTemplates<'r> {
        let node = |field| self.field_node(index, field);
        TaskTemplates {
            args: raw
                .args
                .iter()
                .enumerate()
                .map(|(i, a)| written(node(Field::Arg(i)), &a.0))
                .collect(),
            environment: raw
                .environment
                .iter()
                .map(|(k, v)| (k.as_str(), written(node(Field::Env(k)), &v.0)))
                .collect(),
            working_dir: raw
                .working_dir
                .as_deref()
                .map(|w| written(node(Field::WorkingDir), w)),
            script: raw
                .script
                .as_deref()
                .map(|s| written(node(Field::Script), s)),
            inline: raw.inline == Some(true),
        }
    }

    fn task(
        &mut self,
        raw: &RawTask,
        index: usize,
        templates: TaskTemplates<'_>,
        global: &GlobalConfig,
    ) -> Option<TaskDef> {
        let errors_before = self.errors.len();
        let line = self.task_line(index);
        let id = &raw.id;
        if let Err(e) = check_id(id) {
            self.error(self.task_key_line(index, "id"), format!("task id {e}"));
        }
        let task_node = self.task_node(index);
        let node = |key: &str| task_node.and_then(|task| task.get(key));
        let args = templates.args;
        let kind = match raw.kind.unwrap_or(RawKind::Command) {
            RawKind::Command => {
                for (key, set) in [
                    ("script", raw.script.is_some()),
                    ("inline", raw.inline.is_some()),
                    ("interpreter", raw.interpreter.is_some()),
                ] {
                    if set {
                        self.error(
                            self.task_key_line(index, key),
                            format!(
                                "task '{id}': `{key}` belongs to python tasks (add `type: python`)"
                            ),
                        );
                    }
                }
                match raw.command.as_deref().map(str::trim) {
                    Some(command) if !command.is_empty() => Some(TaskKind::Command {
                        command: written(node("command"), command),
                        args,
                    }),
                    Some(_) => {
                        self.error(
                            self.task_key_line(index, "command"),
                            format!("task '{id}': command is empty"),
                        );
                        None
                    }
                    None => {
                        // A command of the wrong type is reported as such already.
                        if !self.unreadable.contains(&format!("tasks[{index}].command")) {
                            self.error(line, format!("task '{id}' needs a `command`"));
                        }
                        None
                    }
                }
            }
            RawKind::Python => {
                if raw.command.is_some() {
                    self.error(
                        self.task_key_line(index, "command"),
                        format!("task '{id}': python tasks take a `script`, not a `command`"),
                    );
                }
                let interpreter = raw.interpreter.as_deref().unwrap_or("python3").trim();
                if interpreter.is_empty() {
                    self.error(
                        self.task_key_line(index, "interpreter"),
                        format!("task '{id}': interpreter is empty"),
                    );
                }
                match templates.script {
                    Some(script) if !script.source().trim().is_empty() => Some(TaskKind::Python {
                        interpreter: written(node("interpreter"), interpreter),
                        script,
                        inline: raw.inline.unwrap_or(false),
                        args,
                    }),
                    Some(_) => {
                        self.error(
                            self.task_key_line(index, "script"),
                            format!("task '{id}': script is empty"),
                        );
                        None
                    }
                    None => {
                        if !self.unreadable.contains(&format!("tasks[{index}].script")) {
                            self.error(
                                line,
                                format!(
                                    "task '{id}' needs a `script` (a file path, or source with \
                                     `inline: true`)"
                                ),
                            );
                        }
                        None
                    }
                }
            }
        };

        let timeout = match (raw.timeout_secs, raw.timeout) {
            (Some(_), Some(_)) => {
                self.error(
                    self.task_key_line(index, "timeout"),
                    format!("task '{id}': give either `timeout` or `timeout_secs`, not both"),
                );
                None
            }
            (Some(secs), None) => Some(Duration::from_secs(secs)),
            (None, Some(DurationText(d))) => Some(d),
            (None, None) => None,
        };
        if timeout.is_some_and(|t| t.is_zero()) {
            let key = if raw.timeout.is_some() {
                "timeout"
            } else {
                "timeout_secs"
            };
            self.error(
                self.task_key_line(index, key),
                format!("task '{id}': the timeout must be longer than 0 (leave it out for none)"),
            );
        }

        let retry = match &raw.retry {
            Some(r) => match retry_policy(r) {
                Ok(policy) => policy,
                Err(message) => {
                    self.error(
                        self.task_key_line(index, "retry"),
                        format!("task '{id}': {message}"),
                    );
                    RetryPolicy::default()
                }
            },
            None => global.default_retry.clone().unwrap_or_default(),
        };

        let mut resources = BTreeMap::new();
        let slots_node = self
            .task_node(index)
            .and_then(|task| task.get("resources"))
            .and_then(|resources| resources.get("slots"));
        for (pool, &slots) in raw.resources.iter().flat_map(|r| &r.slots) {
            let at = slots_node
                .and_then(|slots| slots.key_line(pool))
                .or_else(|| self.task_key_line(index, "resources"));
            match global.pools.get(pool) {
                None if global.pools.is_empty() => self.error(
                    at,
                    format!(
                        "task '{id}' uses resource pool '{pool}', but petit.yaml defines no \
                         pools (resources: {{pools: {{{pool}: N}}}})"
                    ),
                ),
                None => self.error(
                    at,
                    format!(
                        "task '{id}' uses unknown resource pool '{pool}' (defined: {})",
                        global.pools.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
                Some(_) if slots == 0 => self.error(
                    at,
                    format!("task '{id}': takes 0 slots of pool '{pool}' (leave it out instead)"),
                ),
                Some(&size) if slots > size => self.error(
                    at,
                    format!(
                        "task '{id}' takes {slots} slots of pool '{pool}', which has only {size}: \
                         it could never run"
                    ),
                ),
                Some(_) => {
                    resources.insert(pool.clone(), slots);
                }
            }
        }

        let mut environment = global.environment.clone();
        environment.extend(
            raw.environment
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone())),
        );

        if self.errors.len() > errors_before {
            return None;
        }
        Some(TaskDef {
            id: id.clone(),
            kind: kind?,
            depends_on: raw.depends_on.clone(),
            condition: match raw.condition {
                None | Some(RawCondition::AllSuccess) => Condition::AllSuccess,
                Some(RawCondition::OnFailure) => Condition::OnFailure,
                Some(RawCondition::AllDone | RawCondition::Always) => Condition::AllDone,
            },
            retry,
            environment,
            working_dir: raw.working_dir.clone(),
            timeout,
            resources,
        })
    }

    fn dag_error(&mut self, error: &DagError, places: &TaskPlaces) {
        let first = |id: &str| places.first.get(id).copied();
        let (line, message) = match error {
            DagError::DuplicateTask(id) => {
                // The second occurrence is the duplicate.
                let second = places.second.get(id.as_str()).copied();
                let line = match second {
                    Some(index) => self.task_line(index),
                    None => self.key("tasks"),
                };
                (line, format!("duplicate task id '{id}'"))
            }
            DagError::UnknownDependency { task, .. } | DagError::SelfDependency(task) => {
                (self.depends_on_line(first(task)), error.to_string())
            }
            DagError::Cycle(cycle) => (
                self.depends_on_line(cycle.first().and_then(|id| first(id))),
                format!(
                    "task dependency cycle: {} (each task waits for the one before it)",
                    cycle.join(" -> ")
                ),
            ),
        };
        self.error(line, message);
    }

    fn depends_on_line(&self, task: Option<usize>) -> Option<usize> {
        match task {
            Some(index) => self.task_key_line(index, "depends_on"),
            None => self.key("tasks"),
        }
    }

    /// Checks the placeholders of arguments, inline scripts, environment values and
    /// working directory: config keys must exist (params only override existing keys)
    /// and a task's outputs are only readable downstream of it.
    fn placeholders(
        &mut self,
        tasks: &[RawTask],
        templates: &[TaskTemplates<'_>],
        config: &BTreeMap<String, String>,
        dag: Option<&Dag>,
    ) {
        // A config that could not be read is reported as such, not key by key.
        let config_read = !self.unreadable.contains("config");
        // Looked up once per placeholder: by id, the first task of each.
        let mut index_of: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
        for (i, task) in tasks.iter().enumerate().rev() {
            index_of.insert(task.id.as_str(), i);
        }
        // Every `(upstream task, task reading its outputs)` pair, answered in one go.
        let upstream = dag.map(|d| {
            let mut pairs = Vec::new();
            for (index, templates) in templates.iter().enumerate() {
                for (_, template) in templates.fields() {
                    for (placeholder, _) in template.placeholders() {
                        if let Placeholder::TaskOutput { task: from, .. } = placeholder {
                            pairs.extend(index_of.get(from).map(|&from| (from, index)));
                        }
                    }
                }
            }
            d.upstream_pairs(&pairs)
        });
        for (index, (task, templates)) in tasks.iter().zip(templates).enumerate() {
            let mut problems = Vec::new();
            for (field, template) in templates.fields() {
                if let Some(e) = template.error() {
                    problems.push((field, String::new(), e.to_string()));
                    continue;
                }
                for (placeholder, raw) in template.placeholders() {
                    let problem = match placeholder {
                        Placeholder::Config(k) | Placeholder::Param(k)
                            if config_read && !config.contains_key(k) =>
                        {
                            Some(format!(
                                "'{raw}' refers to '{k}', which is not in the job's config \
                                 (params can only override existing keys)"
                            ))
                        }
                        Placeholder::TaskOutput { task: from, .. } => match index_of.get(from) {
                            None => Some(format!("'{raw}' refers to unknown task '{from}'")),
                            Some(&from_index) => match &upstream {
                                Some(up) if !up.contains(&(from_index, index)) => Some(format!(
                                    "'{raw}': task '{from}' is not upstream of '{}', so its \
                                         outputs may not exist yet (add it to depends_on)",
                                    task.id
                                )),
                                _ => None,
                            },
                        },
                        Placeholder::Unknown(name) => Some(format!(
                            "unknown placeholder '${{{name}}}' (expected ${{config.KEY}}, \
                             ${{params.KEY}}, ${{tasks.TASK.outputs.KEY}}, ${{run.id}} or \
                             ${{job.id}}; write $${{ for a literal ${{)"
                        )),
                        _ => None,
                    };
                    if let Some(problem) = problem {
                        problems.push((field, raw.to_string(), problem));
                    }
                }
            }
            // Where the search for the field's next placeholder resumes.
            let mut cursor = None;
            let mut last_field = None;
            for (field, raw, problem) in problems {
                if last_field != Some(field) {
                    (last_field, cursor) = (Some(field), None);
                }
                let line = self
                    .field_node(index, field)
                    .map(|node| self.line_in(node, &raw, &mut cursor))
                    .or_else(|| self.task_key_line(index, field.key()));
                self.error(line, format!("task '{}': {problem}", task.id));
            }
        }
    }

    fn field_node(&self, index: usize, field: Field<'_>) -> Option<At<'a>> {
        let task = self.task_node(index)?;
        match field {
            Field::Arg(i) => task.get("args")?.item(i),
            Field::Env(key) => task.get("environment")?.get(key),
            Field::WorkingDir => task.get("working_dir"),
            Field::Script => task.get("script"),
        }
    }

    fn line_in(
        &mut self,
        node: At<'_>,
        needle: &str,
        cursor: &mut Option<(usize, usize)>,
    ) -> usize {
        if self.text_lines.is_empty() {
            self.text_lines = self.text.lines().collect();
        }
        node.line_of(&self.text_lines, needle, cursor)
    }
}

/// Where each task id is first and second written, for the DAG's errors (one lookup
/// each, not a search of the tasks per error).
struct TaskPlaces<'a> {
    first: HashMap<&'a str, usize>,
    second: HashMap<&'a str, usize>,
}

impl<'a> TaskPlaces<'a> {
    fn new(tasks: &'a [RawTask]) -> Self {
        let mut places = TaskPlaces {
            first: HashMap::with_capacity(tasks.len()),
            second: HashMap::new(),
        };
        for (i, task) in tasks.iter().enumerate() {
            let id = task.id.as_str();
            if places.first.contains_key(id) {
                places.second.entry(id).or_insert(i);
            } else {
                places.first.insert(id, i);
            }
        }
        places
    }
}

/// The texts of a task that may hold placeholders, lexed.
struct TaskTemplates<'r> {
    args: Vec<Template>,
    environment: Vec<(&'r str, Template)>,
    working_dir: Option<Template>,
    script: Option<Template>,
    /// Whether `script` is source (inline) rather than a file path.
    inline: bool,
}

impl TaskTemplates<'_> {
    /// Those whose placeholders are checked: arguments, environment values, working
    /// directory and inline script.
    fn fields(&self) -> impl Iterator<Item = (Field<'_>, &Template)> {
        let args = self.args.iter().enumerate();
        args.map(|(i, a)| (Field::Arg(i), a))
            .chain(self.environment.iter().map(|(k, v)| (Field::Env(k), v)))
            .chain(self.working_dir.iter().map(|w| (Field::WorkingDir, w)))
            .chain(
                self.script
                    .iter()
                    .filter(|_| self.inline)
                    .map(|s| (Field::Script, s)),
            )
    }
}

/// `text` as a template, with the lines of `node` if it is known.
fn written(node: Option<At<'_>>, text: &str) -> Template {
    let template = Template::parse(text);
    match node {
        Some(node) => template.written_at(node.lines()),
        None => template,
    }
}

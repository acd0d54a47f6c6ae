//! One job file: the original Petit YAML format read with serde (unknown fields
//! refused, every one of them reported: see `unknown_fields`), then validated into a
//! `JobDef`, collecting every semantic error of the file with the line of the item it
//! is about.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;

use super::bad_values;
use super::de::{DurationText, ScalarText, StrOrMap};
use super::global::{env_policy, RawEnvPolicy};
use super::limits::Bounded;
use super::lines::{Item, Outline};
use super::notify::{notify_rule, RawNotify};
use super::placeholder::{placeholders, Placeholder};
use super::{ConfigError, GlobalConfig};
use crate::core::schedule::parse_duration;
use crate::core::{
    Backoff, Condition, Dag, DagError, DepCondition, JobDef, JobDependency, RetryCondition,
    RetryPolicy, Schedule, TaskDef, TaskKind,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    id: String,
    name: Option<String>,
    description: Option<String>,
    schedule: Option<StrOrMap<RawSchedule>>,
    enabled: Option<bool>,
    max_concurrency: Option<u32>,
    #[serde(default)]
    depends_on: Vec<StrOrMap<RawJobDependency>>,
    #[serde(default)]
    config: BTreeMap<String, ScalarText>,
    /// Not `environment`: the original documents a job-level `environment` as a map
    /// of variables, so the inheritance rules get a key of their own.
    environment_policy: Option<RawEnvPolicy>,
    /// Replaces `petit.yaml`'s default `notify`.
    notify: Option<RawNotify>,
    tasks: Vec<RawTask>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: String,
    timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobDependency {
    job: String,
    condition: Option<StrOrMap<RawWindowCondition>>,
}

/// `{within_window: {seconds: 3600}}` (or `{within_window: 1h}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindowCondition {
    within_window: StrOrMap<RawWindowSeconds>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindowSeconds {
    seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: String,
    /// The original allows a display name; the engine has no use for it.
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<RawKind>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<ScalarText>,
    script: Option<String>,
    inline: Option<bool>,
    interpreter: Option<String>,
    #[serde(default)]
    environment: BTreeMap<String, ScalarText>,
    working_dir: Option<String>,
    timeout_secs: Option<u64>,
    timeout: Option<DurationText>,
    #[serde(default)]
    depends_on: Vec<String>,
    condition: Option<RawCondition>,
    retry: Option<RawRetry>,
    resources: Option<RawTaskResources>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawKind {
    Command,
    Python,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawCondition {
    AllSuccess,
    OnFailure,
    AllDone,
    Always,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    max_attempts: u32,
    delay_secs: Option<u64>,
    delay: Option<DurationText>,
    condition: Option<RawRetryCondition>,
    backoff: Option<RawBackoff>,
    max_delay_secs: Option<u64>,
    max_delay: Option<DurationText>,
    jitter: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawRetryCondition {
    Always,
    TransientOnly,
    Never,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawBackoff {
    Fixed,
    Exponential,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTaskResources {
    #[serde(default)]
    slots: BTreeMap<String, u32>,
}

/// A job dependency as read, for the checks across files.
#[derive(Debug, Clone)]
pub(super) struct FileDependency {
    pub job_id: String,
    pub line: Option<usize>,
}

/// What one file yielded: the job when it is valid, and what the checks across files
/// need even when it is not.
#[derive(Debug)]
pub(super) struct ParsedFile {
    pub path: PathBuf,
    pub id: Option<String>,
    pub id_line: Option<usize>,
    pub depends_on: Vec<FileDependency>,
    pub job: Option<JobDef>,
    pub errors: Vec<ConfigError>,
}

impl ParsedFile {
    /// A file that could not be parsed at all because of `error`: only its id, as
    /// `text` (a part of it) says.
    pub(super) fn unread(text: &str, file: &Path, error: ConfigError) -> ParsedFile {
        let outline = Outline::new(text);
        ParsedFile {
            path: file.to_path_buf(),
            id: outline.value("id").map(str::to_string),
            id_line: outline.key("id"),
            depends_on: Vec::new(),
            job: None,
            errors: vec![error],
        }
    }
}

/// Whether `text` holds nothing but blank lines, comments and document markers.
pub(super) fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
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
pub(super) fn retry_policy(raw: &RawRetry) -> Result<RetryPolicy, String> {
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

/// Parses and validates one file, collecting all of its errors.
pub(super) fn parse_file(text: &str, file: &Path, global: &GlobalConfig) -> ParsedFile {
    let outline = Outline::new(text);
    let mut parsed = ParsedFile {
        path: file.to_path_buf(),
        id: None,
        id_line: outline.key("id"),
        depends_on: Vec::new(),
        job: None,
        errors: Vec::new(),
    };
    if is_blank(text) {
        parsed.errors.push(ConfigError::new(
            file,
            None,
            "the file is empty (a job needs at least `id` and `tasks`)",
        ));
        return parsed;
    }
    // Before serde_yaml sees the text: libyaml is quadratic in the nesting depth.
    if let Err(error) = global.job_files.check(text, file, Bounded::JobFile) {
        return ParsedFile::unread(text, file, error);
    }
    // Unknown fields and one-line values of the wrong type do not stop the parse: they
    // are reported with everything else. The line numbers of the text read stay those
    // of `text`, which `outline` scans.
    let (raw, errors) = bad_values::parse::<RawJob>(text, file);
    parsed.errors = errors;
    let Some(raw) = raw else {
        // Still name the job, so that the other files' checks know it exists.
        parsed.id = outline.value("id").map(str::to_string);
        return parsed;
    };
    let mut checker = JobChecker {
        file,
        outline: &outline,
        errors: Vec::new(),
        finds_left: FINDS_PER_TASK,
    };
    parsed.id = Some(raw.id.clone());
    parsed.depends_on = checker.dependency_lines(&raw);
    let job = checker.job(raw, global);
    parsed.errors.extend(checker.errors);
    // In file order; the sort is stable so one line's errors keep their order.
    parsed.errors.sort_by_key(|e| e.line);
    parsed.job = job.filter(|_| parsed.errors.is_empty());
    parsed
}

/// How many times one task's text is searched for the line of a value (a pool, a
/// placeholder): past that, errors point at the key the value is under. A task with
/// thousands of bad values would otherwise cost its size times their number.
const FINDS_PER_TASK: usize = 64;

/// Validation of one parsed file; errors accumulate in `errors`.
struct JobChecker<'a> {
    file: &'a Path,
    outline: &'a Outline<'a>,
    errors: Vec<ConfigError>,
    /// What is left of the current task's `FINDS_PER_TASK`.
    finds_left: usize,
}

impl JobChecker<'_> {
    fn error(&mut self, line: Option<usize>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(self.file, line, message.into()));
    }

    fn dependency_lines(&self, raw: &RawJob) -> Vec<FileDependency> {
        let items = self.outline.items("depends_on");
        raw.depends_on
            .iter()
            .enumerate()
            .map(|(i, dep)| FileDependency {
                job_id: match dep {
                    StrOrMap::Str(job) => job.clone(),
                    StrOrMap::Map(m) => m.job.clone(),
                },
                line: items
                    .get(i)
                    .map(Item::line)
                    .or(self.outline.key("depends_on")),
            })
            .collect()
    }

    fn job(&mut self, raw: RawJob, global: &GlobalConfig) -> Option<JobDef> {
        let id_line = self.outline.key("id");
        if let Err(e) = check_id(&raw.id) {
            self.error(id_line, format!("job id {e}"));
        }

        let schedule = raw
            .schedule
            .as_ref()
            .and_then(|s| self.schedule(s, global.timezone));

        if raw.max_concurrency == Some(0) {
            self.error(
                self.outline.key("max_concurrency"),
                "max_concurrency must be at least 1",
            );
        }

        let depends_on = self.job_dependencies(&raw);
        let environment_policy = match raw.environment_policy.as_ref().map(env_policy) {
            None => global.environment_policy.clone(),
            Some(Ok(own)) => global.environment_policy.narrowed_by(&own),
            Some(Err(message)) => {
                self.error(self.outline.key("environment_policy"), message);
                global.environment_policy.clone()
            }
        };
        let notify = match raw.notify.as_ref().map(notify_rule) {
            None => global.notify.clone(),
            Some(Ok(rule)) => Some(rule),
            Some(Err(message)) => {
                self.error(self.outline.key("notify"), message);
                None
            }
        };
        let config: BTreeMap<String, String> =
            raw.config.into_iter().map(|(k, v)| (k, v.0)).collect();

        if raw.tasks.is_empty() {
            self.error(self.outline.key("tasks"), "a job needs at least one task");
        }
        let items = self.task_items(&raw.tasks);
        let tasks: Vec<Option<TaskDef>> = raw
            .tasks
            .iter()
            .zip(&items)
            .map(|(task, item)| self.task(task, *item, global))
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
                    self.dag_error(&e, &places, &items);
                }
                None
            }
        };
        self.placeholders(&raw.tasks, &items, &config, dag.as_ref());

        let tasks: Vec<TaskDef> = tasks.into_iter().collect::<Option<_>>()?;
        let dag = dag?;
        if !self.errors.is_empty() {
            return None;
        }
        Some(JobDef {
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
        let line = self.outline.key("schedule");
        let (expr, tz) = match raw {
            StrOrMap::Str(expr) => (expr.as_str(), default_tz),
            StrOrMap::Map(RawSchedule { cron, timezone }) => {
                let tz = match timezone {
                    None => default_tz,
                    Some(name) => match name.parse::<Tz>() {
                        Ok(tz) => tz,
                        Err(_) => {
                            self.error(
                                self.outline.nested_key("schedule", "timezone").or(line),
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
        let expr_line = self.outline.nested_key("schedule", "cron").or(line);
        match Schedule::parse(expr, tz) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(expr_line, e.to_string());
                None
            }
        }
    }

    fn job_dependencies(&mut self, raw: &RawJob) -> Vec<JobDependency> {
        let items = self.outline.items("depends_on");
        let fallback = self.outline.key("depends_on");
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(raw.depends_on.len());
        for (i, dep) in raw.depends_on.iter().enumerate() {
            let line = items.get(i).map(Item::line).or(fallback);
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

    /// The outline item of each task, matched by position when the file is block
    /// style and the ids agree; `None` otherwise (errors then point at `tasks:`).
    fn task_items(&self, tasks: &[RawTask]) -> Vec<Option<Item>> {
        let items = self.outline.items("tasks");
        let aligned = items.len() == tasks.len()
            && items.iter().zip(tasks).all(|(item, task)| {
                self.outline
                    .item_value(*item, "id")
                    .is_none_or(|v| v == task.id)
            });
        if aligned {
            items.into_iter().map(Some).collect()
        } else {
            vec![None; tasks.len()]
        }
    }

    /// The first line of `item` holding `needle`, within the task's search budget.
    fn find(&mut self, item: Option<Item>, needle: &str) -> Option<usize> {
        let item = item?;
        self.finds_left = self.finds_left.checked_sub(1)?;
        self.outline.item_find(item, needle)
    }

    fn task_line(&self, item: Option<Item>) -> Option<usize> {
        item.map(|i| i.line()).or(self.outline.key("tasks"))
    }

    fn task_key_line(&self, item: Option<Item>, key: &str) -> Option<usize> {
        item.and_then(|i| self.outline.item_key(i, key))
            .or(self.task_line(item))
    }

    fn task(
        &mut self,
        raw: &RawTask,
        item: Option<Item>,
        global: &GlobalConfig,
    ) -> Option<TaskDef> {
        let errors_before = self.errors.len();
        self.finds_left = FINDS_PER_TASK;
        let line = self.task_line(item);
        let id = &raw.id;
        if let Err(e) = check_id(id) {
            self.error(self.task_key_line(item, "id"), format!("task id {e}"));
        }
        let args: Vec<String> = raw.args.iter().map(|a| a.0.clone()).collect();
        let kind = match raw.kind.unwrap_or(RawKind::Command) {
            RawKind::Command => {
                for (key, set) in [
                    ("script", raw.script.is_some()),
                    ("inline", raw.inline.is_some()),
                    ("interpreter", raw.interpreter.is_some()),
                ] {
                    if set {
                        self.error(
                            self.task_key_line(item, key),
                            format!(
                                "task '{id}': `{key}` belongs to python tasks (add `type: python`)"
                            ),
                        );
                    }
                }
                match raw.command.as_deref().map(str::trim) {
                    Some(command) if !command.is_empty() => Some(TaskKind::Command {
                        command: command.to_string(),
                        args,
                    }),
                    Some(_) => {
                        self.error(
                            self.task_key_line(item, "command"),
                            format!("task '{id}': command is empty"),
                        );
                        None
                    }
                    None => {
                        self.error(line, format!("task '{id}' needs a `command`"));
                        None
                    }
                }
            }
            RawKind::Python => {
                if raw.command.is_some() {
                    self.error(
                        self.task_key_line(item, "command"),
                        format!("task '{id}': python tasks take a `script`, not a `command`"),
                    );
                }
                let interpreter = raw.interpreter.as_deref().unwrap_or("python3").trim();
                if interpreter.is_empty() {
                    self.error(
                        self.task_key_line(item, "interpreter"),
                        format!("task '{id}': interpreter is empty"),
                    );
                }
                match raw.script.as_deref() {
                    Some(script) if !script.trim().is_empty() => Some(TaskKind::Python {
                        interpreter: interpreter.to_string(),
                        script: script.to_string(),
                        inline: raw.inline.unwrap_or(false),
                        args,
                    }),
                    Some(_) => {
                        self.error(
                            self.task_key_line(item, "script"),
                            format!("task '{id}': script is empty"),
                        );
                        None
                    }
                    None => {
                        self.error(
                            line,
                            format!(
                                "task '{id}' needs a `script` (a file path, or source with \
                                 `inline: true`)"
                            ),
                        );
                        None
                    }
                }
            }
        };

        let timeout = match (raw.timeout_secs, raw.timeout) {
            (Some(_), Some(_)) => {
                self.error(
                    self.task_key_line(item, "timeout"),
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
                self.task_key_line(item, key),
                format!("task '{id}': the timeout must be longer than 0 (leave it out for none)"),
            );
        }

        let retry = match &raw.retry {
            Some(r) => match retry_policy(r) {
                Ok(policy) => policy,
                Err(message) => {
                    self.error(
                        self.task_key_line(item, "retry"),
                        format!("task '{id}': {message}"),
                    );
                    RetryPolicy::default()
                }
            },
            None => global.default_retry.clone().unwrap_or_default(),
        };

        let mut resources = BTreeMap::new();
        for (pool, &slots) in raw.resources.iter().flat_map(|r| &r.slots) {
            let at = self
                .find(item, &format!("{pool}:"))
                .or_else(|| self.task_key_line(item, "resources"));
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

    fn dag_error(&mut self, error: &DagError, places: &TaskPlaces, items: &[Option<Item>]) {
        let first = |id: &str| places.first.get(id).copied();
        let (line, message) = match error {
            DagError::DuplicateTask(id) => {
                // The second occurrence is the duplicate.
                let second = places.second.get(id.as_str()).copied();
                let item = second.and_then(|i| items[i]);
                (self.task_line(item), format!("duplicate task id '{id}'"))
            }
            DagError::UnknownDependency { task, .. } | DagError::SelfDependency(task) => {
                let item = first(task).and_then(|i| items[i]);
                (self.task_key_line(item, "depends_on"), error.to_string())
            }
            DagError::Cycle(cycle) => {
                let item = cycle
                    .first()
                    .and_then(|id| first(id))
                    .and_then(|i| items[i]);
                (
                    self.task_key_line(item, "depends_on"),
                    format!(
                        "task dependency cycle: {} (each task waits for the one before it)",
                        cycle.join(" -> ")
                    ),
                )
            }
        };
        self.error(line, message);
    }

    /// Checks the placeholders of arguments, inline scripts, environment values and
    /// working directory: config keys must exist (params only override existing keys)
    /// and a task's outputs are only readable downstream of it.
    fn placeholders(
        &mut self,
        tasks: &[RawTask],
        items: &[Option<Item>],
        config: &BTreeMap<String, String>,
        dag: Option<&Dag>,
    ) {
        // Looked up once per placeholder: by id, the first task of each.
        let mut index_of: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
        for (i, task) in tasks.iter().enumerate().rev() {
            index_of.insert(task.id.as_str(), i);
        }
        // Every `(upstream task, task reading its outputs)` pair, answered in one go.
        let upstream = dag.map(|d| {
            let mut pairs = Vec::new();
            for (index, task) in tasks.iter().enumerate() {
                for (_, text) in placeholder_fields(task) {
                    for (placeholder, _) in placeholders(text).unwrap_or_default() {
                        if let Placeholder::TaskOutput { task: from, .. } = placeholder {
                            pairs.extend(index_of.get(from).map(|&from| (from, index)));
                        }
                    }
                }
            }
            d.upstream_pairs(&pairs)
        });
        for (index, task) in tasks.iter().enumerate() {
            let item = items[index];
            let fields = placeholder_fields(task);
            let mut problems = Vec::new();
            for (key, text) in fields {
                let found = match placeholders(text) {
                    Ok(found) => found,
                    Err(e) => {
                        problems.push((key, text.to_string(), e));
                        continue;
                    }
                };
                for (placeholder, raw) in found {
                    let problem = match placeholder {
                        Placeholder::Config(k) | Placeholder::Param(k)
                            if !config.contains_key(k) =>
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
                        problems.push((key, raw.to_string(), problem));
                    }
                }
            }
            self.finds_left = FINDS_PER_TASK;
            for (key, raw, problem) in problems {
                let line = self
                    .find(item, &raw)
                    .or_else(|| self.task_key_line(item, key));
                self.error(line, format!("task '{}': {problem}", task.id));
            }
        }
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

/// The fields of a task that may hold placeholders, with the key each is under.
fn placeholder_fields(task: &RawTask) -> impl Iterator<Item = (&'static str, &str)> {
    task.args
        .iter()
        .map(|a| ("args", a.0.as_str()))
        .chain(
            task.environment
                .values()
                .map(|v| ("environment", v.0.as_str())),
        )
        .chain(task.working_dir.iter().map(|w| ("working_dir", w.as_str())))
        .chain(
            task.script
                .iter()
                .filter(|_| task.inline == Some(true))
                .map(|s| ("script", s.as_str())),
        )
}

//! Validated job and task definitions, as the engine runs them. `config/` builds
//! these from the original Petit YAML format; nothing here parses files. What a task
//! runs is held as `Template`s: its `${...}` placeholders are parsed once, when the job
//! is loaded, and `exec` only renders them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use super::dag::Dag;
use super::environment::EnvPolicy;
use super::schedule::Schedule;

/// One job: a schedule (or none: manual only) and a DAG of tasks.
#[derive(Debug, Clone)]
pub struct JobDef {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// `None` for jobs that only run when triggered.
    pub schedule: Option<Schedule>,
    pub enabled: bool,
    /// Concurrent runs of this job (at least 1).
    pub max_concurrency: u32,
    pub depends_on: Vec<JobDependency>,
    /// Values usable as `${config.key}`; scalars are kept as their YAML text.
    pub config: BTreeMap<String, String>,
    /// In file order.
    pub tasks: Vec<TaskDef>,
    /// The validated dependency graph over `tasks` (same indices).
    pub dag: Dag,
    /// The file the job was loaded from.
    pub source: PathBuf,
    /// What its tasks inherit from petitd's environment (`petit.yaml`'s policy
    /// narrowed by the job's).
    pub environment_policy: EnvPolicy,
    /// What to tell whom when its runs end (the job's `notify`, else `petit.yaml`'s).
    pub notify: Option<super::notify::NotifyRule>,
    /// What a scheduled fire does while the job already has `max_concurrency` runs.
    pub overlap: Overlap,
    /// Runs waiting under `overlap: queue`, at most (more fires are skipped).
    pub max_queued: u32,
    /// What happens to fires missed while the daemon was down or the job paused.
    pub catchup: Catchup,
    /// How far back a catch-up looks.
    pub catchup_window: std::time::Duration,
    /// A run that takes longer is stopped and ends `failed` (reason `timeout`).
    pub timeout: Option<std::time::Duration>,
    /// Each scheduled fire is delayed by a random amount up to this (never past the
    /// next fire), to spread jobs that share a schedule.
    pub jitter: Option<std::time::Duration>,
    /// How much of its run history is kept (the job's `history`, else `petit.yaml`'s).
    pub history: History,
    /// A content hash of the job's definition (its file's bytes): runs record the
    /// definition they ran with, and a reload tells a changed job from an unchanged one.
    pub definition: String,
}

/// How much run history a job keeps: runs beyond either bound (with their tasks,
/// outputs and logs) are deleted in the background. Queued and running runs are never
/// deleted. Both `None`: everything is kept (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct History {
    /// The newest this many runs are kept.
    pub max_runs: Option<u32>,
    /// Runs that ended longer ago than this go.
    pub max_age: Option<std::time::Duration>,
}

impl History {
    pub fn is_bounded(&self) -> bool {
        self.max_runs.is_some() || self.max_age.is_some()
    }
}

/// What a scheduled fire does while its job already has `max_concurrency` runs going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Skipped, with an event and a count (the default).
    #[default]
    Skip,
    /// Queued (up to `max_queued`), to start when a run ends.
    Queue,
    /// Started anyway: `max_concurrency` does not hold back scheduled fires.
    Allow,
    /// The oldest running run is cancelled, then the new one starts.
    CancelPrevious,
}

impl Overlap {
    pub fn parse(s: &str) -> Option<Overlap> {
        Some(match s {
            "skip" => Overlap::Skip,
            "queue" => Overlap::Queue,
            "allow" => Overlap::Allow,
            "cancel_previous" => Overlap::CancelPrevious,
            _ => return None,
        })
    }
}

/// What happens, at start or resume, to fires missed while down or paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Catchup {
    /// Nothing: missed fires are gone (the default).
    #[default]
    None,
    /// The latest missed instant runs once.
    Latest,
    /// Every missed instant within the window runs, oldest first.
    All,
}

impl Catchup {
    pub fn parse(s: &str) -> Option<Catchup> {
        Some(match s {
            "none" => Catchup::None,
            "latest" => Catchup::Latest,
            "all" => Catchup::All,
            _ => return None,
        })
    }
}

impl JobDef {
    /// The task with this id.
    pub fn task(&self, id: &str) -> Option<&TaskDef> {
        self.tasks.iter().find(|t| t.id == id)
    }
}

/// A dependency of a job on another job's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDependency {
    pub job_id: String,
    pub condition: DepCondition,
}

/// What the upstream job's history must show for a dependent run to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepCondition {
    /// The upstream's most recent finished run succeeded.
    LastSuccess,
    /// The upstream's most recent run has finished, whatever its outcome.
    LastComplete,
    /// The upstream succeeded within this window before now.
    WithinWindow(Duration),
}

/// One task of a job.
#[derive(Debug, Clone)]
pub struct TaskDef {
    pub id: String,
    pub kind: TaskKind,
    pub depends_on: Vec<String>,
    pub condition: Condition,
    pub retry: RetryPolicy,
    pub environment: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    pub timeout: Option<Duration>,
    /// Slots taken from named resource pools while the task runs.
    pub resources: BTreeMap<String, u32>,
}

/// What a task runs: its program and arguments, each a `Template` (placeholders
/// substituted without any shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskKind {
    /// A program and its argv, spawned directly.
    Command {
        command: Template,
        args: Vec<Template>,
    },
    /// A Python script: a file path, or inline source when `inline` is set.
    Python {
        interpreter: Template,
        script: Template,
        inline: bool,
        args: Vec<Template>,
    },
}

/// `-c`, before an inline Python script.
static DASH_C: LazyLock<Template> = LazyLock::new(|| Template::parse("-c"));

impl TaskKind {
    /// The program and argv to spawn, as written (before placeholder substitution).
    pub fn argv(&self) -> (String, Vec<String>) {
        let (program, args) = self.templates();
        (
            program.source().to_string(),
            args.iter().map(|a| a.source().to_string()).collect(),
        )
    }

    /// The program and argv to spawn, as templates.
    pub fn templates(&self) -> (&Template, Vec<&Template>) {
        match self {
            TaskKind::Command { command, args } => (command, args.iter().collect()),
            TaskKind::Python {
                interpreter,
                script,
                inline,
                args,
            } => {
                let mut argv = Vec::with_capacity(args.len() + 2);
                if *inline {
                    argv.push(&*DASH_C);
                }
                argv.push(script);
                argv.extend(args);
                (interpreter, argv)
            }
        }
    }

    /// `command` or `python`.
    pub fn type_name(&self) -> &'static str {
        match self {
            TaskKind::Command { .. } => "command",
            TaskKind::Python { .. } => "python",
        }
    }
}

/// The first segments of Petit's placeholders. Any other `${NAME}` (a shell variable
/// in `sh -c '...'`, say) is left as written, so that job files keep meaning what
/// their authors wrote.
pub const NAMESPACES: &[&str] = &["config", "params", "tasks", "run", "job"];

/// Whether `name` (trimmed, between `${` and `}`) is in one of Petit's namespaces.
pub fn is_petit(name: &str) -> bool {
    let first = name.trim().split('.').next().unwrap_or("");
    NAMESPACES.contains(&first) && name.contains('.')
}

/// What a placeholder refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder<'a> {
    /// `${config.key}`
    Config(&'a str),
    /// `${params.key}`: a trigger's override of a config key.
    Param(&'a str),
    /// `${tasks.task.outputs.key}`
    TaskOutput { task: &'a str, key: &'a str },
    /// `${run.id}`
    RunId,
    /// `${job.id}`
    JobId,
    /// A malformed name in one of Petit's namespaces (`${tasks.x.rows}`).
    Unknown(&'a str),
}

/// One piece of a template, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// Text that stays as written (a non-Petit `${HOME}` included).
    Text(&'a str),
    /// `$${`, which stands for a literal `${`.
    LiteralOpen,
    /// One of Petit's placeholders: its trimmed name, its raw text (`${ ... }`) and
    /// what it refers to.
    Petit {
        name: &'a str,
        raw: &'a str,
        refers: Placeholder<'a>,
    },
}

/// A text with `${...}` placeholders (task arguments, scripts, environment values,
/// working directories), lexed once: `$${` is a literal `${`; a name is trimmed and
/// split on dots. An unclosed `${` of Petit's namespaces makes the template
/// unrenderable (`error`: the loader refuses it, rendering fails with it); an unclosed
/// `${` of anything else stays text.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    error: Option<String>,
    /// The 1-based lines of the job file the text was written on (loaded files only).
    lines: Option<(usize, usize)>,
}

/// A piece of a template, as byte ranges of its source.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Range<usize>),
    LiteralOpen,
    Petit {
        name: Range<usize>,
        raw: Range<usize>,
        refers: Refers,
    },
}

/// `Placeholder`, as ranges of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refers {
    Config(Range<usize>),
    Param(Range<usize>),
    TaskOutput {
        task: Range<usize>,
        key: Range<usize>,
    },
    RunId,
    JobId,
    Unknown,
}

/// Two templates are equal when their texts are: where they were written aside.
impl PartialEq for Template {
    fn eq(&self, other: &Template) -> bool {
        self.source == other.source
    }
}

impl Eq for Template {}

impl AsRef<str> for Template {
    fn as_ref(&self) -> &str {
        &self.source
    }
}

impl From<&str> for Template {
    fn from(text: &str) -> Template {
        Template::parse(text)
    }
}

impl From<String> for Template {
    fn from(text: String) -> Template {
        Template::parse(text)
    }
}

impl Template {
    /// Lexes `text`, in one pass.
    pub fn parse(text: impl Into<String>) -> Template {
        let source: String = text.into();
        let mut parts = Vec::new();
        let mut error = None;
        let push_text = |parts: &mut Vec<Part>, range: Range<usize>| {
            if !range.is_empty() {
                parts.push(Part::Text(range));
            }
        };
        // `start` is where the pending text began, `at` where the search resumes.
        let (mut start, mut at) = (0, 0);
        while let Some(pos) = source[at..].find('$').map(|p| p + at) {
            let after = &source[pos..];
            if after.starts_with("$${") {
                push_text(&mut parts, start..pos);
                parts.push(Part::LiteralOpen);
                start = pos + 3;
                at = start;
            } else if let Some(body) = after.strip_prefix("${") {
                let Some(end) = body.find('}') else {
                    if is_petit(body.split_whitespace().next().unwrap_or("")) {
                        error = Some(format!(
                            "unclosed placeholder in '{source}' (a literal ${{ is written $${{)"
                        ));
                    }
                    break;
                };
                let inner = &body[..end];
                let name = inner.trim();
                let raw_end = pos + end + 3;
                if is_petit(name) {
                    push_text(&mut parts, start..pos);
                    let name_start = pos + 2 + (inner.len() - inner.trim_start().len());
                    let name = name_start..name_start + name.len();
                    parts.push(Part::Petit {
                        refers: refers(&source, name.clone()),
                        name,
                        raw: pos..raw_end,
                    });
                    start = raw_end;
                }
                at = raw_end;
            } else {
                at = pos + 1;
            }
        }
        push_text(&mut parts, start..source.len());
        // Kept for the job's life: most templates are one piece of text, where the
        // growth to four (a part is ~70 bytes) left ~200 bytes unused in each.
        parts.shrink_to_fit();
        Template {
            source,
            parts,
            error,
            lines: None,
        }
    }

    /// The same template, written on `lines` of its job file.
    pub fn written_at(mut self, lines: (usize, usize)) -> Template {
        self.lines = Some(lines);
        self
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Why the template cannot be rendered, if it cannot.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The lines of the job file it was written on, if it was loaded from one.
    pub fn lines(&self) -> Option<(usize, usize)> {
        self.lines
    }

    /// Its pieces, in order.
    pub fn tokens(&self) -> impl Iterator<Item = Token<'_>> {
        let text = |r: &Range<usize>| &self.source[r.clone()];
        self.parts.iter().map(move |part| match part {
            Part::Text(r) => Token::Text(text(r)),
            Part::LiteralOpen => Token::LiteralOpen,
            Part::Petit { name, raw, refers } => Token::Petit {
                name: text(name),
                raw: text(raw),
                refers: match refers {
                    Refers::Config(k) => Placeholder::Config(text(k)),
                    Refers::Param(k) => Placeholder::Param(text(k)),
                    Refers::TaskOutput { task, key } => Placeholder::TaskOutput {
                        task: text(task),
                        key: text(key),
                    },
                    Refers::RunId => Placeholder::RunId,
                    Refers::JobId => Placeholder::JobId,
                    Refers::Unknown => Placeholder::Unknown(text(name)),
                },
            },
        })
    }

    /// Each placeholder with its raw text (`${ ... }`), in order.
    pub fn placeholders(&self) -> impl Iterator<Item = (Placeholder<'_>, &str)> {
        self.tokens().filter_map(|t| match t {
            Token::Petit { refers, raw, .. } => Some((refers, raw)),
            _ => None,
        })
    }
}

/// What the trimmed name at `name` of `source` refers to.
fn refers(source: &str, name: Range<usize>) -> Refers {
    let mut parts: [Option<Range<usize>>; 5] = Default::default();
    let mut at = name.start;
    for (slot, part) in parts.iter_mut().zip(source[name.clone()].split('.')) {
        *slot = Some(at..at + part.len());
        at += part.len() + 1;
    }
    let count = source[name.clone()].split('.').count();
    let text = |i: usize| parts[i].clone().map(|r| &source[r]);
    match (count, text(0), text(1), text(2)) {
        (2, Some("config"), Some(_), _) => Refers::Config(parts[1].clone().unwrap_or_default()),
        (2, Some("params"), Some(_), _) => Refers::Param(parts[1].clone().unwrap_or_default()),
        (4, Some("tasks"), Some(_), Some("outputs")) => Refers::TaskOutput {
            task: parts[1].clone().unwrap_or_default(),
            key: parts[3].clone().unwrap_or_default(),
        },
        (2, Some("run"), Some("id"), _) => Refers::RunId,
        (2, Some("job"), Some("id"), _) => Refers::JobId,
        _ => Refers::Unknown,
    }
}

/// When a task runs, given how its dependencies settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Every dependency succeeded (a skipped dependency is not a success).
    #[default]
    AllSuccess,
    /// At least one dependency failed (failed, timed out).
    OnFailure,
    /// Every dependency settled, whatever the outcome (`always` is an alias).
    AllDone,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::AllSuccess => "all_success",
            Condition::OnFailure => "on_failure",
            Condition::AllDone => "all_done",
        }
    }
}

/// Which failures a task retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryCondition {
    /// Any failure.
    #[default]
    Always,
    /// Only failures that may pass by themselves: a timeout, a process killed by a
    /// signal, a program that could not be spawned, exit code 75 (EX_TEMPFAIL), or an
    /// interruption by a daemon crash.
    TransientOnly,
    /// Never.
    Never,
}

impl RetryCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryCondition::Always => "always",
            RetryCondition::TransientOnly => "transient_only",
            RetryCondition::Never => "never",
        }
    }
}

/// How the delay grows between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backoff {
    #[default]
    Fixed,
    /// `delay * 2^(retry-1)`, capped by `max_delay`.
    Exponential,
}

impl Backoff {
    pub fn as_str(self) -> &'static str {
        match self {
            Backoff::Fixed => "fixed",
            Backoff::Exponential => "exponential",
        }
    }
}

/// A task's retry policy. `max_attempts` counts retries after the first attempt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub delay: Duration,
    pub condition: RetryCondition,
    pub backoff: Backoff,
    pub max_delay: Option<Duration>,
    pub jitter: bool,
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 = the first retry), before jitter.
    pub fn delay_before(&self, retry: u32) -> Duration {
        let base = match self.backoff {
            Backoff::Fixed => self.delay,
            Backoff::Exponential => {
                let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(31));
                self.delay.saturating_mul(factor)
            }
        };
        match self.max_delay {
            Some(max) => base.min(max),
            None => base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_before_follows_backoff_and_cap() {
        let cases = [
            (Backoff::Fixed, None, 1, 10),
            (Backoff::Fixed, None, 5, 10),
            (Backoff::Exponential, None, 1, 10),
            (Backoff::Exponential, None, 2, 20),
            (Backoff::Exponential, None, 4, 80),
            (Backoff::Exponential, Some(30), 4, 30),
            (Backoff::Fixed, Some(5), 1, 5),
        ];
        for (backoff, max, retry, want) in cases {
            let p = RetryPolicy {
                max_attempts: 5,
                delay: Duration::from_secs(10),
                backoff,
                max_delay: max.map(Duration::from_secs),
                ..Default::default()
            };
            assert_eq!(
                p.delay_before(retry),
                Duration::from_secs(want),
                "{backoff:?} {max:?} {retry}"
            );
        }
    }

    #[test]
    fn templates_read_placeholders() {
        let cases: &[(&str, &[(Placeholder, &str)])] = &[
            ("plain $HOME", &[]),
            ("$${literal}", &[]),
            (
                "--batch=${config.batch}",
                &[(Placeholder::Config("batch"), "${config.batch}")],
            ),
            (
                "${ params.batch }x${run.id}",
                &[
                    (Placeholder::Param("batch"), "${ params.batch }"),
                    (Placeholder::RunId, "${run.id}"),
                ],
            ),
            (
                "${tasks.extract.outputs.rows}",
                &[(
                    Placeholder::TaskOutput {
                        task: "extract",
                        key: "rows",
                    },
                    "${tasks.extract.outputs.rows}",
                )],
            ),
            ("${job.id}", &[(Placeholder::JobId, "${job.id}")]),
            ("${HOME} ${HOME:-x} ${config}", &[]),
            (
                "${tasks.x.rows}",
                &[(Placeholder::Unknown("tasks.x.rows"), "${tasks.x.rows}")],
            ),
            (
                "${config.a.b}",
                &[(Placeholder::Unknown("config.a.b"), "${config.a.b}")],
            ),
            (
                "${tasks.a.outputs.b.c}",
                &[(
                    Placeholder::Unknown("tasks.a.outputs.b.c"),
                    "${tasks.a.outputs.b.c}",
                )],
            ),
        ];
        for (text, want) in cases {
            let template = Template::parse(*text);
            assert_eq!(template.error(), None, "{text}");
            assert_eq!(template.placeholders().collect::<Vec<_>>(), *want, "{text}");
        }
        assert!(Template::parse("${config.x")
            .error()
            .is_some_and(|e| e.contains("unclosed placeholder")));
    }

    #[test]
    fn tokens_keep_every_byte() {
        use Token::*;
        let k = Petit {
            name: "config.k",
            raw: "${config.k}",
            refers: Placeholder::Config("k"),
        };
        let id = Petit {
            name: "run.id",
            raw: "${run.id}",
            refers: Placeholder::RunId,
        };
        let cases: &[(&str, &[Token])] = &[
            ("", &[]),
            ("a", &[Text("a")]),
            ("$${x}", &[LiteralOpen, Text("x}")]),
            ("a${HOME}b${config.k}c", &[Text("a${HOME}b"), k, Text("c")]),
            ("$ $$ ${HOME", &[Text("$ $$ ${HOME")]),
            ("é${run.id}", &[Text("é"), id]),
        ];
        for (text, want) in cases {
            let template = Template::parse(*text);
            assert_eq!(template.tokens().collect::<Vec<_>>(), *want, "{text}");
        }
    }

    #[test]
    fn templates_lex_in_linear_time() {
        // Many `${` without a `}` or many `$`: one pass, no rescanning from each `$`.
        let text = "$".repeat(200_000) + &"${HOME ".repeat(50_000);
        assert_eq!(Template::parse(text).error(), None);
    }

    #[test]
    fn equal_templates_are_equal_texts() {
        let a = Template::parse("x ${run.id}").written_at((3, 3));
        assert_eq!(a, Template::from("x ${run.id}"));
        assert_eq!(a.lines(), Some((3, 3)));
        assert_ne!(a, Template::from("x ${job.id}"));
    }

    #[test]
    fn python_argv() {
        let k = TaskKind::Python {
            interpreter: "python3".into(),
            script: "print(1)".into(),
            inline: true,
            args: vec!["a".into()],
        };
        assert_eq!(
            k.argv(),
            (
                "python3".into(),
                vec!["-c".into(), "print(1)".into(), "a".into()]
            )
        );
    }
}

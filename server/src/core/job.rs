//! Validated job and task definitions, as the engine runs them. `config/` builds
//! these from the original Petit YAML format; nothing here parses files.

use std::collections::BTreeMap;
use std::path::PathBuf;
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

/// What a task runs. Arguments may hold `${config.k}`, `${params.k}` and
/// `${tasks.t.outputs.k}` placeholders, substituted without any shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskKind {
    /// A program and its argv, spawned directly.
    Command { command: String, args: Vec<String> },
    /// A Python script: a file path, or inline source when `inline` is set.
    Python {
        interpreter: String,
        script: String,
        inline: bool,
        args: Vec<String>,
    },
}

impl TaskKind {
    /// The program and argv to spawn (before placeholder substitution).
    pub fn argv(&self) -> (String, Vec<String>) {
        match self {
            TaskKind::Command { command, args } => (command.clone(), args.clone()),
            TaskKind::Python {
                interpreter,
                script,
                inline,
                args,
            } => {
                let mut argv = Vec::with_capacity(args.len() + 2);
                if *inline {
                    argv.push("-c".to_string());
                }
                argv.push(script.clone());
                argv.extend(args.iter().cloned());
                (interpreter.clone(), argv)
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

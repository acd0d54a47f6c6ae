//! Job files and directories: defaults, every field, every kind of error with its file
//! and line, the original project's files and our examples.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc, Weekday};

use super::*;
use crate::core::{
    Backoff, Condition, DepCondition, JobDependency, RetryCondition, RetryPolicy, TaskKind,
};

const FILE: &str = "/jobs/demo.yaml";

fn parse(text: &str) -> Result<JobDef, ConfigErrors> {
    parse_job(text, Path::new(FILE), &GlobalConfig::default())
}

fn global_with_pools() -> GlobalConfig {
    GlobalConfig {
        pools: BTreeMap::from([("gpu".to_string(), 2)]),
        ..GlobalConfig::default()
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn defaults() {
    let job = parse("id: minimal\ntasks:\n  - id: only\n    command: 'true'\n").unwrap();
    assert_eq!(job.id, "minimal");
    assert_eq!(job.name, "minimal");
    assert_eq!(job.description, None);
    assert!(job.schedule.is_none());
    assert!(job.enabled);
    assert_eq!(job.max_concurrency, 1);
    assert!(job.depends_on.is_empty());
    assert!(job.config.is_empty());
    assert_eq!(job.source, PathBuf::from(FILE));
    let task = &job.tasks[0];
    assert_eq!(
        task.kind,
        TaskKind::Command {
            command: "true".into(),
            args: vec![]
        }
    );
    assert_eq!(task.condition, Condition::AllSuccess);
    assert_eq!(task.retry, RetryPolicy::default());
    assert_eq!(task.timeout, None);
    assert_eq!(task.working_dir, None);
    assert!(task.depends_on.is_empty() && task.environment.is_empty());
    assert!(task.resources.is_empty());
    assert_eq!(job.dag.len(), 1);
}

const FULL: &str = r#"
id: full
name: Full Job
description: every field
schedule: {cron: "0 9 * * 1-5", timezone: America/New_York}
enabled: false
max_concurrency: 3
depends_on:
  - plain_upstream
  - job: complete_upstream
    condition: last_complete
  - job: window_upstream
    condition: {within_window: {seconds: 3600}}
  - job: window_text_upstream
    condition:
      within_window: 90m
config:
  batch_size: 1000
  debug: true
  ratio: 0.5
  label: nightly
tasks:
  - id: extract
    name: Extract Data
    type: command
    command: sh
    args: ["-c", "echo rows=42 >> \"$PETIT_OUTPUT\"", "${config.batch_size}", 7]
    environment: {STAGE: extract, RETRIES: 3, VERBOSE: false}
    working_dir: /srv/etl
    timeout_secs: 600
    retry: {max_attempts: 3, delay_secs: 10, condition: transient_only}
    resources: {slots: {gpu: 1}}
  - id: transform
    type: python
    script: transform.py
    args: ["--rows", "${tasks.extract.outputs.rows}"]
    depends_on: [extract]
    timeout: 10m
    retry:
      max_attempts: 2
      delay: 60s
      backoff: exponential
      max_delay: 5m
      jitter: true
  - id: inline
    type: python
    script: "print('hi')"
    inline: true
    interpreter: /usr/bin/python3.12
    depends_on: [transform]
    condition: always
  - id: on_fail
    command: echo
    args: ["${tasks.extract.outputs.rows} ${params.label} ${run.id} ${job.id} $${literal}"]
    depends_on: [transform, inline]
    condition: on_failure
    retry: {max_attempts: 1, max_delay_secs: 30, delay_secs: 30, condition: never}
  - id: done
    command: echo
    depends_on: [on_fail]
    condition: all_done
"#;

#[test]
fn every_field() {
    let job = parse_job(FULL, Path::new(FILE), &global_with_pools()).unwrap();
    assert_eq!(job.name, "Full Job");
    assert_eq!(job.description.as_deref(), Some("every field"));
    assert!(!job.enabled);
    assert_eq!(job.max_concurrency, 3);
    let schedule = job.schedule.as_ref().unwrap();
    assert_eq!(schedule.expression(), "0 9 * * 1-5");
    assert_eq!(schedule.timezone(), chrono_tz::America::New_York);
    assert_eq!(
        job.depends_on
            .iter()
            .map(|d| (d.job_id.as_str(), d.condition))
            .collect::<Vec<_>>(),
        [
            ("plain_upstream", DepCondition::LastSuccess),
            ("complete_upstream", DepCondition::LastComplete),
            (
                "window_upstream",
                DepCondition::WithinWindow(Duration::from_secs(3600))
            ),
            (
                "window_text_upstream",
                DepCondition::WithinWindow(Duration::from_secs(5400))
            ),
        ]
    );
    let config: Vec<(&str, &str)> = job
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        config,
        [
            ("batch_size", "1000"),
            ("debug", "true"),
            ("label", "nightly"),
            ("ratio", "0.5")
        ]
    );

    let extract = job.task("extract").unwrap();
    assert_eq!(
        extract.kind,
        TaskKind::Command {
            command: "sh".into(),
            args: vec![
                "-c".into(),
                "echo rows=42 >> \"$PETIT_OUTPUT\"".into(),
                "${config.batch_size}".into(),
                "7".into()
            ],
        }
    );
    let env: Vec<(&str, &str)> = extract
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [("RETRIES", "3"), ("STAGE", "extract"), ("VERBOSE", "false")]
    );
    assert_eq!(extract.working_dir.as_deref(), Some("/srv/etl"));
    assert_eq!(extract.timeout, Some(Duration::from_secs(600)));
    assert_eq!(
        extract.retry,
        RetryPolicy {
            max_attempts: 3,
            delay: Duration::from_secs(10),
            condition: RetryCondition::TransientOnly,
            ..RetryPolicy::default()
        }
    );
    assert_eq!(extract.resources, BTreeMap::from([("gpu".to_string(), 1)]));

    let transform = job.task("transform").unwrap();
    assert_eq!(
        transform.kind,
        TaskKind::Python {
            interpreter: "python3".into(),
            script: "transform.py".into(),
            inline: false,
            args: vec!["--rows".into(), "${tasks.extract.outputs.rows}".into()],
        }
    );
    assert_eq!(transform.timeout, Some(Duration::from_secs(600)));
    assert_eq!(
        transform.retry,
        RetryPolicy {
            max_attempts: 2,
            delay: Duration::from_secs(60),
            condition: RetryCondition::Always,
            backoff: Backoff::Exponential,
            max_delay: Some(Duration::from_secs(300)),
            jitter: true,
        }
    );

    let inline = job.task("inline").unwrap();
    assert_eq!(
        inline.kind,
        TaskKind::Python {
            interpreter: "/usr/bin/python3.12".into(),
            script: "print('hi')".into(),
            inline: true,
            args: vec![],
        }
    );
    let conditions: Vec<Condition> = job.tasks.iter().map(|t| t.condition).collect();
    assert_eq!(
        conditions,
        [
            Condition::AllSuccess,
            Condition::AllSuccess,
            Condition::AllDone, // `always` is an alias
            Condition::OnFailure,
            Condition::AllDone,
        ]
    );
    assert_eq!(
        job.task("on_fail").unwrap().retry.condition,
        RetryCondition::Never
    );
    let order: Vec<&str> = job
        .dag
        .topological_order()
        .iter()
        .map(|&i| job.tasks[i].id.as_str())
        .collect();
    assert_eq!(order, ["extract", "transform", "inline", "on_fail", "done"]);
}

#[test]
fn schedule_forms_and_time_zones() {
    let paris = GlobalConfig {
        timezone: chrono_tz::Europe::Paris,
        ..GlobalConfig::default()
    };
    let tasks = "tasks:\n  - id: t\n    command: 'true'\n";
    let cases = [
        // (schedule, global, zone, next fire after 2024-01-10T12:00Z)
        (
            "schedule: \"0 0 2 * * *\"",
            GlobalConfig::default(),
            chrono_tz::UTC,
            "2024-01-11T02:00:00Z",
        ),
        (
            "schedule: \"0 0 2 * * *\"",
            paris.clone(),
            chrono_tz::Europe::Paris,
            "2024-01-11T01:00:00Z",
        ),
        (
            "schedule: {cron: \"0 0 2 * * *\", timezone: Asia/Tokyo}",
            paris.clone(),
            chrono_tz::Asia::Tokyo,
            "2024-01-10T17:00:00Z",
        ),
        (
            "schedule:\n  cron: \"@daily\"",
            paris,
            chrono_tz::Europe::Paris,
            "2024-01-10T23:00:00Z",
        ),
        (
            "schedule: \"@every 90s\"",
            GlobalConfig::default(),
            chrono_tz::UTC,
            "2024-01-10T12:01:30Z",
        ),
    ];
    for (schedule, global, zone, next) in cases {
        let text = format!("id: s\n{schedule}\n{tasks}");
        let job = parse_job(&text, Path::new(FILE), &global).unwrap();
        let s = job.schedule.unwrap();
        assert_eq!(s.timezone(), zone, "{schedule}");
        assert_eq!(
            s.next_after(utc("2024-01-10T12:00:00Z")),
            Some(utc(next)),
            "{schedule}"
        );
    }
}

#[test]
fn global_environment_and_default_retry_apply() {
    let global = GlobalConfig {
        environment: BTreeMap::from([
            ("LOG_LEVEL".to_string(), "info".to_string()),
            ("STAGE".to_string(), "global".to_string()),
        ]),
        default_retry: Some(RetryPolicy {
            max_attempts: 4,
            ..RetryPolicy::default()
        }),
        ..GlobalConfig::default()
    };
    let text = "\
id: env
tasks:
  - id: a
    command: env
    environment: {STAGE: a}
  - id: b
    command: env
    retry: {max_attempts: 1}
";
    let job = parse_job(text, Path::new(FILE), &global).unwrap();
    let a = job.task("a").unwrap();
    assert_eq!(a.environment["STAGE"], "a");
    assert_eq!(a.environment["LOG_LEVEL"], "info");
    assert_eq!(a.retry.max_attempts, 4);
    assert_eq!(job.task("b").unwrap().retry.max_attempts, 1);
}

/// Each kind of error in a file of its own: the line it names and what it says.
#[test]
fn errors_name_file_and_line() {
    let task = "tasks:\n  - id: t\n    command: echo\n";
    let cases: Vec<(String, Option<usize>, &str)> = vec![
        // serde_yaml's own errors.
        (
            "id: x\ntasks: [\n".into(),
            Some(3),
            "did not find expected node content",
        ),
        (
            format!("id: x\nowner: me\n{task}"),
            Some(2),
            "unknown field `owner`",
        ),
        (
            "id: x\ntasks:\n  - id: t\n    command: echo\n    retries: 3\n".into(),
            Some(5),
            "unknown field `retries`",
        ),
        (
            "id: x\ntasks:\n  - id: t\n    command: echo\n    retry:\n      max_attempts: 2\n      backof: fixed\n"
                .into(),
            Some(7),
            "unknown field `backof`",
        ),
        (
            "id: x\ntasks:\n  - id: t\n    type: custom\n    command: echo\n".into(),
            Some(4),
            "unknown variant `custom`, expected `command` or `python`",
        ),
        (
            "id: x\ntasks:\n  - id: t\n    command: echo\n    condition: sometimes\n".into(),
            Some(5),
            "unknown variant `sometimes`",
        ),
        (
            "id: x\ntasks:\n  - id: t\n    command: echo\n    retry: {max_attempts: 2, delay: 5 fortnights}\n"
                .into(),
            Some(5),
            "unknown unit 'fortnights'",
        ),
        (
            format!("id: x\nmax_concurrency: -1\n{task}"),
            Some(2),
            "invalid type: integer `-1`, expected u32",
        ),
        (
            format!("id: x\nconfig:\n  nested: {{a: 1}}\n{task}"),
            Some(3),
            "expected a string, number or boolean",
        ),
        (format!("name: x\n{task}"), Some(1), "missing field `id`"),
        ("# nothing here\n".into(), None, "the file is empty"),
        // Semantic errors.
        (
            format!("id: bad id\n{task}"),
            Some(1),
            "job id 'bad id' contains ' '",
        ),
        (
            format!("id: x\nschedule: \"0 0 25 * * *\"\n{task}"),
            Some(2),
            "hour 25 is out of range 0-23",
        ),
        (
            format!("id: x\nschedule:\n  cron: \"@every 1x\"\n{task}"),
            Some(3),
            "invalid interval '@every 1x'",
        ),
        (
            format!("id: x\nschedule:\n  cron: \"@daily\"\n  timezone: Mars/Olympus\n{task}"),
            Some(4),
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            format!("id: x\nmax_concurrency: 0\n{task}"),
            Some(2),
            "max_concurrency must be at least 1",
        ),
        (
            format!("id: x\ndepends_on:\n  - up\n  - x\n{task}"),
            Some(4),
            "job 'x' depends on itself",
        ),
        (
            format!("id: x\ndepends_on:\n  - job: up\n    condition: last_failure\n{task}"),
            Some(3),
            "unknown dependency condition 'last_failure'",
        ),
        (
            format!("id: x\ndepends_on: [up, up]\n{task}"),
            Some(2),
            "job 'up' is listed twice",
        ),
        ("id: x\ntasks: []\n".into(), Some(2), "a job needs at least one task"),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    depends_on: [nope]\n".into(),
            Some(5),
            "task 'a' depends on unknown task 'nope'",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n  - id: a\n    command: echo\n".into(),
            Some(5),
            "duplicate task id 'a'",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    depends_on: [a]\n".into(),
            Some(5),
            "task 'a' depends on itself",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    depends_on: [b]\n  - id: b\n    command: echo\n    depends_on: [a]\n"
                .into(),
            Some(5),
            "task dependency cycle: a -> b -> a",
        ),
        (
            "id: x\ntasks:\n  - id: a.b\n    command: echo\n".into(),
            Some(3),
            "task id 'a.b' contains '.'",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    args: [hi]\n".into(),
            Some(3),
            "task 'a' needs a `command`",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: '  '\n".into(),
            Some(4),
            "command is empty",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    type: python\n    command: python3\n    script: a.py\n".into(),
            Some(5),
            "python tasks take a `script`, not a `command`",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    type: python\n".into(),
            Some(3),
            "task 'a' needs a `script`",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    inline: true\n".into(),
            Some(5),
            "`inline` belongs to python tasks",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    timeout_secs: 5\n    timeout: 5s\n".into(),
            Some(6),
            "either `timeout` or `timeout_secs`",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    timeout_secs: 0\n".into(),
            Some(5),
            "the timeout must be longer than 0",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    retry: {max_attempts: 1, delay: 1s, delay_secs: 1}\n"
                .into(),
            Some(5),
            "either `delay` or `delay_secs`",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    retry: {max_attempts: 1, delay: 1m, max_delay: 1s}\n"
                .into(),
            Some(5),
            "max_delay is shorter than delay",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    resources:\n      slots:\n        tpu: 1\n".into(),
            Some(7),
            "unknown resource pool 'tpu' (defined: gpu)",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    resources: {slots: {gpu: 3}}\n".into(),
            Some(5),
            "takes 3 slots of pool 'gpu', which has only 2",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    args: [\"${config.missing}\"]\n".into(),
            Some(5),
            "'${config.missing}' refers to 'missing', which is not in the job's config",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    environment:\n      A: x\n      B: ${params.nope}\n"
                .into(),
            Some(7),
            "'${params.nope}' refers to 'nope'",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n  - id: b\n    command: echo\n    args:\n      - ok\n      - ${tasks.a.outputs.rows}\n"
                .into(),
            Some(9),
            "task 'a' is not upstream of 'b'",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    working_dir: /srv/${tasks.zz.outputs.dir}\n".into(),
            Some(5),
            "refers to unknown task 'zz'",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: sh\n    args: [-c, 'echo ${HOME} ${run.ID}']\n".into(),
            Some(5),
            "unknown placeholder '${run.ID}'",
        ),
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    args: ['${config.x']\n".into(),
            Some(5),
            "unclosed placeholder",
        ),
    ];
    for (text, line, want) in cases {
        let errors = match parse_job(&text, Path::new(FILE), &global_with_pools()) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(errors) => errors.0,
        };
        assert_eq!(errors.len(), 1, "{text}\n{errors:#?}");
        let e = &errors[0];
        assert_eq!(e.file, PathBuf::from(FILE));
        assert!(e.message.contains(want), "{text}\ngot: {}", e.message);
        assert_eq!(e.line, line, "{text}\ngot: {}", e.message);
    }
}

#[test]
fn all_errors_of_a_file_at_once() {
    let text = "\
id: many
schedule: \"61 * * * *\"
max_concurrency: 0
tasks:
  - id: a
    command: echo
    depends_on: [ghost]
  - id: b
    command: echo
    args: [\"${config.nope}\"]
";
    let errors = parse(text).unwrap_err();
    let lines: Vec<Option<usize>> = errors.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(2), Some(3), Some(7), Some(10)], "{errors}");
}

/// Unknown fields do not stop a file's parse: each is reported with its line, at any
/// depth, along with the file's other errors.
#[test]
fn every_unknown_field_with_the_other_errors() {
    const TASK_FIELDS: &str = "expected one of `id`, `name`, `type`, `command`, `args`, \
        `script`, `inline`, `interpreter`, `environment`, `working_dir`, `timeout_secs`, \
        `timeout`, `depends_on`, `condition`, `retry`, `resources`";
    let cases: Vec<(&str, Vec<(usize, String)>)> =
        vec![
        (
            "\
id: bad
schedule: \"0 0 25 * * *\"
tasks:
  - id: a
    command: echo
    depends_on: [b]
    retry: {max_attempts: 2, delai: 3}
",
            vec![
                (2, "invalid cron expression '0 0 25 * * *': hour 25 is out of range 0-23".into()),
                (6, "task 'a' depends on unknown task 'b'".into()),
                (
                    7,
                    "tasks[0].retry: unknown field `delai`, expected one of `max_attempts`, \
                     `delay_secs`, `delay`, `condition`, `backoff`, `max_delay_secs`, \
                     `max_delay`, `jitter`"
                        .into(),
                ),
            ],
        ),
        (
            "\
id: deep
owner: me
schedule:
  cron: \"@daily\"
  timezon: Europe/Paris
depends_on:
  - job: up
    conditon: last_complete
  - job: other
    condition: {within_window: {seconds: 60, secs: 1}}
config: {x: 1}
tasks:
  - id: a
    command: echo
    args: [\"${config.y}\"]
    retries: 3
    retry:
      max_attempts: 2
      backof: fixed
    resources:
      slot: {gpu: 1}
  - id: b
    command: echo
    resources: {slots: {tpu: 1}}
    environment: {A: 1}
    enviroment: {B: 2}
",
            vec![
                (
                    2,
                    "unknown field `owner`, expected one of `id`, `name`, `description`, \
                     `schedule`, `enabled`, `max_concurrency`, `depends_on`, `config`, \
                     `environment_policy`, `notify`, `overlap`, `max_queued`, `catchup`, \
                     `catchup_window`, `timeout`, `timeout_secs`, `jitter`, `history`, `tasks`"
                        .into(),
                ),
                (5, "schedule: unknown field `timezon`, expected `cron` or `timezone`".into()),
                (
                    8,
                    "depends_on[0]: unknown field `conditon`, expected `job` or `condition`"
                        .into(),
                ),
                (
                    10,
                    "depends_on[1].condition.within_window: unknown field `secs`, expected \
                     `seconds`"
                        .into(),
                ),
                (
                    15,
                    "task 'a': '${config.y}' refers to 'y', which is not in the job's config \
                     (params can only override existing keys)"
                        .into(),
                ),
                (16, format!("tasks[0]: unknown field `retries`, {TASK_FIELDS}")),
                (
                    19,
                    "tasks[0].retry: unknown field `backof`, expected one of `max_attempts`, \
                     `delay_secs`, `delay`, `condition`, `backoff`, `max_delay_secs`, \
                     `max_delay`, `jitter`"
                        .into(),
                ),
                (21, "tasks[0].resources: unknown field `slot`, expected `slots`".into()),
                (
                    24,
                    "task 'b' uses unknown resource pool 'tpu' (defined: gpu)".into(),
                ),
                (26, format!("tasks[1]: unknown field `enviroment`, {TASK_FIELDS}")),
            ],
        ),
        // Flow style: the line of each key all the same.
        (
            "id: flow\ntasks: [{id: a, command: echo, x: 1},\n  {id: b, command: echo, y: 2}]\n",
            vec![
                (2, format!("tasks[0]: unknown field `x`, {TASK_FIELDS}")),
                (3, format!("tasks[1]: unknown field `y`, {TASK_FIELDS}")),
            ],
        ),
        // A one-line value of the wrong type is reported, and the reading goes on past
        // it: the errors after it come too.
        (
            "id: x\nowner: me\nmax_concurrency: lots\ntasks:\n  - id: a\n    command: echo\n",
            vec![
                (2, "unknown field `owner`".into()),
                (3, "max_concurrency: invalid type: string \"lots\", expected u32".into()),
            ],
        ),
        (
            "\
id: x
max_concurrency: lots
tasks:
  - id: a
    command: echo
    timeout_secs: soon   # a typo'd value
    depends_on: [zz]
  - id: b
    command: echo
    retry:
      max_attempts: many
    bogus: 1
",
            vec![
                (2, "max_concurrency: invalid type: string \"lots\", expected u32".into()),
                (6, "tasks[0].timeout_secs: invalid type: string \"soon\"".into()),
                (7, "task 'a' depends on unknown task 'zz'".into()),
                (11, "tasks[1].retry.max_attempts: invalid type: string \"many\"".into()),
                (12, format!("tasks[1]: unknown field `bogus`, {TASK_FIELDS}")),
            ],
        ),
        // A required field of the wrong type is reported once, not again as missing;
        // the reading stops there.
        (
            "id: x\ntasks:\n  - command: echo\n    id: [1]\n",
            vec![(4, "tasks[0].id: invalid type: sequence, expected a string".into())],
        ),
        (
            "id: x\ntasks: 5\n",
            vec![(2, "tasks: invalid type: integer `5`, expected a sequence".into())],
        ),
        // So is a value over several lines.
        (
            "id: x\ntasks:\n  - id: a\n    command: echo\n    args:\n      k: v\n    timeout_secs: soon\n",
            vec![
                (6, "tasks[0].args: invalid type: map, expected a sequence".into()),
                (7, "tasks[0].timeout_secs: invalid type: string \"soon\"".into()),
            ],
        ),
        // So does a typo in a required field, which leaves the field missing.
        (
            "id: x\ntasks:\n  - idd: a\n    command: echo\n",
            vec![
                (3, format!("tasks[0]: unknown field `idd`, {TASK_FIELDS}")),
                (3, "tasks[0]: missing field `id`".into()),
            ],
        ),
    ];
    for (text, want) in cases {
        let errors = match parse_job(text, Path::new(FILE), &global_with_pools()) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(errors) => errors.0,
        };
        let got: Vec<(Option<usize>, &str)> = errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(got.len(), want.len(), "{text}\n{got:#?}");
        for ((line, message), (want_line, want_message)) in got.iter().zip(&want) {
            assert_eq!(*line, Some(*want_line), "{text}\n{got:#?}");
            assert!(
                message.starts_with(want_message.as_str()),
                "{text}\ngot:  {message}\nwant: {want_message}"
            );
        }
    }
}

#[test]
fn display_formats() {
    let e = ConfigError::new(Path::new("/jobs/a.yaml"), Some(3), "bad");
    assert_eq!(e.to_string(), "/jobs/a.yaml:3: bad");
    let whole = ConfigError::new(Path::new("/jobs/b.yaml"), None, "empty");
    assert_eq!(whole.to_string(), "/jobs/b.yaml: empty");
    assert_eq!(
        ConfigErrors(vec![e, whole]).to_string(),
        "/jobs/a.yaml:3: bad\n/jobs/b.yaml: empty"
    );
}

fn write_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn job_text(id: &str, depends_on: &[&str]) -> String {
    format!(
        "id: {id}\ndepends_on: [{}]\ntasks:\n  - id: t\n    command: echo\n",
        depends_on.join(", ")
    )
}

#[test]
fn loads_a_directory_sorted_by_id() {
    let dir = write_dir(&[
        ("b.yaml", &job_text("zeta", &["alpha"])),
        ("a.yml", &job_text("alpha", &[])),
        (".hidden.yaml", "not: a job"),
        ("notes.txt", "not a job"),
        ("backup.yaml~", "not a job"),
    ]);
    std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    let jobs = load_jobs_dir(dir.path(), &GlobalConfig::default()).unwrap();
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["alpha", "zeta"]);
    assert_eq!(jobs[1].source, dir.path().join("b.yaml"));

    let empty = tempfile::tempdir().unwrap();
    assert!(load_jobs_dir(empty.path(), &GlobalConfig::default())
        .unwrap()
        .is_empty());
}

#[test]
fn missing_directory_is_one_clear_error() {
    let errors = load_jobs_dir(Path::new("/nonexistent/jobs"), &GlobalConfig::default())
        .unwrap_err()
        .0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, PathBuf::from("/nonexistent/jobs"));
    assert!(errors[0]
        .message
        .starts_with("cannot read the jobs directory"));
}

#[test]
fn reports_every_error_of_a_directory() {
    let dir = write_dir(&[
        ("1_first.yaml", &job_text("dup", &[])),
        ("2_second.yaml", &job_text("dup", &[])),
        ("3_orphan.yaml", &job_text("orphan", &["dup", "nowhere"])),
        ("4_cycle_a.yaml", &job_text("cycle_a", &["cycle_b"])),
        ("5_cycle_b.yaml", &job_text("cycle_b", &["cycle_a"])),
        (
            "6_broken.yaml",
            "id: broken\ntasks:\n  - id: t\n    comand: echo\n",
        ),
        ("7_uses_broken.yaml", &job_text("uses_broken", &["broken"])),
        (
            "8_bad_cron.yaml",
            "id: bad_cron\nschedule: \"0 0 * * 9\"\ntasks:\n  - id: t\n    command: echo\n",
        ),
    ]);
    let errors = load_jobs_dir(dir.path(), &GlobalConfig::default())
        .unwrap_err()
        .0;
    let got: Vec<(String, Option<usize>, String)> = errors
        .iter()
        .map(|e| {
            (
                e.file.file_name().unwrap().to_string_lossy().into_owned(),
                e.line,
                e.message.clone(),
            )
        })
        .collect();
    let first = dir.path().join("1_first.yaml");
    let want = [
        (
            "2_second.yaml",
            Some(1),
            format!("duplicate job id 'dup': {} defines it too", first.display()),
        ),
        (
            "3_orphan.yaml",
            Some(2),
            "job 'orphan' depends on unknown job 'nowhere'".to_string(),
        ),
        (
            "4_cycle_a.yaml",
            Some(2),
            "job dependency cycle: cycle_a -> cycle_b -> cycle_a (each job waits for the one before it)"
                .to_string(),
        ),
        // The typo is reported, and so is what it leaves missing.
        (
            "6_broken.yaml",
            Some(3),
            "task 't' needs a `command`".to_string(),
        ),
        (
            "6_broken.yaml",
            Some(4),
            "tasks[0]: unknown field `comand`, expected one of".to_string(),
        ),
        (
            "8_bad_cron.yaml",
            Some(2),
            "day-of-week 9 is out of range 0-7".to_string(),
        ),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((file, line, message), (want_file, want_line, want_message)) in got.iter().zip(&want) {
        assert_eq!(file, want_file, "{got:#?}");
        assert_eq!(line, want_line, "{got:#?}");
        assert!(message.contains(want_message.as_str()), "{got:#?}");
    }
}

/// The original project's job files load unchanged.
#[test]
fn loads_the_original_petit_jobs() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/compat/petit-original-jobs"
    ));
    if !dir.is_dir() {
        eprintln!("skipped: {} is not here", dir.display());
        return;
    }
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if let Err(e) = parse_job(&text, file, &GlobalConfig::default()) {
            panic!("{e}");
        }
    }
    let jobs = load_jobs_dir(dir, &GlobalConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jobs.len(), files.len());
    let job = |id: &str| {
        jobs.iter()
            .find(|j| j.id == id)
            .unwrap_or_else(|| panic!("no job {id}"))
    };
    let fires = |id: &str| {
        job(id)
            .schedule
            .as_ref()
            .unwrap()
            .upcoming(utc("2024-01-01T00:00:00Z"), 3)
    };
    // `0 0 4 * * 6` is Saturdays at 04:00, `0 0 3 * * 0` Sundays, `… 5` Fridays.
    for (id, day, hour) in [
        ("log_cleanup", Weekday::Sat, 4),
        ("time_sync", Weekday::Sun, 3),
        ("personal_os_sync", Weekday::Fri, 18),
    ] {
        for t in fires(id) {
            assert_eq!(
                (t.weekday(), chrono::Timelike::hour(&t)),
                (day, hour),
                "{id}"
            );
        }
    }
    let retry = &job("personal_os_sync")
        .task("questrade_sync")
        .unwrap()
        .retry;
    assert_eq!(retry.delay, Duration::from_secs(60));
    assert_eq!(retry.max_attempts, 3);
    assert_eq!(
        job("hourly_check").task("check_api").unwrap().retry.delay,
        Duration::from_secs(5)
    );
    assert_eq!(
        job("system_monitor").schedule.as_ref().unwrap().interval(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        fires("minute_tick")[..2],
        [utc("2024-01-01T00:01:00Z"), utc("2024-01-01T00:02:00Z")]
    );
    assert!(job("hello_world").schedule.is_none());
    assert_eq!(
        job("failing_job").task("cleanup").unwrap().condition,
        Condition::AllDone
    );
}

/// Our examples load with the example `petit.yaml`, and without it.
#[test]
fn loads_the_examples() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"));
    let global = GlobalConfig::load(&root.join("petit.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(global.timezone, chrono_tz::Europe::Paris);
    assert_eq!(global.pools.get("db"), Some(&2));
    assert_eq!(global.log_retention_days, Some(30));
    for global in [global, GlobalConfig::default()] {
        let jobs = load_jobs_dir(&root.join("jobs"), &global).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "data_pipeline",
                "heartbeat",
                "hello_world",
                "nightly_report"
            ]
        );
    }
    let jobs = load_jobs_dir(&root.join("jobs"), &GlobalConfig::default()).unwrap();
    let pipeline = &jobs[0];
    assert_eq!(pipeline.tasks.len(), 7);
    assert_eq!(
        pipeline.task("cleanup").unwrap().condition,
        Condition::OnFailure
    );
    assert_eq!(
        pipeline.task("report").unwrap().condition,
        Condition::AllDone
    );
    assert_eq!(
        pipeline.task("load").unwrap().retry.delay,
        Duration::from_secs(5)
    );
    let report = &jobs[3];
    assert_eq!(
        report.depends_on,
        [JobDependency {
            job_id: "data_pipeline".into(),
            condition: DepCondition::LastSuccess
        }]
    );
    assert_eq!(
        report.schedule.as_ref().unwrap().timezone(),
        chrono_tz::Europe::Paris
    );
    assert_eq!(
        jobs[1].schedule.as_ref().unwrap().interval(),
        Some(Duration::from_secs(30))
    );
    assert!(jobs[2].schedule.is_none());
}

#[test]
fn environment_policy_of_a_job_narrows_petit_yaml() {
    use crate::core::{EnvPolicy, Inherit};
    let global = GlobalConfig {
        environment_policy: EnvPolicy {
            inherit: Inherit::Names(vec!["PATH".into(), "HOME".into()]),
            deny: vec!["AWS_*".into()],
        },
        ..GlobalConfig::default()
    };
    let text = "id: j\nenvironment_policy:\n  inherit: [PATH, USER]\n  deny: [\"GCP_*\"]\ntasks:\n  - id: a\n    command: env\n";
    let job = parse_job(text, Path::new(FILE), &global).unwrap();
    assert_eq!(
        job.environment_policy,
        EnvPolicy {
            inherit: Inherit::Names(vec!["PATH".into()]),
            deny: vec!["AWS_*".into(), "GCP_*".into()],
        }
    );
    let default = parse_job(
        "id: j\ntasks:\n  - id: a\n    command: env\n",
        Path::new(FILE),
        &global,
    )
    .unwrap();
    assert_eq!(default.environment_policy, global.environment_policy);
    let bad = parse_job(
        "id: j\nenvironment_policy: {inherit: most}\ntasks:\n  - id: a\n    command: env\n",
        Path::new(FILE),
        &global,
    )
    .unwrap_err();
    assert_eq!(bad.0[0].line, Some(2), "{bad}");
    assert!(bad.to_string().contains("'most' is not all, none"), "{bad}");
}

#[test]
fn placeholders_of_inline_scripts_are_checked() {
    let text = "id: j\ntasks:\n  - id: a\n    type: python\n    inline: true\n    script: print(${config.missing})\n";
    let errors = parse_job(text, Path::new(FILE), &GlobalConfig::default()).unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("'missing', which is not in the job's config"),
        "{errors}"
    );
}

/// The size and nesting limits of `petit.yaml` apply to every file of a directory, each
/// error with its line, all of them at once, and a refused file's id still counts.
#[test]
fn limits_apply_to_each_file_with_its_line() {
    let global = GlobalConfig {
        job_files: JobFileLimits {
            max_bytes: 200,
            max_depth: 4,
        },
        ..GlobalConfig::default()
    };
    let padding = "# padding\n".repeat(30);
    let dir = write_dir(&[
        ("1_big.yaml", &format!("{}{padding}", job_text("big", &[]))),
        (
            "2_deep.yaml",
            "id: deep\ntasks:\n  - id: t\n    command: echo\n    args: [[[x]]]\n",
        ),
        ("3_uses_big.yaml", &job_text("uses_big", &["big"])),
        (
            "4_fine.yaml",
            // Four deep exactly: the job, its tasks, the task, its args.
            "id: fine\ntasks:\n  - id: t\n    command: echo\n    args: [x]\n",
        ),
    ]);
    let errors = load_jobs_dir(dir.path(), &global).unwrap_err().0;
    let got: Vec<(String, Option<usize>, &str)> = errors
        .iter()
        .map(|e| {
            let file = e.file.file_name().unwrap().to_string_lossy().into_owned();
            (file, e.line, e.message.split(';').next().unwrap())
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "1_big.yaml".to_string(),
                // 58 bytes of job on 5 lines, then 142 bytes of padding: 14 lines and 2
                // bytes of the 20th.
                Some(20),
                "the file is larger than the limit of 200 bytes (it has 358 bytes"
            ),
            (
                "2_deep.yaml".to_string(),
                Some(5),
                "lists and mappings are nested more than 4 deep here"
            ),
        ]
    );
    // The same checks on a text already read.
    let deep = parse_job(
        "id: deep\ntasks:\n  - id: t\n    command: echo\n    args: [[[x]]]\n",
        Path::new(FILE),
        &global,
    )
    .unwrap_err();
    assert_eq!(deep.0.len(), 1);
    assert_eq!(deep.0[0].line, Some(5));
}

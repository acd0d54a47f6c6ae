//! The `${...}` placeholders of task arguments, scripts, environment values and working
//! directories: the one lexer both the loader (which refuses a reference that can never
//! resolve) and the executor (`exec/substitute.rs`, which replaces them) read them with.
//! `$${` is a literal `${`; the name is trimmed and split on dots.
//!
//! Only the `config`, `params`, `tasks`, `run` and `job` namespaces are Petit's: any
//! other `${NAME}` (a shell variable in `sh -c '...'`, say) is left as written, so that
//! existing job files keep meaning what their authors wrote.

use super::yaml::Doc;
use super::ConfigError;
use crate::core::{JobDef, TaskKind};
use crate::exec::script::{script_arg, Context, Lang, ScriptArg};
use crate::exec::substitute::script_placeholders;

/// The first segments of Petit's placeholders.
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

/// One piece of a text, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// Text that stays as written (a non-Petit `${HOME}` included).
    Text(&'a str),
    /// `$${`, which stands for a literal `${`.
    LiteralOpen,
    /// One of Petit's placeholders: its trimmed name and its raw text (`${ ... }`).
    Petit { name: &'a str, raw: &'a str },
}

/// Splits `text` into tokens, in one pass. An unclosed `${` of Petit's namespaces is an
/// error; an unclosed `${` of anything else stays text.
pub fn tokens(text: &str) -> Result<Vec<Token<'_>>, String> {
    let mut found = Vec::new();
    // `start` is where the pending text began, `at` where the search resumes.
    let (mut start, mut at) = (0, 0);
    while let Some(pos) = text[at..].find('$').map(|p| p + at) {
        let after = &text[pos..];
        if after.starts_with("$${") {
            push_text(&mut found, &text[start..pos]);
            found.push(Token::LiteralOpen);
            start = pos + 3;
            at = start;
        } else if let Some(body) = after.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                if is_petit(body.split_whitespace().next().unwrap_or("")) {
                    return Err(format!(
                        "unclosed placeholder in '{text}' (a literal ${{ is written $${{)"
                    ));
                }
                break;
            };
            let name = body[..end].trim();
            let raw_end = pos + end + 3;
            if is_petit(name) {
                push_text(&mut found, &text[start..pos]);
                found.push(Token::Petit {
                    name,
                    raw: &text[pos..raw_end],
                });
                start = raw_end;
            }
            at = raw_end;
        } else {
            at = pos + 1;
        }
    }
    push_text(&mut found, &text[start..]);
    Ok(found)
}

fn push_text<'a>(found: &mut Vec<Token<'a>>, text: &'a str) {
    if !text.is_empty() {
        found.push(Token::Text(text));
    }
}

/// Every placeholder of `text` with its raw text (`${ ... }`), in order. An unclosed
/// `${` is an error, as it is when substituting.
pub fn placeholders(text: &str) -> Result<Vec<(Placeholder<'_>, &str)>, String> {
    Ok(tokens(text)?
        .into_iter()
        .filter_map(|t| match t {
            Token::Petit { name, raw } => Some((classify(name), raw)),
            _ => None,
        })
        .collect())
}

/// What the trimmed `name` of a Petit placeholder refers to.
pub fn classify(name: &str) -> Placeholder<'_> {
    let mut parts = name.split('.');
    let parts = [
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ];
    match parts {
        [Some("config"), Some(key), None, ..] => Placeholder::Config(key),
        [Some("params"), Some(key), None, ..] => Placeholder::Param(key),
        [Some("tasks"), Some(task), Some("outputs"), Some(key), None] => {
            Placeholder::TaskOutput { task, key }
        }
        [Some("run"), Some("id"), None, ..] => Placeholder::RunId,
        [Some("job"), Some("id"), None, ..] => Placeholder::JobId,
        _ => Placeholder::Unknown(name),
    }
}

/// `petitd validate`'s notes on `job` (read from `text`): every placeholder written
/// inside a shell or Python script, which is substituted as a quoted literal of that
/// language, or refused where no literal can be trusted (the task then fails).
/// Linear in the file: each task's lines are searched once, front to back.
pub fn script_notes(job: &JobDef, text: &str) -> Vec<ConfigError> {
    let Ok(doc) = Doc::parse(text) else {
        return Vec::new();
    };
    let tasks = doc.root().get("tasks");
    let lines: Vec<&str> = text.lines().collect();
    let mut notes = Vec::new();
    for (index, task) in job.tasks.iter().enumerate() {
        let (program, args) = task.kind.argv();
        let (script, node) = match task.kind {
            TaskKind::Python { inline: true, .. } => {
                let script = ScriptArg {
                    index: 1,
                    offset: 0,
                    lang: Lang::Python,
                };
                (
                    Some(script),
                    tasks.and_then(|t| t.item(index)?.get("script")),
                )
            }
            _ => {
                let script = script_arg(&program, &args);
                let node = script.and_then(|s| tasks?.item(index)?.get("args")?.item(s.index));
                (script, node)
            }
        };
        let Some(script) = script else { continue };
        let Ok(found) = script_placeholders(&args[script.index], script) else {
            continue;
        };
        // Where the search for the next placeholder resumes.
        let mut cursor = None;
        for (raw, context) in found {
            let line = node.map(|node| node.line_of(&lines, raw, &mut cursor));
            let lang = script.lang.name();
            let message = match context {
                Context::Unsupported(why) => format!(
                    "note: {raw} inside a {lang} stands {why}: it is not substituted there, \
                     and task '{}' fails when it runs",
                    task.id
                ),
                Context::ShellArith => format!(
                    "note: {raw} inside a {lang} stands in an arithmetic expression: only an \
                     integer value is substituted, any other fails the task"
                ),
                _ => format!("note: {raw} inside a {lang} is substituted as a quoted literal"),
            };
            notes.push(ConfigError::new(&job.source, line, message));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_placeholders_like_the_executor() {
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
        ];
        for (text, want) in cases {
            assert_eq!(placeholders(text).as_deref(), Ok(*want), "{text}");
        }
        assert!(placeholders("${config.x")
            .unwrap_err()
            .contains("unclosed placeholder"));
    }

    #[test]
    fn tokens_keep_every_byte() {
        use Token::*;
        let cases: &[(&str, &[Token])] = &[
            ("", &[]),
            ("a", &[Text("a")]),
            ("$${x}", &[LiteralOpen, Text("x}")]),
            (
                "a${HOME}b${config.k}c",
                &[
                    Text("a${HOME}b"),
                    Petit {
                        name: "config.k",
                        raw: "${config.k}",
                    },
                    Text("c"),
                ],
            ),
            ("$ $$ ${HOME", &[Text("$ $$ ${HOME")]),
            (
                "é${run.id}",
                &[
                    Text("é"),
                    Petit {
                        name: "run.id",
                        raw: "${run.id}",
                    },
                ],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(tokens(text).as_deref(), Ok(*want), "{text}");
        }
    }

    #[test]
    fn notes_on_placeholders_in_scripts() {
        let text = r#"id: j
config: {x: 1}
tasks:
  - id: a
    command: sh
    args: ["-c", "echo ${params.x}"]
  - id: b
    type: python
    inline: true
    script: |
      print(${config.x})
      print("${config.x}", ${config.x})
  - id: c
    command: echo
    args: ["${params.x}"]
  - id: d
    command: bash
    args: ["-ec", "echo `echo ${params.x}`", "${params.x}"]
"#;
        let file = std::path::Path::new("/jobs/j.yaml");
        let job =
            crate::config::parse_job(text, file, &crate::config::GlobalConfig::default()).unwrap();
        let notes: Vec<String> = script_notes(&job, text)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            notes,
            [
                "/jobs/j.yaml:6: note: ${params.x} inside a shell script is substituted as a \
                 quoted literal",
                "/jobs/j.yaml:11: note: ${config.x} inside a Python script is substituted as a \
                 quoted literal",
                "/jobs/j.yaml:12: note: ${config.x} inside a Python script is substituted as a \
                 quoted literal",
                "/jobs/j.yaml:12: note: ${config.x} inside a Python script is substituted as a \
                 quoted literal",
                "/jobs/j.yaml:18: note: ${params.x} inside a shell script stands inside \
                 backticks (write $(...) instead): it is not substituted there, and task 'd' \
                 fails when it runs",
            ]
        );
    }

    #[test]
    fn linear_in_the_input() {
        // Many `${` without a `}` or many `$`: one pass, no rescanning from each `$`.
        let text = "$".repeat(200_000) + &"${HOME ".repeat(50_000);
        assert!(tokens(&text).is_ok());
    }
}

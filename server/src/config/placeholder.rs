//! `petitd validate`'s notes on the placeholders written inside scripts. The `${...}`
//! lexer itself is `core::job::Template`'s: the loader lexes each text once, checks its
//! placeholders (a reference that can never resolve is refused) and keeps the template
//! for the executor (`exec/substitute.rs`), which only renders it.

use super::yaml::line_within;
use super::ConfigError;
use crate::core::job::Template;
use crate::core::{JobDef, TaskKind};
use crate::exec::script::{script_arg, Context, Lang, ScriptArg};
use crate::exec::substitute::script_placeholders;

pub use crate::core::job::{is_petit, Placeholder, Token, NAMESPACES};

/// `text` as a template, or why it cannot be one (an unclosed placeholder).
pub fn tokens(text: &str) -> Result<Template, String> {
    let template = Template::parse(text);
    match template.error() {
        Some(e) => Err(e.to_string()),
        None => Ok(template),
    }
}

/// `petitd validate`'s notes on `job` (read from `text`): every placeholder written
/// inside a shell or Python script, which is substituted as a quoted literal of that
/// language, or refused where no literal can be trusted (the task then fails).
/// Linear in the file: each script's lines are searched once, front to back, between
/// the lines the loader saw it written on.
pub fn script_notes(job: &JobDef, text: &str) -> Vec<ConfigError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut notes = Vec::new();
    for task in &job.tasks {
        let (program, args) = task.kind.templates();
        let script = match task.kind {
            TaskKind::Python { inline: true, .. } => Some(ScriptArg {
                index: 1,
                offset: 0,
                lang: Lang::Python,
            }),
            _ => script_arg(program.source(), &args),
        };
        let Some(script) = script else { continue };
        let template = args[script.index];
        let Ok(found) = script_placeholders(template, script) else {
            continue;
        };
        // Where the search for the next placeholder resumes.
        let mut cursor = None;
        for (raw, context) in found {
            let line = template
                .lines()
                .map(|written| line_within(&lines, written, raw, &mut cursor));
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
}

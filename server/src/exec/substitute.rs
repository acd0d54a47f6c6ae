//! Placeholder substitution in task arguments, environment and working directory
//! (`${config.k}`, `${params.k}`, `${tasks.t.outputs.k}`, `${run.id}`, `${job.id}`), and
//! the parsing of the `key=value` outputs a task writes to `$PETIT_OUTPUT`. No shell is
//! ever involved: values go into argv strings as they are, except in an argument that
//! is a shell or Python script (`script.rs`), where each becomes a quoted literal of
//! that language. Names outside Petit's namespaces (`${HOME}`) are left as written,
//! for the shell of `sh -c` tasks.

use std::collections::BTreeMap;

use super::script::{self, ScriptArg};
use crate::core::job::{Placeholder, Template, Token};

/// What placeholders resolve against for one task of one run.
#[derive(Debug)]
pub struct Scope<'a> {
    /// The job's `config`, with the run's params already laid over it.
    pub config: &'a BTreeMap<String, String>,
    /// Outputs of the run's settled tasks, by task id.
    pub outputs: &'a BTreeMap<String, BTreeMap<String, String>>,
    pub run_id: &'a str,
    pub job_id: &'a str,
}

/// Renders `template` with every placeholder's value as it is; `$${` is a literal `${`.
pub fn substitute(template: &Template, scope: &Scope<'_>) -> Result<String, String> {
    if let Some(e) = template.error() {
        return Err(e.to_string());
    }
    let mut out = String::with_capacity(template.source().len());
    for token in template.tokens() {
        match token {
            Token::Text(t) => out.push_str(t),
            Token::LiteralOpen => out.push_str("${"),
            Token::Petit { name, refers, .. } => out.push_str(&resolve(name, refers, scope)?),
        }
    }
    Ok(out)
}

/// As `substitute`, for a text kept as written (a task's environment values and
/// working directory), lexed here.
pub fn substitute_text(text: &str, scope: &Scope<'_>) -> Result<String, String> {
    substitute(&Template::parse(text), scope)
}

/// As `substitute`, for the argument `script` says holds a script: each value becomes
/// a quoted literal of the script's language, fitted to where it stands (unquoted, in
/// quotes, in a comment). A placeholder where no literal can be trusted is an error.
pub fn substitute_script(
    template: &Template,
    script: ScriptArg,
    scope: &Scope<'_>,
) -> Result<String, String> {
    let holes = Holes::new(template, script)?;
    let mut out = String::with_capacity(holes.text.len() + holes.holes.len() * 8);
    let mut at = 0;
    for (hole, context) in holes.holes.iter().zip(&holes.contexts) {
        out.push_str(&holes.text[at..hole.at]);
        let value = resolve(hole.name, hole.refers, scope)?;
        let literal = script::render(context, &value)
            .map_err(|e| format!("'{}' in a {}: {e}", hole.raw, script.lang.name()))?;
        out.push_str(&literal);
        at = hole.at;
    }
    out.push_str(&holes.text[at..]);
    Ok(out)
}

/// Each placeholder of a script argument (its raw text) and where it stands, for
/// `petitd validate`'s notes.
pub fn script_placeholders(
    template: &Template,
    script: ScriptArg,
) -> Result<Vec<(&str, script::Context)>, String> {
    let holes = Holes::new(template, script)?;
    Ok(holes
        .holes
        .iter()
        .map(|h| h.raw)
        .zip(holes.contexts)
        .collect())
}

/// A script as its interpreter will read it, with a zero-width hole where each value
/// goes, and the context of each hole.
struct Holes<'a> {
    text: String,
    holes: Vec<Hole<'a>>,
    contexts: Vec<script::Context>,
}

struct Hole<'a> {
    /// Byte offset into `Holes::text`.
    at: usize,
    name: &'a str,
    raw: &'a str,
    refers: Placeholder<'a>,
}

impl<'a> Holes<'a> {
    fn new(template: &'a Template, script: ScriptArg) -> Result<Holes<'a>, String> {
        if let Some(e) = template.error() {
            return Err(e.to_string());
        }
        let mut text = String::with_capacity(template.source().len());
        let mut holes = Vec::new();
        for token in template.tokens() {
            match token {
                Token::Text(t) => text.push_str(t),
                Token::LiteralOpen => text.push_str("${"),
                Token::Petit { name, raw, refers } => holes.push(Hole {
                    at: text.len(),
                    name,
                    raw,
                    refers,
                }),
            }
        }
        // The script starts after `offset` bytes (`-c` of Python's `-cSCRIPT`).
        let offset = script.offset.min(text.len());
        let shifted: Vec<usize> = holes.iter().map(|h| h.at.saturating_sub(offset)).collect();
        let contexts = script::contexts(script.lang, &text[offset..], &shifted);
        Ok(Holes {
            text,
            holes,
            contexts,
        })
    }
}

fn resolve(name: &str, refers: Placeholder<'_>, scope: &Scope<'_>) -> Result<String, String> {
    match refers {
        Placeholder::Config(key) | Placeholder::Param(key) => scope
            .config
            .get(key)
            .cloned()
            .ok_or_else(|| format!("'${{{name}}}': no config value or param '{key}'")),
        Placeholder::TaskOutput { task, key } => match scope.outputs.get(task) {
            Some(outputs) => outputs
                .get(key)
                .cloned()
                .ok_or_else(|| format!("'${{{name}}}': task '{task}' wrote no output '{key}'")),
            None => Err(format!(
                "'${{{name}}}': task '{task}' has no outputs (it did not succeed in this run)"
            )),
        },
        Placeholder::RunId => Ok(scope.run_id.to_string()),
        Placeholder::JobId => Ok(scope.job_id.to_string()),
        Placeholder::Unknown(_) => Err(format!("unknown placeholder '${{{name}}}'")),
    }
}

/// Parses `key=value` lines; blank lines and `#` comments are ignored, the last value of
/// a key wins, and a line without `=` is an error naming its number.
pub fn parse_outputs(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut outputs = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {} of $PETIT_OUTPUT is not key=value: '{line}'", n + 1))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("line {} of $PETIT_OUTPUT has an empty key", n + 1));
        }
        outputs.insert(key.to_string(), value.to_string());
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_placeholders() {
        let config = BTreeMap::from([("batch".to_string(), "1000".to_string())]);
        let outputs = BTreeMap::from([(
            "extract".to_string(),
            BTreeMap::from([("rows".to_string(), "42".to_string())]),
        )]);
        let scope = Scope {
            config: &config,
            outputs: &outputs,
            run_id: "r1",
            job_id: "j1",
        };
        let cases = [
            ("plain", Ok("plain")),
            ("--batch=${config.batch}", Ok("--batch=1000")),
            ("${params.batch}", Ok("1000")),
            ("${ tasks.extract.outputs.rows }rows", Ok("42rows")),
            ("$HOME and $${literal}", Ok("$HOME and ${literal}")),
            ("${run.id}/${job.id}", Ok("r1/j1")),
            ("${config.nope}", Err("'${config.nope}': no config value or param 'nope'")),
            ("${tasks.load.outputs.x}", Err("'${tasks.load.outputs.x}': task 'load' has no outputs (it did not succeed in this run)")),
            ("${tasks.extract.outputs.x}", Err("'${tasks.extract.outputs.x}': task 'extract' wrote no output 'x'")),
            ("${what} ${HOME:-x} ${config}", Ok("${what} ${HOME:-x} ${config}")),
            ("${run.what}", Err("unknown placeholder '${run.what}'")),
            ("echo ${HOME", Ok("echo ${HOME")),
            (
                "${config.batch",
                Err("unclosed placeholder in '${config.batch' (a literal ${ is written $${)"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                substitute_text(input, &scope),
                want.map(str::to_string).map_err(str::to_string),
                "{input}"
            );
        }
    }

    #[test]
    fn parses_outputs() {
        let got = parse_outputs("rows=42\n\n# comment\npath = /tmp/x=y\nrows=43\r\n").unwrap();
        assert_eq!(got.get("rows").map(String::as_str), Some("43"));
        assert_eq!(got.get("path").map(String::as_str), Some(" /tmp/x=y"));
        assert_eq!(
            parse_outputs("novalue").unwrap_err(),
            "line 1 of $PETIT_OUTPUT is not key=value: 'novalue'"
        );
        assert!(parse_outputs("=v").is_err());
    }
}

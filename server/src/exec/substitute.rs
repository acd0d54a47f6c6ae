//! Placeholder substitution in task arguments, environment and working directory
//! (`${config.k}`, `${params.k}`, `${tasks.t.outputs.k}`, `${run.id}`, `${job.id}`), and
//! the parsing of the `key=value` outputs a task writes to `$PETIT_OUTPUT`. No shell is
//! ever involved: values are substituted into argv strings as they are. Names outside
//! Petit's namespaces (`${HOME}`) are left as written, for the shell of `sh -c` tasks.

use std::collections::BTreeMap;

use crate::config::placeholder::is_petit;

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

/// Replaces every `${...}` placeholder of `text`; `$${` is a literal `${`.
pub fn substitute(text: &str, scope: &Scope<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(literal) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = literal;
        } else if let Some(body) = after.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                if is_petit(body.split_whitespace().next().unwrap_or("")) {
                    return Err(format!("unclosed placeholder in '{text}'"));
                }
                out.push_str(after);
                rest = "";
                break;
            };
            let name = body[..end].trim();
            if is_petit(name) {
                out.push_str(&resolve(name, scope)?);
            } else {
                out.push_str(&after[..end + 3]);
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(name: &str, scope: &Scope<'_>) -> Result<String, String> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["config" | "params", key] => scope
            .config
            .get(*key)
            .cloned()
            .ok_or_else(|| format!("'${{{name}}}': no config value or param '{key}'")),
        ["tasks", task, "outputs", key] => match scope.outputs.get(*task) {
            Some(outputs) => outputs
                .get(*key)
                .cloned()
                .ok_or_else(|| format!("'${{{name}}}': task '{task}' wrote no output '{key}'")),
            None => Err(format!(
                "'${{{name}}}': task '{task}' has no outputs (it did not succeed in this run)"
            )),
        },
        ["run", "id"] => Ok(scope.run_id.to_string()),
        ["job", "id"] => Ok(scope.job_id.to_string()),
        _ => Err(format!("unknown placeholder '${{{name}}}'")),
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
            ("${config.batch", Err("unclosed placeholder in '${config.batch'")),
        ];
        for (input, want) in cases {
            assert_eq!(
                substitute(input, &scope),
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

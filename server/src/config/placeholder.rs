//! The `${...}` placeholders of task arguments, environment values and working
//! directories, read with the same grammar the executor substitutes them with
//! (`exec/substitute.rs`: `$${` is a literal `${`, the name is trimmed and split on
//! dots), so that a reference that can never resolve is refused when the job loads.
//!
//! Only the `config`, `params`, `tasks`, `run` and `job` namespaces are Petit's: any
//! other `${NAME}` (a shell variable in `sh -c '...'`, say) is left as written, so that
//! existing job files keep meaning what their authors wrote.

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

/// Every placeholder of `text` with its raw text (`${ ... }`), in order. An unclosed
/// `${` is an error, as it is when substituting.
pub fn placeholders(text: &str) -> Result<Vec<(Placeholder<'_>, &str)>, String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        let after = &rest[pos..];
        if let Some(literal) = after.strip_prefix("$${") {
            rest = literal;
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
            if is_petit(name) {
                found.push((classify(name), &after[..end + 3]));
            }
            rest = &body[end + 1..];
        } else {
            rest = &after[1..];
        }
    }
    Ok(found)
}

fn classify(name: &str) -> Placeholder<'_> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["config", key] => Placeholder::Config(key),
        ["params", key] => Placeholder::Param(key),
        ["tasks", task, "outputs", key] => Placeholder::TaskOutput { task, key },
        ["run", "id"] => Placeholder::RunId,
        ["job", "id"] => Placeholder::JobId,
        _ => Placeholder::Unknown(name),
    }
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
        ];
        for (text, want) in cases {
            assert_eq!(placeholders(text).as_deref(), Ok(*want), "{text}");
        }
        assert!(placeholders("${config.x")
            .unwrap_err()
            .contains("unclosed placeholder"));
    }
}

//! The environment a task's process starts with, in layers: what it inherits from
//! petitd (its job's `EnvPolicy`: never Petit's secrets), then its run's values
//! exported as `PETIT_PARAM_<KEY>` and `PETIT_OUTPUT_<TASK>_<KEY>`, then the task's own
//! `environment:` (set by the executor on top, with `PETIT_RUN_ID` and the like).

use std::collections::BTreeMap;
use std::ffi::OsString;

use crate::core::EnvPolicy;

/// The inherited variables `policy` lets through, from `vars` (the daemon's own
/// environment, `std::env::vars_os()`). A name that is not UTF-8 is matched by its
/// lossy text.
pub fn inherited(
    policy: &EnvPolicy,
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    vars.filter(|(name, _)| policy.allows(&name.to_string_lossy()))
        .collect()
}

/// `key` as the tail of an environment variable name: upper case, every character
/// other than an ASCII letter or digit replaced by `_` (`batch-size` → `BATCH_SIZE`).
pub fn env_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The run's values as variables: `PETIT_PARAM_<KEY>` for each config value with the
/// run's params laid over it (what `${params.KEY}` reads), `PETIT_OUTPUT_<TASK>_<KEY>`
/// for each output of an upstream task. Two keys with the same normalised name: the
/// one that sorts last wins.
pub fn exported(
    config: &BTreeMap<String, String>,
    outputs: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for (key, value) in config {
        vars.insert(format!("PETIT_PARAM_{}", env_name(key)), value.clone());
    }
    for (task, values) in outputs {
        for (key, value) in values {
            let name = format!("PETIT_OUTPUT_{}_{}", env_name(task), env_name(key));
            vars.insert(name, value.clone());
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Inherit;

    #[test]
    fn names() {
        let cases = [
            ("batch", "BATCH"),
            ("batch-size", "BATCH_SIZE"),
            ("a.b c", "A_B_C"),
            ("été", "_T_"),
            ("", ""),
            ("X1", "X1"),
        ];
        for (key, want) in cases {
            assert_eq!(env_name(key), want, "{key}");
        }
    }

    #[test]
    fn exports() {
        let config = BTreeMap::from([("batch-size".to_string(), "10".to_string())]);
        let outputs = BTreeMap::from([(
            "extract".to_string(),
            BTreeMap::from([("rows".to_string(), "$(x)".to_string())]),
        )]);
        let vars = exported(&config, &outputs);
        assert_eq!(
            vars,
            BTreeMap::from([
                ("PETIT_OUTPUT_EXTRACT_ROWS".to_string(), "$(x)".to_string()),
                ("PETIT_PARAM_BATCH_SIZE".to_string(), "10".to_string()),
            ])
        );
    }

    #[test]
    fn inherits_by_policy() {
        let vars = || {
            [
                ("PATH", "/bin"),
                ("PETIT_TOKEN", "s3cret"),
                ("AWS_KEY", "k"),
                ("HOME", "/h"),
            ]
            .into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        };
        let names = |policy: &EnvPolicy| -> Vec<String> {
            inherited(policy, vars())
                .into_iter()
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(&EnvPolicy::default()), ["PATH", "AWS_KEY", "HOME"]);
        let deny = EnvPolicy {
            inherit: Inherit::All,
            deny: vec!["AWS_*".into()],
        };
        assert_eq!(names(&deny), ["PATH", "HOME"]);
        let only = EnvPolicy {
            inherit: Inherit::Names(vec!["HOME".into(), "PETIT_TOKEN".into()]),
            deny: vec![],
        };
        assert_eq!(names(&only), ["HOME"]);
    }
}

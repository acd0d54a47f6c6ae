//! The environment a task's process starts with, in layers: what it inherits from
//! petitd (its job's `EnvPolicy`: never Petit's secrets), then its run's values
//! exported as `PETIT_PARAM_<KEY>` and `PETIT_OUTPUT_<TASK>_<KEY>`, then the task's own
//! `environment:` (set by the executor on top, with `PETIT_RUN_ID` and the like).

use std::collections::BTreeMap;
use std::ffi::OsString;

use crate::core::EnvPolicy;

/// The inherited variables `policy` lets through, from `vars` (the daemon's own
/// environment, `std::env::vars_os()`). A name that is not UTF-8 is matched by its
/// lossy text. (What a task ends up with; the spawn itself removes [`denied`].)
#[cfg(test)]
pub fn inherited(
    policy: &EnvPolicy,
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    vars.filter(|(name, _)| policy.allows(&name.to_string_lossy()))
        .collect()
}

/// The names of `vars` that `policy` keeps from a task: what the spawn removes from the
/// environment it would otherwise inherit whole. (Removing a few names, rather than
/// clearing and setting the rest, leaves `PATH` alone in the usual case, which keeps
/// the spawn on `posix_spawn`: a command whose `PATH` is set or removed makes the
/// standard library fork the whole daemon instead.)
pub fn denied(
    policy: &EnvPolicy,
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> Vec<OsString> {
    vars.filter(|(name, _)| !policy.allows(&name.to_string_lossy()))
        .map(|(name, _)| name)
        .collect()
}

/// `program` found in `path` (a `PATH` value) when it is a bare name, so that a task
/// whose `PATH` is changed is still started by `posix_spawn` (which takes a path) and
/// finds its program where its own `PATH` says, as `execvp` would. `None`: leave it to
/// the spawn (a path already, or not found: the spawn then reports it).
pub fn resolve_program(
    program: &str,
    path: Option<&std::ffi::OsStr>,
) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.is_empty() || program.contains('/') {
        return None;
    }
    // execvp's default when PATH is unset.
    let path = path.unwrap_or_else(|| std::ffi::OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
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
        let removed: Vec<String> = denied(&only, vars())
            .into_iter()
            .map(|k| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(removed, ["PATH", "PETIT_TOKEN", "AWS_KEY"]);
    }

    #[test]
    fn programs_are_found_in_the_path_given() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path =
            std::env::join_paths([std::path::Path::new("/nonexistent"), dir.path()]).unwrap();
        assert_eq!(resolve_program("tool", Some(&path)), Some(tool));
        assert_eq!(resolve_program("./tool", Some(&path)), None);
        assert_eq!(resolve_program("missing", Some(&path)), None);
        assert!(
            resolve_program("sh", None).is_some(),
            "the default path when PATH is unset"
        );
    }
}

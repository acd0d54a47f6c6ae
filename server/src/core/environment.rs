//! What a task takes from petitd's own environment: all of it by default, never
//! Petit's secrets, and as narrowed by `petit.yaml` and the job
//! (`environment_policy: {inherit: all | none | [NAMES…], deny: [PATTERNS…]}`).
//! Pure rules over names; `exec/environment.rs` applies them to the real environment.

/// Which inherited variables a task sees.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Inherit {
    #[default]
    All,
    None,
    /// Only these names (or `*`/`?` patterns).
    Names(Vec<String>),
}

/// The inheritance rules of one job's tasks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvPolicy {
    pub inherit: Inherit,
    /// Patterns (`AWS_*`) of names never inherited.
    pub deny: Vec<String>,
}

/// Names always stripped, whatever the policy: Petit's tokens and database settings,
/// PostgreSQL's password sources.
const SECRETS: &[&str] = &[
    "PETIT_TOKEN",
    "PETIT_TOKENS",
    "PETIT_TOKEN_FILE",
    "PETIT_DB",
    "PGPASSWORD",
    "PGPASSFILE",
];

/// Words that make a `PETIT_*` name a credential (a database URL holds a password).
const SECRET_WORDS: &[&str] = &[
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "KEY",
    "CREDENTIAL",
    "DATABASE",
    "DB_",
    "DSN",
    "URL",
];

/// Whether `name` is one of Petit's secrets, never passed on to a task.
pub fn is_secret(name: &str) -> bool {
    if SECRETS.contains(&name) {
        return true;
    }
    let upper = name.to_ascii_uppercase();
    upper.starts_with("PETIT_") && SECRET_WORDS.iter().any(|w| upper[6..].contains(w))
}

impl EnvPolicy {
    /// Whether a task inherits the daemon's variable `name`.
    pub fn allows(&self, name: &str) -> bool {
        if is_secret(name) || self.deny.iter().any(|p| glob_match(p, name)) {
            return false;
        }
        match &self.inherit {
            Inherit::All => true,
            Inherit::None => false,
            Inherit::Names(names) => names.iter().any(|p| glob_match(p, name)),
        }
    }

    /// This (global) policy narrowed by a job's: a job may take away, never add. The
    /// names both allow stay (by the intersection of the lists), every deny applies.
    pub fn narrowed_by(&self, job: &EnvPolicy) -> EnvPolicy {
        let inherit = match (&self.inherit, &job.inherit) {
            (Inherit::None, _) | (_, Inherit::None) => Inherit::None,
            (Inherit::All, other) | (other, Inherit::All) => other.clone(),
            (Inherit::Names(global), Inherit::Names(own)) => Inherit::Names(
                own.iter()
                    .filter(|n| global.iter().any(|g| glob_match(g, n)))
                    .cloned()
                    .collect(),
            ),
        };
        let mut deny = self.deny.clone();
        deny.extend(job.deny.iter().cloned());
        EnvPolicy { inherit, deny }
    }
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` any one
/// character. Greedy with one backtrack point: O(len(pattern) × len(name)) at worst.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets() {
        for name in [
            "PETIT_TOKEN",
            "PETIT_TOKENS",
            "PETIT_TOKEN_FILE",
            "PETIT_DB",
            "PGPASSWORD",
            "PGPASSFILE",
            "PETIT_ADMIN_TOKEN",
            "PETIT_TLS_KEY",
            "PETIT_SMTP_PASSWORD",
            "PETIT_WEBHOOK_SECRET",
            "PETIT_DATABASE_URL",
            "PETIT_PG_DSN",
        ] {
            assert!(is_secret(name), "{name}");
            assert!(!EnvPolicy::default().allows(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "SSH_AUTH_SOCK",
            "PETIT_SERVER",
            "PETIT_JOBS",
            "MY_TOKEN",
        ] {
            assert!(!is_secret(name), "{name}");
            assert!(EnvPolicy::default().allows(name), "{name}");
        }
    }

    #[test]
    fn globs() {
        let cases = [
            ("AWS_*", "AWS_SECRET_ACCESS_KEY", true),
            ("AWS_*", "AWS_", true),
            ("AWS_*", "XAWS_", false),
            ("*_KEY", "API_KEY", true),
            ("*_KEY", "API_KEYS", false),
            ("A?C", "ABC", true),
            ("A?C", "AC", false),
            ("*", "", true),
            ("", "", true),
            ("", "A", false),
            ("*A*B*", "xxAyyBzz", true),
            ("*A*B*", "xxByyAzz", false),
            ("PATH", "PATH", true),
            ("PATH", "path", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(glob_match(pattern, name), want, "{pattern} {name}");
        }
        // Bounded work on a hostile pattern.
        let long = "a".repeat(5000);
        assert!(!glob_match(&"*a".repeat(100).replace("a", "a*b"), &long));
    }

    #[test]
    fn policies() {
        let names = |v: &[&str]| Inherit::Names(v.iter().map(|s| s.to_string()).collect());
        let policy = |inherit, deny: &[&str]| EnvPolicy {
            inherit,
            deny: deny.iter().map(|s| s.to_string()).collect(),
        };
        let none = policy(Inherit::None, &[]);
        assert!(!none.allows("PATH"));
        let some = policy(names(&["PATH", "LC_*"]), &["LC_ALL"]);
        assert!(some.allows("PATH") && some.allows("LC_TIME"));
        assert!(!some.allows("HOME") && !some.allows("LC_ALL"));
        let listed_secret = policy(names(&["PETIT_TOKEN"]), &[]);
        assert!(!listed_secret.allows("PETIT_TOKEN"));

        let global = policy(Inherit::All, &["AWS_*"]);
        let job = policy(names(&["PATH", "AWS_REGION"]), &["GCP_*"]);
        let both = global.narrowed_by(&job);
        assert_eq!(both.inherit, names(&["PATH", "AWS_REGION"]));
        assert!(both.allows("PATH") && !both.allows("AWS_REGION") && !both.allows("HOME"));
        assert_eq!(both.deny, ["AWS_*", "GCP_*"]);
        // A job cannot widen what petit.yaml narrowed.
        let narrow = policy(names(&["PATH", "HOME"]), &[]);
        let wider = policy(names(&["PATH", "USER"]), &[]);
        assert_eq!(narrow.narrowed_by(&wider).inherit, names(&["PATH"]));
        assert_eq!(
            narrow.narrowed_by(&EnvPolicy::default()).inherit,
            names(&["PATH", "HOME"])
        );
        assert_eq!(
            none.narrowed_by(&EnvPolicy::default()).inherit,
            Inherit::None
        );
        assert_eq!(
            EnvPolicy::default().narrowed_by(&none).inherit,
            Inherit::None
        );
    }
}

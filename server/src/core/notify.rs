//! What a job wants to be told about, and where: the `notify` block of a job file (or
//! the default one of `petit.yaml`), validated. Delivery lives in `crate::notify`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// An occasion to notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotifyOn {
    /// A run ended `failed`.
    Failure,
    /// A run ended `succeeded`.
    Success,
    /// A task attempt failed and will be retried.
    Retry,
    /// A scheduled fire started no run (overlap, unmet dependency...).
    SkippedFire,
}

impl NotifyOn {
    pub const ALL: [NotifyOn; 4] = [
        NotifyOn::Failure,
        NotifyOn::Success,
        NotifyOn::Retry,
        NotifyOn::SkippedFire,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Failure => "failure",
            NotifyOn::Success => "success",
            NotifyOn::Retry => "retry",
            NotifyOn::SkippedFire => "skipped_fire",
        }
    }
}

impl fmt::Display for NotifyOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NotifyOn {
    type Err = String;
    fn from_str(s: &str) -> Result<NotifyOn, String> {
        NotifyOn::ALL
            .into_iter()
            .find(|on| on.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown notify event '{s}' (expected failure, success, retry or skipped_fire)"
                )
            })
    }
}

/// Where a notification goes.
#[derive(Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    /// An HTTP POST of the JSON body; with a secret, signed in `X-Petit-Signature`.
    Webhook {
        url: String,
        headers: BTreeMap<String, String>,
        secret: Option<String>,
        /// Each attempt's limit.
        timeout: Duration,
        /// Attempts after the first, with backoff, when one fails.
        retries: u32,
    },
    /// A local program, the JSON body on its stdin.
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
}

impl NotifyTarget {
    /// What logs, events and the API call the target: never its secret, header values
    /// or the URL's path and query (a chat webhook's URL is its credential).
    pub fn label(&self) -> String {
        match self {
            NotifyTarget::Webhook { url, .. } => {
                let origin = url
                    .split_once("://")
                    .map(|(scheme, rest)| {
                        let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
                        // user:password@host keeps only the host.
                        let host = host.rsplit('@').next().unwrap_or(host);
                        format!("{scheme}://{host}")
                    })
                    .unwrap_or_else(|| "?".to_string());
                format!("webhook {origin}")
            }
            NotifyTarget::Command { argv, .. } => {
                format!("command {}", argv.first().map_or("?", String::as_str))
            }
        }
    }
}

// By hand: the derived form would print secrets and header values.
impl fmt::Debug for NotifyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// A job's notifications: on which occasions, to which targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyRule {
    pub on: Vec<NotifyOn>,
    pub targets: Vec<NotifyTarget>,
}

impl NotifyRule {
    pub fn wants(&self, on: NotifyOn) -> bool {
        self.on.contains(&on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_hide_credentials() {
        let hook = |url: &str| NotifyTarget::Webhook {
            url: url.into(),
            headers: BTreeMap::from([("Authorization".into(), "Bearer s3cret".into())]),
            secret: Some("hmac-key".into()),
            timeout: Duration::from_secs(10),
            retries: 3,
        };
        let cases = [
            (
                "https://hooks.slack.com/services/T0/B0/XYZ",
                "webhook https://hooks.slack.com",
            ),
            (
                "http://user:pw@127.0.0.1:9000/hook?token=abc",
                "webhook http://127.0.0.1:9000",
            ),
            ("not a url", "webhook ?"),
        ];
        for (url, label) in cases {
            assert_eq!(hook(url).label(), label);
            let debug = format!("{:?}", hook(url));
            assert!(
                !debug.contains("s3cret") && !debug.contains("hmac-key"),
                "{debug}"
            );
        }
        let command = NotifyTarget::Command {
            argv: vec!["mail".into(), "-s".into(), "x".into()],
            timeout: Duration::from_secs(5),
        };
        assert_eq!(command.label(), "command mail");
    }

    #[test]
    fn occasions_parse() {
        for on in NotifyOn::ALL {
            assert_eq!(on.as_str().parse::<NotifyOn>(), Ok(on));
        }
        assert!("failed".parse::<NotifyOn>().is_err());
    }
}

//! The `notify` block, in a job file or as the default of `petit.yaml`:
//!
//! ```yaml
//! notify:
//!   on: [failure, retry]          # failure (default), success, retry, skipped_fire
//!   targets:
//!     - webhook:
//!         url: https://hooks.example.com/petit
//!         headers: {X-Team: data}
//!         secret_env: PETIT_WEBHOOK_SECRET   # or secret: "..."; signs the body
//!         timeout: 10s                       # each attempt (default 10s)
//!         retries: 3                         # after a failed attempt (default 3)
//!     - command: [mail, -s, "petit: job failed", ops@example.com]
//!       timeout: 30s                         # default 30s
//! ```
//! A job's own block replaces the default; `notify: {on: []}` turns it off.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::de::DurationText;
use crate::core::notify::{NotifyOn, NotifyRule, NotifyTarget};

const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
const WEBHOOK_RETRIES: u32 = 3;
const MAX_RETRIES: u32 = 10;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    on: Option<Vec<String>>,
    #[serde(default)]
    targets: Vec<RawTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    webhook: Option<RawWebhook>,
    command: Option<Vec<String>>,
    timeout: Option<DurationText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    secret: Option<String>,
    /// The name of an environment variable of petitd's holding the secret.
    secret_env: Option<String>,
    timeout: Option<DurationText>,
    retries: Option<u32>,
}

/// The rule a `notify` block describes, or why it is wrong.
pub(super) fn notify_rule(raw: &RawNotify) -> Result<NotifyRule, String> {
    let on = match &raw.on {
        None => vec![NotifyOn::Failure],
        Some(words) => {
            let mut on = Vec::new();
            for word in words {
                let occasion = word
                    .parse::<NotifyOn>()
                    .map_err(|e| format!("notify.on: {e}"))?;
                if !on.contains(&occasion) {
                    on.push(occasion);
                }
            }
            on
        }
    };
    let mut targets = Vec::new();
    for (i, target) in raw.targets.iter().enumerate() {
        let place = format!("notify.targets[{i}]");
        let target = match (&target.webhook, &target.command) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(format!("{place}: give either webhook or command"))
            }
            (Some(hook), None) => {
                if target.timeout.is_some() {
                    return Err(format!("{place}: a webhook's timeout goes inside webhook"));
                }
                webhook(hook).map_err(|e| format!("{place}.webhook: {e}"))?
            }
            (None, Some(argv)) => {
                if argv.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err(format!(
                        "{place}.command: needs a program (a list: [program, args...])"
                    ));
                }
                NotifyTarget::Command {
                    argv: argv.clone(),
                    timeout: positive(target.timeout.as_ref(), COMMAND_TIMEOUT)
                        .map_err(|e| format!("{place}.timeout: {e}"))?,
                }
            }
        };
        targets.push(target);
    }
    if !on.is_empty() && targets.is_empty() {
        return Err("notify: no targets (add a webhook or a command under targets)".to_string());
    }
    Ok(NotifyRule { on, targets })
}

fn webhook(raw: &RawWebhook) -> Result<NotifyTarget, String> {
    let url = raw.url.trim();
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url '{url}' is not valid: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "url '{url}' must be http:// or https:// with a host"
        ));
    }
    for (name, value) in &raw.headers {
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers: '{name}' is not a header name"))?;
        http::HeaderValue::from_str(value)
            .map_err(|_| format!("headers: the value of '{name}' cannot be sent in a header"))?;
    }
    let secret = match (&raw.secret, &raw.secret_env) {
        (Some(_), Some(_)) => return Err("give either secret or secret_env".to_string()),
        (Some(secret), None) => Some(secret.clone()),
        (None, Some(name)) => Some(
            std::env::var(name)
                .map_err(|_| format!("secret_env: petitd's environment has no {name}"))?,
        ),
        (None, None) => None,
    };
    if secret.as_deref().is_some_and(str::is_empty) {
        return Err("the secret is empty".to_string());
    }
    let retries = raw.retries.unwrap_or(WEBHOOK_RETRIES);
    if retries > MAX_RETRIES {
        return Err(format!("retries: at most {MAX_RETRIES}"));
    }
    Ok(NotifyTarget::Webhook {
        url: url.to_string(),
        headers: raw.headers.clone(),
        secret,
        timeout: positive(raw.timeout.as_ref(), WEBHOOK_TIMEOUT)?,
        retries,
    })
}

fn positive(value: Option<&DurationText>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(DurationText(d)) if d.is_zero() => Err("must be more than 0".to_string()),
        Some(DurationText(d)) => Ok(*d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> Result<NotifyRule, String> {
        let raw: RawNotify = crate::config::yaml::from_str(yaml)?;
        notify_rule(&raw)
    }

    #[test]
    fn defaults_and_shapes() {
        let r = rule("targets: [{webhook: {url: 'http://127.0.0.1:9/x'}}]").unwrap();
        assert_eq!(r.on, [NotifyOn::Failure]);
        assert!(matches!(
            &r.targets[0],
            NotifyTarget::Webhook { timeout, retries: 3, secret: None, .. } if *timeout == WEBHOOK_TIMEOUT
        ));
        let r = rule(
            "on: [success, retry, skipped_fire]\ntargets:\n  - command: [cat]\n    timeout: 5s\n",
        )
        .unwrap();
        assert_eq!(
            r.on,
            [NotifyOn::Success, NotifyOn::Retry, NotifyOn::SkippedFire]
        );
        assert!(matches!(
            &r.targets[0],
            NotifyTarget::Command { timeout, .. } if *timeout == Duration::from_secs(5)
        ));
        let off = rule("on: []").unwrap();
        assert!(off.on.is_empty() && off.targets.is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                "on: [failed]\ntargets: [{command: [x]}]",
                "unknown notify event 'failed'",
            ),
            ("targets: []", "no targets"),
            ("targets: [{}]", "either webhook or command"),
            ("targets: [{command: []}]", "needs a program"),
            (
                "targets: [{webhook: {url: 'ftp://x'}}]",
                "must be http:// or https://",
            ),
            ("targets: [{webhook: {url: 'nonsense'}}]", "is not valid"),
            (
                "targets: [{webhook: {url: 'http://h', secret: a, secret_env: B}}]",
                "either secret or secret_env",
            ),
            (
                "targets: [{webhook: {url: 'http://h', secret_env: PETIT_NO_SUCH_VAR_X}}]",
                "has no PETIT_NO_SUCH_VAR_X",
            ),
            (
                "targets: [{webhook: {url: 'http://h', retries: 11}}]",
                "at most 10",
            ),
            (
                "targets: [{webhook: {url: 'http://h', headers: {'a b': c}}}]",
                "not a header name",
            ),
            (
                "targets: [{webhook: {url: 'http://h'}, timeout: 3s}]",
                "goes inside webhook",
            ),
            ("targets: [{command: [x], timeout: 0s}]", "more than 0"),
        ];
        for (yaml, want) in cases {
            let got = rule(yaml).unwrap_err();
            assert!(got.contains(want), "{yaml}: {got}");
        }
    }
}

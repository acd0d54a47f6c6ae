//! The job file format as serde reads it (the original Petit YAML format): field for
//! field, nothing checked yet but the shape. Every optional field is `lenient`: a
//! value of the wrong type is reported and read as absent, so the rest of the file is
//! still read and checked (see `yaml`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::de::{DurationText, ScalarText, StrOrMap};
use crate::config::global::RawEnvPolicy;
use crate::config::notify::RawNotify;
use crate::config::yaml::lenient;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawJob {
    pub id: String,
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub schedule: Option<StrOrMap<RawSchedule>>,
    #[serde(default, deserialize_with = "lenient")]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    pub max_concurrency: Option<u32>,
    #[serde(default, deserialize_with = "lenient")]
    pub depends_on: Vec<StrOrMap<RawJobDependency>>,
    #[serde(default, deserialize_with = "lenient")]
    pub config: BTreeMap<String, ScalarText>,
    /// Not `environment`: the original documents a job-level `environment` as a map
    /// of variables, so the inheritance rules get a key of their own.
    #[serde(default, deserialize_with = "lenient")]
    pub environment_policy: Option<RawEnvPolicy>,
    /// Replaces `petit.yaml`'s default `notify`.
    #[serde(default, deserialize_with = "lenient")]
    pub notify: Option<RawNotify>,
    /// `skip | queue | allow | cancel_previous`.
    #[serde(default, deserialize_with = "lenient")]
    pub overlap: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub max_queued: Option<u32>,
    /// `none | latest | all`.
    #[serde(default, deserialize_with = "lenient")]
    pub catchup: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub catchup_window: Option<DurationText>,
    /// The whole run's time limit (`2h`); `timeout_secs` says it in seconds.
    #[serde(default, deserialize_with = "lenient")]
    pub timeout: Option<DurationText>,
    #[serde(default, deserialize_with = "lenient")]
    pub timeout_secs: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    pub jitter: Option<DurationText>,
    /// Replaces `petit.yaml`'s `history`.
    #[serde(default, deserialize_with = "lenient")]
    pub history: Option<crate::config::global::RawHistory>,
    pub tasks: Vec<RawTask>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawSchedule {
    pub cron: String,
    #[serde(default, deserialize_with = "lenient")]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawJobDependency {
    pub job: String,
    #[serde(default, deserialize_with = "lenient")]
    pub condition: Option<StrOrMap<RawWindowCondition>>,
}

/// `{within_window: {seconds: 3600}}` (or `{within_window: 1h}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawWindowCondition {
    pub within_window: StrOrMap<RawWindowSeconds>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawWindowSeconds {
    pub seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawTask {
    pub id: String,
    /// The original allows a display name; the engine has no use for it.
    #[allow(dead_code)]
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    pub kind: Option<RawKind>,
    #[serde(default, deserialize_with = "lenient")]
    pub command: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub args: Vec<ScalarText>,
    #[serde(default, deserialize_with = "lenient")]
    pub script: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub inline: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    pub interpreter: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub environment: BTreeMap<String, ScalarText>,
    #[serde(default, deserialize_with = "lenient")]
    pub working_dir: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub timeout_secs: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    pub timeout: Option<DurationText>,
    #[serde(default, deserialize_with = "lenient")]
    pub depends_on: Vec<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub condition: Option<RawCondition>,
    #[serde(default, deserialize_with = "lenient")]
    pub retry: Option<RawRetry>,
    #[serde(default, deserialize_with = "lenient")]
    pub resources: Option<RawTaskResources>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(in crate::config) enum RawKind {
    Command,
    Python,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(in crate::config) enum RawCondition {
    AllSuccess,
    OnFailure,
    AllDone,
    Always,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawRetry {
    pub max_attempts: u32,
    #[serde(default, deserialize_with = "lenient")]
    pub delay_secs: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    pub delay: Option<DurationText>,
    #[serde(default, deserialize_with = "lenient")]
    pub condition: Option<RawRetryCondition>,
    #[serde(default, deserialize_with = "lenient")]
    pub backoff: Option<RawBackoff>,
    #[serde(default, deserialize_with = "lenient")]
    pub max_delay_secs: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    pub max_delay: Option<DurationText>,
    #[serde(default, deserialize_with = "lenient")]
    pub jitter: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(in crate::config) enum RawRetryCondition {
    Always,
    TransientOnly,
    Never,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(in crate::config) enum RawBackoff {
    Fixed,
    Exponential,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawTaskResources {
    #[serde(default, deserialize_with = "lenient")]
    pub slots: BTreeMap<String, u32>,
}

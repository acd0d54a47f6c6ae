//! Schedules: cron (6-field with seconds, 5-field, `@daily`…), `@every 90s`, evaluated
//! in an IANA time zone. Day-of-week follows Unix cron (0 and 7 = Sunday).
//!
//! STUB: the real implementation replaces this file.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Why a schedule expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression '{expr}': {reason}")]
    Cron { expr: String, reason: String },
    #[error("invalid interval '{expr}': {reason}")]
    Every { expr: String, reason: String },
}

/// A parsed schedule and its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    timezone: Tz,
}

impl Schedule {
    /// Parses `expr` (cron, `@daily`…, `@every 1h30m`) evaluated in `tz`.
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let _ = (expr, tz);
        todo!()
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first fire instant strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let _ = after;
        todo!()
    }

    /// The next `n` fire instants strictly after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }
}

/// Parses a hand-written duration: `90s`, `1h30m`, `500ms`, `2d`, or a bare number of
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let _ = s;
    todo!()
}

//! Schedules: cron (6-field with seconds, 5-field, optional year), `@daily`…,
//! `@every 90s`, evaluated in an IANA time zone. Day-of-week follows Unix cron
//! (0 and 7 = Sunday), and so does the day-of-month/day-of-week rule: when both fields
//! are restricted, a day matching either one fires.
//!
//! Daylight saving time, for cron schedules in a zone that has it (and any other change
//! of the zone's offset):
//! - a wall-clock time that does not exist (spring forward, e.g. 02:30 in Paris on the
//!   last Sunday of March, when clocks go from 02:00 to 03:00) fires once, at the first
//!   instant after the gap: 03:00 local, 01:00 UTC. Several times in the same gap
//!   (`0 */15 2 * * *`: 02:00, 02:15, 02:30, 02:45) are still one fire, and a time
//!   just after the gap that reads the same instant (03:00 for `0 0 2,3 * * *`) does not
//!   fire again;
//! - a wall-clock time that happens twice (fall back, e.g. 01:30 in New York on the
//!   first Sunday of November) fires once, at its first occurrence. A consequence is
//!   that an every-minute schedule pauses for the repeated hour; use UTC or `@every`
//!   when strict periodicity matters.
//!
//! So a fire is never earlier than the instant it is asked after, never repeats an
//! instant, and the same instants come out whatever instant the walk starts from.
//!
//! `@every` intervals are elapsed time and ignore the time zone and DST: they fire at
//! the multiples of the interval since the Unix epoch, so their instants are the same
//! across restarts.

use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

mod fields;
#[cfg(test)]
mod tests;

pub use crate::core::duration::parse_duration;
use fields::parse_cron;

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
    rule: Rule,
}

#[derive(Debug, Clone)]
enum Rule {
    /// Calendar rules, evaluated on the zone's wall clock. Two of them when both
    /// day-of-month and day-of-week are restricted (Unix: either may match); the
    /// schedule fires at the earliest of their instants.
    Cron(Vec<cron::Schedule>),
    /// A fixed interval, aligned on the Unix epoch.
    Every(Duration),
}

/// Enough to step over the repeated hour of an every-second schedule (3600 candidates
/// that already fired, when the walk starts inside it) many times over; reaching it
/// means a bug, not a schedule. (A gap costs one candidate: the walk jumps over it.)
const MAX_SKIPPED_CANDIDATES: usize = 100_000;

impl Schedule {
    /// Parses `expr` (cron, `@daily`…, `@every 1h30m`) evaluated in `tz`.
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        let rule = if let Some(rest) = trimmed.strip_prefix('@') {
            parse_shorthand(expr, rest)?
        } else {
            parse_cron(expr, trimmed)?
        };
        let schedule = Schedule {
            expression: expr.to_string(),
            timezone: tz,
            rule,
        };
        // A calendar that matches no date (`0 0 0 30 2 *`) would silently never run.
        if matches!(schedule.rule, Rule::Cron(_))
            && schedule
                .next_wall_after(DateTime::UNIX_EPOCH.naive_utc())
                .is_none()
        {
            return Err(ScheduleError::Cron {
                expr: expr.to_string(),
                reason: "it never fires (no date matches)".to_string(),
            });
        }
        Ok(schedule)
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The fixed interval of an `@every` schedule.
    pub fn interval(&self) -> Option<Duration> {
        match self.rule {
            Rule::Every(interval) => Some(interval),
            Rule::Cron(_) => None,
        }
    }

    /// The first fire instant strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.rule {
            Rule::Every(interval) => next_interval_after(*interval, after),
            Rule::Cron(_) => self.next_cron_after(after),
        }
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

    /// Walks matching wall-clock times after `after`'s wall-clock time and maps each to
    /// an instant, applying the DST rules of the module comment.
    fn next_cron_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.timezone;
        let mut wall = after.with_timezone(&tz).naive_local();
        for _ in 0..MAX_SKIPPED_CANDIDATES {
            wall = self.next_wall_after(wall)?;
            let instant = match tz.from_local_datetime(&wall) {
                LocalResult::Single(t) => t.with_timezone(&Utc),
                // The first occurrence only; the repeat is the same wall-clock time.
                LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
                // Inside a spring-forward gap: this wall-clock time does not exist.
                LocalResult::None => {
                    let Some(end) = gap_end(tz, wall) else {
                        continue;
                    };
                    // Every later time of the gap fires at this same instant, and so
                    // does the wall-clock time the gap ends on: the walk goes on from
                    // there, so the gap is one fire.
                    wall = end.with_timezone(&tz).naive_local();
                    end
                }
            };
            // When `after` lies in the repeated hour, wall-clock times just after its own
            // first occurred before it: they already fired. Likewise a gap's instant when
            // `after` is that instant or later.
            if instant > after {
                return Some(instant);
            }
        }
        None
    }

    /// The first matching wall-clock time strictly after `wall` (the calendar is
    /// evaluated in a zone without DST so that every wall-clock time exists once).
    fn next_wall_after(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        let Rule::Cron(calendars) = &self.rule else {
            return None;
        };
        let start = Utc.from_utc_datetime(&wall);
        calendars
            .iter()
            .filter_map(|c| c.after(&start).next())
            .min()
            .map(|t| t.naive_utc())
    }
}

/// The first instant after the gap in `tz`'s wall clock that `wall` falls in: the
/// instant the offset changes, when the clock reads the end of the gap (03:00 when
/// Paris goes from 02:00 to 03:00).
///
/// A binary search over whole seconds (zones change offset on whole seconds, and cron
/// times have no fraction): offsets are less than a day, so a day before `wall` read as
/// UTC the zone's clock reads less than `wall` and a day after it more. As `wall` never
/// appears on that clock, the clock passes it exactly once, by the jump being looked
/// for (a jump back over it would make it appear), so "reads less than `wall`" holds up
/// to the transition and not after.
fn gap_end(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    let as_utc = wall.and_utc();
    let mut before = as_utc.checked_sub_signed(TimeDelta::days(1))?.timestamp();
    let mut after = as_utc.checked_add_signed(TimeDelta::days(1))?.timestamp();
    while after - before > 1 {
        let middle = before + (after - before) / 2;
        let clock = tz.timestamp_opt(middle, 0).single()?.naive_local();
        if clock < wall {
            before = middle;
        } else {
            after = middle;
        }
    }
    DateTime::from_timestamp(after, 0)
}

fn next_interval_after(interval: Duration, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let step = i64::try_from(interval.as_millis()).ok()?;
    let now = after.timestamp_millis();
    // `timestamp_millis` rounds down, so the next multiple is strictly after `after`
    // even when `after` has sub-millisecond digits.
    let next = now.div_euclid(step).checked_add(1)?.checked_mul(step)?;
    DateTime::from_timestamp_millis(next)
}

/// `@yearly`…`@hourly` become explicit 6-field expressions (Sunday written as a name so
/// that it goes through the same day-of-week translation as hand-written ones).
fn parse_shorthand(expr: &str, rest: &str) -> Result<Rule, ScheduleError> {
    let mut words = rest.split_whitespace();
    let keyword = words.next().unwrap_or_default().to_ascii_lowercase();
    let argument = words.collect::<Vec<_>>().join(" ");
    let cron_text = match keyword.as_str() {
        "every" => return parse_every(expr, &argument),
        "yearly" | "annually" => "0 0 0 1 1 *",
        "monthly" => "0 0 0 1 * *",
        "weekly" => "0 0 0 * * SUN",
        "daily" | "midnight" => "0 0 0 * * *",
        "hourly" => "0 0 * * * *",
        _ => {
            return Err(ScheduleError::Cron {
                expr: expr.to_string(),
                reason: format!(
                    "unknown shorthand '@{keyword}' (expected @yearly, @annually, @monthly, \
                     @weekly, @daily, @midnight, @hourly or @every <duration>)"
                ),
            })
        }
    };
    if !argument.is_empty() {
        return Err(ScheduleError::Cron {
            expr: expr.to_string(),
            reason: format!("'@{keyword}' takes no argument (got '{argument}')"),
        });
    }
    parse_cron(expr, cron_text)
}

fn parse_every(expr: &str, argument: &str) -> Result<Rule, ScheduleError> {
    let error = |reason: String| ScheduleError::Every {
        expr: expr.to_string(),
        reason,
    };
    if argument.is_empty() {
        return Err(error(
            "'@every' needs a duration, e.g. '@every 90s' or '@every 1h30m'".to_string(),
        ));
    }
    let interval = parse_duration(argument).map_err(error)?;
    if interval < Duration::from_secs(1) {
        return Err(error("the interval must be at least 1s".to_string()));
    }
    if i64::try_from(interval.as_millis()).is_err() {
        return Err(error("the interval is too long".to_string()));
    }
    Ok(Rule::Every(interval))
}

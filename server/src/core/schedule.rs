//! Schedules: cron (6-field with seconds, 5-field, optional year), `@daily`…,
//! `@every 90s`, evaluated in an IANA time zone. Day-of-week follows Unix cron
//! (0 and 7 = Sunday), and so does the day-of-month/day-of-week rule: when both fields
//! are restricted, a day matching either one fires.
//!
//! Daylight saving time, for cron schedules in a zone that has it:
//! - a wall-clock time that does not exist (spring forward, e.g. 02:30 in Paris on the
//!   last Sunday of March) is skipped: that day's fire does not happen, as in the `cron`
//!   crate;
//! - a wall-clock time that happens twice (fall back, e.g. 01:30 in New York on the
//!   first Sunday of November) fires once, at its first occurrence. A consequence is
//!   that an every-minute schedule pauses for the repeated hour; use UTC or `@every`
//!   when strict periodicity matters.
//!
//! `@every` intervals ignore the time zone: they fire at the multiples of the interval
//! since the Unix epoch, so their instants are the same across restarts.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
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

/// Enough to step over a DST gap or overlap of an every-second schedule (3600 skipped
/// candidates) many times over; reaching it means a bug, not a schedule.
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
        let mut wall = after.with_timezone(&self.timezone).naive_local();
        for _ in 0..MAX_SKIPPED_CANDIDATES {
            wall = self.next_wall_after(wall)?;
            let instant = match self.timezone.from_local_datetime(&wall) {
                LocalResult::Single(t) => t,
                // The first occurrence only; the repeat is the same wall-clock time.
                LocalResult::Ambiguous(first, _) => first,
                // Inside a spring-forward gap: this wall-clock time does not exist.
                LocalResult::None => continue,
            };
            let instant = instant.with_timezone(&Utc);
            // When `after` lies in the repeated hour, wall-clock times just after its own
            // first occurred before it: they already fired.
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

/// What one field of a cron expression accepts.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Lower-case names and their values.
    names: &'static [(&'static str, u32)],
    /// Whether `?` (any) is accepted, as for the two day fields.
    allows_any: bool,
}

const MONTH_NAMES: &[(&str, u32)] = &[
    ("jan", 1),
    ("january", 1),
    ("feb", 2),
    ("february", 2),
    ("mar", 3),
    ("march", 3),
    ("apr", 4),
    ("april", 4),
    ("may", 5),
    ("jun", 6),
    ("june", 6),
    ("jul", 7),
    ("july", 7),
    ("aug", 8),
    ("august", 8),
    ("sep", 9),
    ("september", 9),
    ("oct", 10),
    ("october", 10),
    ("nov", 11),
    ("november", 11),
    ("dec", 12),
    ("december", 12),
];

/// Unix numbering: 0 = Sunday (7 too, folded later).
const DAY_NAMES: &[(&str, u32)] = &[
    ("sun", 0),
    ("sunday", 0),
    ("mon", 1),
    ("monday", 1),
    ("tue", 2),
    ("tues", 2),
    ("tuesday", 2),
    ("wed", 3),
    ("wednesday", 3),
    ("thu", 4),
    ("thurs", 4),
    ("thursday", 4),
    ("fri", 5),
    ("friday", 5),
    ("sat", 6),
    ("saturday", 6),
];

/// Day names for the `cron` crate, indexed by Unix day number.
const CRATE_DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    allows_any: false,
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    allows_any: false,
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    allows_any: false,
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    allows_any: true,
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: MONTH_NAMES,
    allows_any: false,
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: DAY_NAMES,
    allows_any: true,
};
/// The range the `cron` crate supports.
const YEAR: FieldSpec = FieldSpec {
    name: "year",
    min: 1970,
    max: 2100,
    names: &[],
    allows_any: false,
};

/// Validates every field ourselves (clear messages, Unix day numbers), then hands the
/// `cron` crate a normalized expression: `*` or an explicit list per field, days of the
/// week as names since the crate numbers Sunday 1.
fn parse_cron(expr: &str, text: &str) -> Result<Rule, ScheduleError> {
    let error = |reason: String| ScheduleError::Cron {
        expr: expr.to_string(),
        reason,
    };
    let mut fields: Vec<&str> = text.split_whitespace().collect();
    match fields.len() {
        0 => return Err(error("the expression is empty".to_string())),
        5 => fields.insert(0, "0"),
        6 | 7 => {}
        n => {
            return Err(error(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), 6 (with \
                 seconds first) or 7 (with a year last), got {n}"
            )))
        }
    }
    let specs = [
        &SECOND,
        &MINUTE,
        &HOUR,
        &DAY_OF_MONTH,
        &MONTH,
        &DAY_OF_WEEK,
        &YEAR,
    ];
    let mut parsed = Vec::with_capacity(fields.len());
    for (field, spec) in fields.iter().zip(specs) {
        parsed.push(parse_field(field, spec).map_err(error)?);
    }
    let mut normalized: Vec<String> = parsed
        .iter()
        .zip(specs)
        .map(|(values, spec)| render_field(values.as_ref(), spec))
        .collect();

    // Unix cron: when both day fields restrict (neither starts with `*` nor is `?`), a
    // day matching either one fires; otherwise both must match.
    let restricts = |field: &str| !(field.starts_with('*') || field == "?");
    let mut texts = Vec::with_capacity(2);
    if restricts(fields[3]) && restricts(fields[5]) {
        let day_of_week = std::mem::replace(&mut normalized[5], "*".to_string());
        texts.push(normalized.join(" "));
        normalized[3] = "*".to_string();
        normalized[5] = day_of_week;
    }
    texts.push(normalized.join(" "));
    let calendars = texts
        .iter()
        .map(|t| {
            t.parse::<cron::Schedule>().map_err(|e| {
                // Our own validation should have caught it; keep the crate's last line,
                // the one that says what is wrong.
                let message = e.to_string();
                let reason = message
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty() && l.trim() != "^")
                    .unwrap_or("not a valid cron expression")
                    .to_string();
                error(reason)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule::Cron(calendars))
}

/// The values a field selects; `None` for a bare `*` or `?`.
fn parse_field(field: &str, spec: &FieldSpec) -> Result<Option<BTreeSet<u32>>, String> {
    if field == "*" || (field == "?" && spec.allows_any) {
        return Ok(None);
    }
    let mut values = BTreeSet::new();
    for item in field.split(',') {
        if item.is_empty() {
            return Err(format!("empty list item in {} field '{field}'", spec.name));
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => {
                let step: u32 = step.parse().map_err(|_| {
                    format!(
                        "step '{step}' in {} field '{field}' is not a number",
                        spec.name
                    )
                })?;
                if step == 0 {
                    return Err(format!("step 0 in {} field '{field}'", spec.name));
                }
                (base, Some(step))
            }
            None => (item, None),
        };
        let (start, end) = if base == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = base.split_once('-') {
            let (a, b) = (value(a, field, spec)?, value(b, field, spec)?);
            if a > b {
                return Err(format!(
                    "range '{base}' in {} field '{field}' goes backwards",
                    spec.name
                ));
            }
            (a, b)
        } else {
            let a = value(base, field, spec)?;
            // `a/step` runs from `a` to the end of the field, as in the `cron` crate.
            (a, if step.is_some() { spec.max } else { a })
        };
        values.extend((start..=end).step_by(step.unwrap_or(1) as usize));
    }
    Ok(Some(values))
}

fn value(text: &str, field: &str, spec: &FieldSpec) -> Result<u32, String> {
    if text.is_empty() {
        return Err(format!("missing value in {} field '{field}'", spec.name));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
            _ => Err(format!(
                "{} {text} is out of range {}-{}",
                spec.name, spec.min, spec.max
            )),
        };
    }
    let lower = text.to_ascii_lowercase();
    if let Some(&(_, v)) = spec.names.iter().find(|(name, _)| *name == lower) {
        return Ok(v);
    }
    Err(if spec.names.is_empty() {
        format!("'{text}' in {} field '{field}' is not a number", spec.name)
    } else {
        format!(
            "'{text}' in {} field '{field}' is neither a number nor a name",
            spec.name
        )
    })
}

fn render_field(values: Option<&BTreeSet<u32>>, spec: &FieldSpec) -> String {
    let Some(values) = values else {
        return "*".to_string();
    };
    if spec.name == DAY_OF_WEEK.name {
        // 7 is Sunday too; names keep the crate's own numbering out of the picture.
        let days: BTreeSet<usize> = values.iter().map(|&d| (d % 7) as usize).collect();
        return days
            .into_iter()
            .map(|d| CRATE_DAY_NAMES[d])
            .collect::<Vec<_>>()
            .join(",");
    }
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a hand-written duration: `90s`, `1h30m`, `500ms`, `2d`, or a bare number of
/// seconds. Parts may be separated by spaces; units are ms, s, m, h and d (or their
/// long forms: sec, min, hours, days…).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration (write e.g. 90s, 1h30m, 500ms or 2d)".to_string());
    }
    let too_long = || format!("duration '{text}' is too long");
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| too_long());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "duration '{text}': expected a number at '{rest}' (write e.g. 90s or 1h30m)"
            ));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        if rest.starts_with(['.', ',']) {
            return Err(format!(
                "duration '{text}': fractions are not supported (write 1h30m, not 1.5h)"
            ));
        }
        // A space may sit between the number and its unit (`5 m`).
        rest = rest.trim_start();
        let letters = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..letters];
        let seconds_per_unit = match unit.to_ascii_lowercase().as_str() {
            "ms" | "msec" | "msecs" => None,
            "s" | "sec" | "secs" | "second" | "seconds" => Some(1),
            "m" | "min" | "mins" | "minute" | "minutes" => Some(60),
            "h" | "hr" | "hrs" | "hour" | "hours" => Some(3600),
            "d" | "day" | "days" => Some(86_400),
            "" => {
                return Err(format!(
                    "duration '{text}': {number} has no unit (use ms, s, m, h or d)"
                ))
            }
            _ => {
                return Err(format!(
                    "duration '{text}': unknown unit '{unit}' (use ms, s, m, h or d)"
                ))
            }
        };
        let part = match seconds_per_unit {
            None => Duration::from_millis(number),
            Some(factor) => Duration::from_secs(number.checked_mul(factor).ok_or_else(too_long)?),
        };
        total = total.checked_add(part).ok_or_else(too_long)?;
        rest = rest[letters..].trim_start();
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Weekday};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .with_timezone(&Utc)
    }

    fn next(expr: &str, tz: Tz, after: &str) -> DateTime<Utc> {
        Schedule::parse(expr, tz)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .next_after(utc(after))
            .unwrap_or_else(|| panic!("{expr} never fires after {after}"))
    }

    #[test]
    fn every_form_fires_where_expected() {
        // 2024-01-01 is a Monday.
        let after = "2024-01-01T10:17:30Z";
        let cases = [
            ("0 0 2 * * *", "2024-01-02T02:00:00Z"),
            ("0 2 * * *", "2024-01-02T02:00:00Z"),
            ("*/15 * * * *", "2024-01-01T10:30:00Z"),
            ("* * * * * *", "2024-01-01T10:17:31Z"),
            ("30 * * * * *", "2024-01-01T10:18:30Z"),
            ("0 0 12 * * * 2025", "2025-01-01T12:00:00Z"),
            ("0 0 0 1 jan *", "2025-01-01T00:00:00Z"),
            ("0 0 0 1 Feb-Mar *", "2024-02-01T00:00:00Z"),
            ("@yearly", "2025-01-01T00:00:00Z"),
            ("@annually", "2025-01-01T00:00:00Z"),
            ("@monthly", "2024-02-01T00:00:00Z"),
            ("@weekly", "2024-01-07T00:00:00Z"),
            ("@daily", "2024-01-02T00:00:00Z"),
            ("@midnight", "2024-01-02T00:00:00Z"),
            ("@hourly", "2024-01-01T11:00:00Z"),
            ("  @Daily  ", "2024-01-02T00:00:00Z"),
            ("@every 5m", "2024-01-01T10:20:00Z"),
            ("@every 90s", "2024-01-01T10:18:00Z"),
            ("@every 1h30m", "2024-01-01T10:30:00Z"),
            // Unix: both day fields restricted means either matches (the 15th, a
            // Monday, and the next Friday).
            ("0 0 0 15 * FRI", "2024-01-05T00:00:00Z"),
            // ... but a field starting with `*` makes it an AND: odd days that are Mondays.
            ("0 0 0 */2 * MON", "2024-01-15T00:00:00Z"),
        ];
        for (expr, want) in cases {
            assert_eq!(next(expr, Tz::UTC, after), utc(want), "{expr}");
        }
    }

    #[test]
    fn day_of_week_follows_unix_cron() {
        use Weekday::*;
        // From Monday 2024-01-01 00:00 UTC, over two weeks.
        let after = utc("2024-01-01T00:00:00Z");
        let cases: &[(&str, &[Weekday])] = &[
            ("0 0 9 * * 1", &[Mon]),
            ("0 0 3 * * 0", &[Sun]),
            ("0 0 3 * * 7", &[Sun]),
            ("0 0 4 * * 6", &[Sat]),
            ("0 0 18 * * 5", &[Fri]),
            ("0 0 9 * * MON-FRI", &[Mon, Tue, Wed, Thu, Fri]),
            ("0 0 9 * * 1-5", &[Mon, Tue, Wed, Thu, Fri]),
            ("0 0 9 * * 5-7", &[Sun, Fri, Sat]),
            ("0 0 9 * * 0,6", &[Sun, Sat]),
            ("0 0 9 * * */2", &[Sun, Tue, Thu, Sat]),
            ("0 0 9 * * 1-5/2", &[Mon, Wed, Fri]),
            ("0 0 9 * * sun,Wed", &[Sun, Wed]),
            ("0 0 9 * * Tuesday", &[Tue]),
            ("0 0 9 ? * ?", &[Mon, Tue, Wed, Thu, Fri, Sat, Sun]),
            ("0 9 * * 1", &[Mon]),
        ];
        for (expr, days) in cases {
            let schedule = Schedule::parse(expr, Tz::UTC).unwrap();
            let fires = schedule.upcoming(after, 14);
            let mut got: Vec<Weekday> = fires
                .iter()
                .take_while(|t| **t < utc("2024-01-15T00:00:00Z"))
                .map(|t| t.weekday())
                .collect();
            got.sort_by_key(|d| d.num_days_from_sunday());
            got.dedup();
            let mut want = days.to_vec();
            want.sort_by_key(|d| d.num_days_from_sunday());
            assert_eq!(got, want, "{expr}");
        }
    }

    #[test]
    fn evaluates_in_the_schedule_time_zone() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // 02:00 in Paris is 01:00 UTC in winter and 00:00 UTC in summer.
        assert_eq!(
            next("0 0 2 * * *", paris, "2024-01-10T12:00:00Z"),
            utc("2024-01-11T01:00:00Z")
        );
        assert_eq!(
            next("0 0 2 * * *", paris, "2024-07-10T12:00:00Z"),
            utc("2024-07-11T00:00:00Z")
        );
        // Monday 09:00 in New York is Monday 14:00 UTC, not Sunday or Tuesday.
        let new_york: Tz = "America/New_York".parse().unwrap();
        let t = next("0 9 * * 1", new_york, "2024-01-01T15:00:00Z");
        assert_eq!(t, utc("2024-01-08T14:00:00Z"));
        // @every ignores the zone.
        assert_eq!(
            next("@every 1h", paris, "2024-01-10T12:10:00Z"),
            utc("2024-01-10T13:00:00Z")
        );
    }

    #[test]
    fn daylight_saving_time_transitions() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let new_york: Tz = "America/New_York".parse().unwrap();
        let cases: &[(&str, Tz, &str, &[&str])] = &[
            // Paris springs forward on 2024-03-31 at 02:00 -> 03:00: 02:30 does not
            // exist that day and is skipped.
            (
                "0 30 2 * * *",
                paris,
                "2024-03-29T12:00:00Z",
                &[
                    "2024-03-30T01:30:00Z",
                    "2024-04-01T00:30:00Z",
                    "2024-04-02T00:30:00Z",
                ],
            ),
            // 03:30 exists and keeps its wall-clock time across the change.
            (
                "0 30 3 * * *",
                paris,
                "2024-03-30T12:00:00Z",
                &["2024-03-31T01:30:00Z", "2024-04-01T01:30:00Z"],
            ),
            // New York falls back on 2024-11-03 at 02:00 -> 01:00: 01:30 happens twice
            // and fires once, at the first (EDT, UTC-4).
            (
                "0 30 1 * * *",
                new_york,
                "2024-11-02T12:00:00Z",
                &[
                    "2024-11-03T05:30:00Z",
                    "2024-11-04T06:30:00Z",
                    "2024-11-05T06:30:00Z",
                ],
            ),
            // Springing forward in New York (2024-03-10, 02:00 -> 03:00).
            (
                "0 30 2 * * *",
                new_york,
                "2024-03-09T12:00:00Z",
                &["2024-03-11T06:30:00Z"],
            ),
            // An hourly schedule across the fall-back: the repeated 01:00 does not fire
            // again.
            (
                "@hourly",
                new_york,
                "2024-11-03T04:30:00Z",
                &["2024-11-03T05:00:00Z", "2024-11-03T07:00:00Z"],
            ),
        ];
        for (expr, tz, after, want) in cases {
            let schedule = Schedule::parse(expr, *tz).unwrap();
            let got = schedule.upcoming(utc(after), want.len());
            let want: Vec<DateTime<Utc>> = want.iter().map(|w| utc(w)).collect();
            assert_eq!(got, want, "{expr} in {tz}");
        }
        // Starting inside the repeated hour, after its first 01:30 fired: the next fire
        // is the following day, strictly after `after`.
        let after = utc("2024-11-03T06:10:00Z"); // 01:10 EST, the second pass
        assert_eq!(
            next("0 30 1 * * *", new_york, "2024-11-03T06:10:00Z"),
            utc("2024-11-04T06:30:00Z")
        );
        assert!(next("0 30 1 * * *", new_york, "2024-11-03T06:10:00Z") > after);
    }

    #[test]
    fn every_is_aligned_on_the_epoch() {
        let cases = [
            (
                "@every 30s",
                "2024-01-01T10:17:29.999Z",
                "2024-01-01T10:17:30Z",
            ),
            ("@every 30s", "2024-01-01T10:17:30Z", "2024-01-01T10:18:00Z"),
            (
                "@every 30s",
                "2024-01-01T10:17:30.000001Z",
                "2024-01-01T10:18:00Z",
            ),
            ("@every 7s", "1970-01-01T00:00:00Z", "1970-01-01T00:00:07Z"),
            (
                "@every 1500ms",
                "1970-01-01T00:00:02Z",
                "1970-01-01T00:00:03Z",
            ),
            ("@every 2d", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
        ];
        for (expr, after, want) in cases {
            assert_eq!(
                next(expr, Tz::UTC, after),
                utc(want),
                "{expr} after {after}"
            );
        }
        // The same instants whatever the starting point: deterministic across restarts.
        let s = Schedule::parse("@every 90s", Tz::UTC).unwrap();
        let a = s.upcoming(utc("2024-01-01T00:00:01Z"), 5);
        let b = s.upcoming(utc("2024-01-01T00:01:30Z"), 4);
        assert_eq!(a[1..], b[..]);
        assert_eq!(s.interval(), Some(Duration::from_secs(90)));
    }

    #[test]
    fn upcoming_is_strictly_increasing() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        for expr in ["*/10 * * * *", "0 30 2 * * *", "@hourly", "@every 45m"] {
            let s = Schedule::parse(expr, paris).unwrap();
            let fires = s.upcoming(utc("2024-10-26T20:00:00Z"), 50);
            assert_eq!(fires.len(), 50, "{expr}");
            assert!(fires.windows(2).all(|w| w[0] < w[1]), "{expr}");
        }
    }

    #[test]
    fn refuses_bad_expressions() {
        let cases = [
            ("", "the expression is empty"),
            ("0 0 2 * *  * * *", "expected 5 fields"),
            ("0 0 *", "got 3"),
            ("0 0 25 * * *", "hour 25 is out of range 0-23"),
            ("0 61 2 * * *", "minute 61 is out of range 0-59"),
            ("0 0 0 32 * *", "day-of-month 32 is out of range 1-31"),
            ("0 0 0 0 * *", "day-of-month 0 is out of range 1-31"),
            ("0 0 0 * 13 *", "month 13 is out of range 1-12"),
            ("0 0 2 * * 8", "day-of-week 8 is out of range 0-7"),
            ("0 0 2 * * FRI-MON", "range 'FRI-MON' in day-of-week field"),
            ("0 0 2 * * MON#2", "'MON#2' in day-of-week field"),
            ("0 0 2 * * FUNDAY", "'FUNDAY' in day-of-week field"),
            ("0 0 2 * * 1,,2", "empty list item"),
            ("0 0 2 * * */0", "step 0"),
            ("0 0 2 * * */x", "step 'x'"),
            ("0 0 x * * *", "'x' in hour field 'x' is not a number"),
            ("0 0 ? * * *", "'?' in hour field"),
            ("0 0 0 1 1 * 1969", "year 1969 is out of range 1970-2100"),
            ("0 0 0 30 2 *", "never fires"),
            ("@fortnightly", "unknown shorthand '@fortnightly'"),
            ("@daily 3", "'@daily' takes no argument"),
        ];
        for (expr, want) in cases {
            match Schedule::parse(expr, Tz::UTC) {
                Err(ScheduleError::Cron { reason, .. }) => {
                    assert!(reason.contains(want), "{expr}: got '{reason}'")
                }
                other => panic!("{expr}: expected a cron error, got {other:?}"),
            }
        }
        let every_cases = [
            ("@every", "needs a duration"),
            ("@every 500ms", "at least 1s"),
            ("@every 0s", "at least 1s"),
            ("@every 5x", "unknown unit 'x'"),
        ];
        for (expr, want) in every_cases {
            match Schedule::parse(expr, Tz::UTC) {
                Err(ScheduleError::Every { reason, .. }) => {
                    assert!(reason.contains(want), "{expr}: got '{reason}'")
                }
                other => panic!("{expr}: expected an interval error, got {other:?}"),
            }
        }
    }

    #[test]
    fn keeps_expression_and_zone() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let s = Schedule::parse("0 0 2 * * *", paris).unwrap();
        assert_eq!(s.expression(), "0 0 2 * * *");
        assert_eq!(s.timezone(), paris);
        assert_eq!(s.interval(), None);
    }

    #[test]
    fn parses_durations() {
        let ok = [
            ("90s", 90_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("2d", 172_800_000),
            ("60", 60_000),
            ("1m30s", 90_000),
            (" 1h 30m ", 5_400_000),
            ("0s", 0),
            ("1s500ms", 1_500),
            ("5 minutes", 300_000),
            ("2 Hours 1 sec", 7_201_000),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        let errors = [
            ("", "empty duration"),
            ("   ", "empty duration"),
            ("1.5h", "fractions are not supported"),
            ("10x", "unknown unit 'x'"),
            ("3 fortnights", "unknown unit 'fortnights'"),
            ("1h30", "30 has no unit"),
            ("-5s", "expected a number at '-5s'"),
            ("h", "expected a number"),
            ("99999999999999999999s", "too long"),
            ("999999999999999999d", "too long"),
        ];
        for (text, want) in errors {
            match parse_duration(text) {
                Err(e) => assert!(e.contains(want), "{text}: got '{e}'"),
                Ok(d) => panic!("{text}: expected an error, got {d:?}"),
            }
        }
    }
}

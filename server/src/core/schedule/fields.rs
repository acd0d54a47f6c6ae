//! The fields of a cron expression: their ranges and names, parsed into the sets of
//! values they allow, and rendered back for the `cron` crate.

use std::collections::BTreeSet;

use super::{Rule, ScheduleError};

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
pub(super) fn parse_cron(expr: &str, text: &str) -> Result<Rule, ScheduleError> {
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

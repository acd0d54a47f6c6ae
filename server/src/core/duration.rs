//! Hand-written durations, as job files and flags spell them: `90s`, `1h30m`, `500ms`.

use std::time::Duration;

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

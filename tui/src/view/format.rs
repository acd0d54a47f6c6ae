//! Short forms of instants, durations and ids for narrow columns.

use chrono::{DateTime, Utc};
use petit_client::render::{format_duration, Zone};

/// The time of day in `zone`: "14:05:09".
pub fn clock(t: DateTime<Utc>, zone: Zone) -> String {
    zone.format_bare(t, "%H:%M:%S")
}

/// The time of day in `zone` when `t` falls on today's date there, else the date and
/// minute: "14:05:09" or "11-27 08:00" (both fit an 11-column cell).
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>, zone: Zone) -> String {
    let day = |t| zone.format_bare(t, "%Y-%m-%d");
    if day(t) == day(now) {
        zone.format_bare(t, "%H:%M:%S")
    } else {
        zone.format_bare(t, "%m-%d %H:%M")
    }
}

/// As [`when`], followed by the zone's abbreviation at `t`: "14:05:09 UTC",
/// "11-27 02:00 CET", "10-06 02:30 +11" (up to 17 columns).
pub fn when_in(t: DateTime<Utc>, now: DateTime<Utc>, zone: Zone) -> String {
    format!("{} {}", when(t, now, zone), zone.abbreviation(t))
}

/// How long something ran: until `end`, or until `now` while it still runs; "-" when
/// it has not started.
pub fn elapsed(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    match start {
        // A clock step backwards reads as zero, not as an error.
        Some(start) => format_duration((end.unwrap_or(now) - start).to_std().unwrap_or_default()),
        None => "-".to_string(),
    }
}

/// A run id short enough for a table: ids of up to 10 characters as they are, longer
/// ones (UUIDs) by their last 8, the part that differs between runs started together.
pub fn short_id(id: &str) -> &str {
    let chars = id.chars().count();
    if chars <= 10 {
        return id;
    }
    let skip = id.char_indices().nth(chars - 8).map_or(0, |(at, _)| at);
    &id[skip..]
}

/// Whole seconds from `now` to `at`, rounded up (0 once `at` has passed).
pub fn seconds_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let ms = (at - now).num_milliseconds();
    if ms <= 0 {
        0
    } else {
        (ms + 999) / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use petit_client::render::Tz;

    fn utc(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 11, 26, h, m, s).unwrap()
    }

    #[test]
    fn when_shows_the_date_only_for_other_days() {
        let now = utc(10, 0, 0);
        let helsinki = Zone::Named(Tz::Europe__Helsinki);
        let cases = [
            (utc(10, 5, 9), Zone::UTC, "10:05:09", "10:05:09 UTC"),
            (utc(23, 30, 0), Zone::UTC, "23:30:00", "23:30:00 UTC"),
            // 23:30 UTC is 01:30 the next day two hours east.
            (utc(23, 30, 0), helsinki, "11-27 01:30", "11-27 01:30 EET"),
            (
                utc(9, 0, 0) - chrono::TimeDelta::days(1),
                Zone::UTC,
                "11-25 09:00",
                "11-25 09:00 UTC",
            ),
        ];
        for (t, zone, bare, named) in cases {
            assert_eq!(when(t, now, zone), bare, "{t} {zone:?}");
            assert_eq!(when_in(t, now, zone), named, "{t} {zone:?}");
        }
        assert_eq!(clock(utc(10, 5, 9), helsinki), "12:05:09");
    }

    #[test]
    fn elapsed_durations() {
        let now = utc(10, 0, 0);
        let cases = [
            (None, None, "-"),
            (Some(utc(9, 59, 58)), None, "2.0s"),
            (Some(utc(9, 0, 0)), Some(utc(9, 3, 4)), "3m04s"),
            (Some(utc(10, 0, 5)), None, "0ms"),
        ];
        for (start, end, want) in cases {
            assert_eq!(elapsed(start, end, now), want, "{start:?} {end:?}");
        }
    }

    #[test]
    fn short_ids() {
        let cases = [
            ("", ""),
            ("r1", "r1"),
            ("0123456789", "0123456789"),
            ("0193a1b2-7c3d-7e4f-8a5b-6c7d8e9fa0b1", "8e9fa0b1"),
            ("ééééééééééé", "éééééééé"),
        ];
        for (id, want) in cases {
            assert_eq!(short_id(id), want, "{id}");
        }
    }

    #[test]
    fn countdown_rounds_up() {
        let now = utc(10, 0, 0);
        let ms = |n| now + chrono::TimeDelta::milliseconds(n);
        let cases = [
            (ms(-5), 0),
            (ms(0), 0),
            (ms(1), 1),
            (ms(1000), 1),
            (ms(4500), 5),
        ];
        for (at, want) in cases {
            assert_eq!(seconds_until(at, now), want, "{at}");
        }
    }
}

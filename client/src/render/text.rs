//! Short human forms of durations ("1.2s", "3m04s") and instants, each in the zone it
//! is given and saying which ("2025-11-26 10:55:03 CET", "2026-12-02 02:00 CET").

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};

use super::zone::Zone;

/// A duration in at most two units, precise where it matters: "350ms", "1.2s",
/// "3m04s", "2h05m", "3d04h".
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    // Round to tenths first, so that 59.96s reads "1m00s" rather than "60.0s".
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let secs = (ms + 500) / 1_000;
    let (mins, hours, days) = (secs / 60, secs / 3_600, secs / 86_400);
    if hours == 0 {
        format!("{mins}m{:02}s", secs % 60)
    } else if days == 0 {
        format!("{hours}h{:02}m", mins % 60)
    } else {
        format!("{days}d{:02}h", hours % 24)
    }
}

/// As [`format_duration`]; a negative or absent duration reads "-".
pub fn format_proto_duration(d: Option<&prost_types::Duration>) -> String {
    match d {
        Some(d) if d.seconds >= 0 && d.nanos >= 0 => format_duration(Duration::new(
            u64::try_from(d.seconds).unwrap_or(0),
            u32::try_from(d.nanos).unwrap_or(0),
        )),
        _ => "-".to_string(),
    }
}

/// The instant a protobuf timestamp names, if it is a valid one.
pub fn timestamp_to_utc(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(ts.nanos).ok()?;
    DateTime::from_timestamp(ts.seconds, nanos)
}

/// An instant to the second, with its zone: "2025-11-26 10:55:03 CET"; "-" when
/// absent or invalid.
pub fn format_time(ts: Option<&prost_types::Timestamp>, zone: Zone) -> String {
    match ts.and_then(timestamp_to_utc) {
        Some(t) => zone.format(t, "%Y-%m-%d %H:%M:%S"),
        None => "-".to_string(),
    }
}

/// A fire time, with its zone: to the minute ("2026-12-02 02:00 CET"), as schedules are
/// mostly written, and to the second when it falls on one ("2026-12-02 02:00:30 CET");
/// "-" when absent or invalid.
pub fn format_fire_time(ts: Option<&prost_types::Timestamp>, zone: Zone) -> String {
    match ts.and_then(timestamp_to_utc) {
        Some(t) if t.second() == 0 && t.nanosecond() == 0 => zone.format(t, "%Y-%m-%d %H:%M"),
        Some(t) => zone.format(t, "%Y-%m-%d %H:%M:%S"),
        None => "-".to_string(),
    }
}

/// The time of day to the millisecond, for live feeds: "10:55:03.120" (without the
/// zone, which a feed says once).
pub fn format_clock(ts: Option<&prost_types::Timestamp>, zone: Zone) -> String {
    match ts.and_then(timestamp_to_utc) {
        Some(t) => zone.format_bare(t, "%H:%M:%S%.3f"),
        None => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            (0, "0ms"),
            (350, "350ms"),
            (999, "999ms"),
            (1_000, "1.0s"),
            (1_234, "1.2s"),
            (1_250, "1.3s"),
            (59_940, "59.9s"),
            (59_960, "1m00s"),
            (184_000, "3m04s"),
            (3_599_000, "59m59s"),
            (3_600_000, "1h00m"),
            (7_500_000, "2h05m"),
            (86_400_000, "1d00h"),
            (273_600_000, "3d04h"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_duration(Duration::from_millis(ms)), want, "{ms}ms");
        }
    }

    #[test]
    fn proto_durations() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        let cases = [
            (Some(d(1, 200_000_000)), "1.2s"),
            (Some(d(0, 5_000_000)), "5ms"),
            (Some(d(-1, 0)), "-"),
            (None, "-"),
        ];
        for (input, want) in cases {
            assert_eq!(format_proto_duration(input.as_ref()), want, "{input:?}");
        }
    }

    #[test]
    fn times() {
        let ts = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        let paris = Zone::Named(chrono_tz::Europe::Paris);
        // 2025-11-26T09:55:03.120Z
        let at = ts(1_764_150_903, 120_000_000);
        let cases = [
            (
                Some(at),
                "2025-11-26 10:55:03 CET",
                "2025-11-26 10:55:03 CET",
                "10:55:03.120",
            ),
            // 2026-12-02T01:00:00Z, on the minute.
            (
                Some(ts(1_796_173_200, 0)),
                "2026-12-02 02:00:00 CET",
                "2026-12-02 02:00 CET",
                "02:00:00.000",
            ),
            (Some(ts(0, -1)), "-", "-", "-"),
            (None, "-", "-", "-"),
        ];
        for (input, time, fire, clock) in cases {
            assert_eq!(format_time(input.as_ref(), paris), time, "{input:?}");
            assert_eq!(format_fire_time(input.as_ref(), paris), fire, "{input:?}");
            assert_eq!(format_clock(input.as_ref(), paris), clock, "{input:?}");
        }
        assert_eq!(format_time(Some(&at), Zone::UTC), "2025-11-26 09:55:03 UTC");
    }
}

use super::*;
use chrono::{Datelike, TimeDelta, Weekday};

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

fn zone(name: &str) -> Tz {
    name.parse().unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The 2024 transitions the DST tests cross, each checked against the zone's data:
/// (zone, instant of the change, offset before, offset after, in minutes east of UTC).
const TRANSITIONS: &[(&str, &str, i32, i32)] = &[
    // Paris: 02:00 CET -> 03:00 CEST, 03:00 CEST -> 02:00 CET.
    ("Europe/Paris", "2024-03-31T01:00:00Z", 60, 120),
    ("Europe/Paris", "2024-10-27T01:00:00Z", 120, 60),
    // New York: 02:00 EST -> 03:00 EDT, 02:00 EDT -> 01:00 EST.
    ("America/New_York", "2024-03-10T07:00:00Z", -300, -240),
    ("America/New_York", "2024-11-03T06:00:00Z", -240, -300),
    // Lord Howe moves by 30 minutes: 02:00 -> 01:30 in April, 02:00 -> 02:30 in
    // October.
    ("Australia/Lord_Howe", "2024-04-06T15:00:00Z", 660, 630),
    ("Australia/Lord_Howe", "2024-10-05T15:30:00Z", 630, 660),
];

#[test]
fn transitions_are_where_the_tests_think() {
    let offset = |tz: Tz, t: DateTime<Utc>| {
        use chrono::Offset;
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
            / 60
    };
    for (name, at, before, after) in TRANSITIONS {
        let (tz, at) = (zone(name), utc(at));
        assert_eq!(
            offset(tz, at - TimeDelta::seconds(1)),
            *before,
            "{name} {at}"
        );
        assert_eq!(offset(tz, at), *after, "{name} {at}");
    }
}

#[test]
fn daylight_saving_time_transitions() {
    let paris = zone("Europe/Paris");
    let new_york = zone("America/New_York");
    let lord_howe = zone("Australia/Lord_Howe");
    let cases: &[(&str, Tz, &str, &[&str])] = &[
        // Paris springs forward on 2024-03-31 at 02:00 -> 03:00: 02:30 does not
        // exist that day and fires at the first instant after the gap, 03:00 CEST.
        (
            "0 30 2 * * *",
            paris,
            "2024-03-29T12:00:00Z",
            &[
                "2024-03-30T01:30:00Z",
                "2024-03-31T01:00:00Z",
                "2024-04-01T00:30:00Z",
                "2024-04-02T00:30:00Z",
            ],
        ),
        // Four times in the gap are one fire, not four at the same instant.
        (
            "0 */15 2 * * *",
            paris,
            "2024-03-30T12:00:00Z",
            &[
                "2024-03-31T01:00:00Z",
                "2024-04-01T00:00:00Z",
                "2024-04-01T00:15:00Z",
            ],
        ),
        // 02:00 (in the gap) and 03:00 (just after it) read the same instant: once.
        (
            "0 0 2,3 * * *",
            paris,
            "2024-03-30T12:00:00Z",
            &["2024-03-31T01:00:00Z", "2024-04-01T00:00:00Z"],
        ),
        // Every minute across the gap: 01:59 CET, then 03:00 CEST for the whole gap
        // and 03:00 itself, then on.
        (
            "* * * * *",
            paris,
            "2024-03-31T00:58:30Z",
            &[
                "2024-03-31T00:59:00Z",
                "2024-03-31T01:00:00Z",
                "2024-03-31T01:01:00Z",
            ],
        ),
        // Hourly across the gap: 01:00 CET, 03:00 CEST (for 02:00 and 03:00), 04:00.
        (
            "@hourly",
            paris,
            "2024-03-30T23:30:00Z",
            &[
                "2024-03-31T00:00:00Z",
                "2024-03-31T01:00:00Z",
                "2024-03-31T02:00:00Z",
            ],
        ),
        // 03:30 exists and keeps its wall-clock time across the change.
        (
            "0 30 3 * * *",
            paris,
            "2024-03-30T12:00:00Z",
            &["2024-03-31T01:30:00Z", "2024-04-01T01:30:00Z"],
        ),
        // Paris falls back on 2024-10-27 at 03:00 -> 02:00: 02:30 fires once, in
        // CEST (00:30 UTC), not again in CET.
        (
            "0 30 2 * * *",
            paris,
            "2024-10-26T12:00:00Z",
            &["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"],
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
        // Springing forward in New York (2024-03-10, 02:00 -> 03:00): 02:30 fires at
        // 03:00 EDT.
        (
            "0 30 2 * * *",
            new_york,
            "2024-03-09T12:00:00Z",
            &["2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"],
        ),
        // An hourly schedule across the fall-back: the repeated 01:00 does not fire
        // again.
        (
            "@hourly",
            new_york,
            "2024-11-03T04:30:00Z",
            &["2024-11-03T05:00:00Z", "2024-11-03T07:00:00Z"],
        ),
        // Lord Howe springs forward by 30 minutes on 2024-10-06 (02:00 -> 02:30,
        // UTC+10:30 -> +11): 02:15 fires at 02:30, then at 02:15 the next days.
        (
            "0 15 2 * * *",
            lord_howe,
            "2024-10-05T00:00:00Z",
            &["2024-10-05T15:30:00Z", "2024-10-06T15:15:00Z"],
        ),
        // Every 10 minutes across that gap: 01:50, 02:30 (for 02:00, 02:10, 02:20 and
        // 02:30 itself), 02:40.
        (
            "*/10 * * * *",
            lord_howe,
            "2024-10-05T15:15:00Z",
            &[
                "2024-10-05T15:20:00Z",
                "2024-10-05T15:30:00Z",
                "2024-10-05T15:40:00Z",
            ],
        ),
        // Lord Howe falls back by 30 minutes on 2024-04-07 (02:00 -> 01:30, UTC+11 ->
        // +10:30): 01:45 fires once, at +11; the next day at +10:30.
        (
            "0 45 1 * * *",
            lord_howe,
            "2024-04-06T00:00:00Z",
            &["2024-04-06T14:45:00Z", "2024-04-07T15:15:00Z"],
        ),
        // Every 10 minutes across that overlap: 01:30-01:50 once, then 02:00 at +10:30.
        (
            "*/10 * * * *",
            lord_howe,
            "2024-04-06T14:25:00Z",
            &[
                "2024-04-06T14:30:00Z",
                "2024-04-06T14:40:00Z",
                "2024-04-06T14:50:00Z",
                "2024-04-06T15:30:00Z",
            ],
        ),
    ];
    for (expr, tz, after, want) in cases {
        let schedule = Schedule::parse(expr, *tz).unwrap();
        let got = schedule.upcoming(utc(after), want.len());
        let want: Vec<DateTime<Utc>> = want.iter().map(|w| utc(w)).collect();
        assert_eq!(got, want, "{expr} in {tz} after {after}");
    }
    // Starting inside the repeated hour, after its first 01:30 fired: the next fire
    // is the following day, strictly after `after`.
    let after = utc("2024-11-03T06:10:00Z"); // 01:10 EST, the second pass
    assert_eq!(
        next("0 30 1 * * *", new_york, "2024-11-03T06:10:00Z"),
        utc("2024-11-04T06:30:00Z")
    );
    assert!(next("0 30 1 * * *", new_york, "2024-11-03T06:10:00Z") > after);
    // Asked from the gap's instant itself, or just before it: the gap's fire is not
    // repeated, and not missed.
    let cases = [
        ("2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"),
        ("2024-03-31T00:59:59.999Z", "2024-03-31T01:00:00Z"),
        ("2024-03-31T01:00:00.001Z", "2024-04-01T00:30:00Z"),
    ];
    for (after, want) in cases {
        assert_eq!(
            next("0 30 2 * * *", paris, after),
            utc(want),
            "after {after}"
        );
    }
}

/// Around each transition, for schedules with times in its gap or overlap: the fire
/// after any instant is the first of one walk's fires after it (no fire missed,
/// repeated or earlier than asked, whatever the starting point), the walk is strictly
/// increasing, and each fire is either a wall-clock time of the schedule or the end of
/// a gap that one of its times fell in.
#[test]
fn fires_do_not_depend_on_where_the_walk_starts() {
    let exprs = [
        "0 30 2 * * *",
        "0 */15 2 * * *",
        "0 0,30 1,2,3 * * *",
        "*/10 * * * *",
        "* * * * *",
        "@hourly",
        "0 45 1 * * *",
        "0 15 2 * * *",
        "*/20 * * * * *",
    ];
    for (name, at, _, _) in TRANSITIONS {
        let (tz, at) = (zone(name), utc(at));
        let (from, to) = (at - TimeDelta::hours(4), at + TimeDelta::hours(4));
        for expr in exprs {
            let schedule = Schedule::parse(expr, tz).unwrap();
            let mut walk = vec![schedule.next_after(from).unwrap()];
            while *walk.last().unwrap() < to {
                let last = *walk.last().unwrap();
                let next = schedule.next_after(last).unwrap();
                assert!(next > last, "{expr} in {name}: {next} after {last}");
                walk.push(next);
            }
            for fire in &walk {
                let wall = fire.with_timezone(&tz).naive_local();
                let matches = |w: NaiveDateTime| {
                    schedule.next_wall_after(w - TimeDelta::seconds(1)) == Some(w)
                };
                let after_gap = *fire == at && {
                    // The wall-clock times the gap skipped, if it is one.
                    let before = (at - TimeDelta::seconds(1))
                        .with_timezone(&tz)
                        .naive_local();
                    schedule.next_wall_after(before).is_some_and(|w| w < wall)
                };
                assert!(
                    matches(wall) || after_gap,
                    "{expr} in {name}: {fire} ({wall}) is not one of its times"
                );
            }
            let mut probes: Vec<DateTime<Utc>> = Vec::new();
            let mut t = from;
            while t < to {
                probes.push(t);
                t += TimeDelta::seconds(7 * 60 + 13);
            }
            for fire in &walk {
                probes.extend([
                    *fire - TimeDelta::milliseconds(1),
                    *fire,
                    *fire + TimeDelta::milliseconds(1),
                ]);
            }
            for after in probes.into_iter().filter(|p| *p >= from && *p < to) {
                let want = walk.iter().copied().find(|f| *f > after);
                assert_eq!(
                    schedule.next_after(after),
                    want,
                    "{expr} in {name} after {after}"
                );
            }
        }
    }
}

#[test]
fn every_is_elapsed_time_across_dst() {
    // One hour apart in elapsed time, whatever the wall clock does: 01:00 CET, 03:00
    // CEST, 04:00 CEST in Paris on 2024-03-31; 02:00 CEST, 02:00 CET, 03:00 CET on
    // 2024-10-27.
    let cases = [
        (
            "Europe/Paris",
            "@every 1h",
            "2024-03-30T23:30:00Z",
            &[
                "2024-03-31T00:00:00Z",
                "2024-03-31T01:00:00Z",
                "2024-03-31T02:00:00Z",
            ],
        ),
        (
            "Europe/Paris",
            "@every 1h",
            "2024-10-26T23:30:00Z",
            &[
                "2024-10-27T00:00:00Z",
                "2024-10-27T01:00:00Z",
                "2024-10-27T02:00:00Z",
            ],
        ),
        (
            "Australia/Lord_Howe",
            "@every 30m",
            "2024-10-05T15:10:00Z",
            &[
                "2024-10-05T15:30:00Z",
                "2024-10-05T16:00:00Z",
                "2024-10-05T16:30:00Z",
            ],
        ),
        (
            "America/New_York",
            "@every 90m",
            "2024-11-03T05:00:00Z",
            &[
                "2024-11-03T06:00:00Z",
                "2024-11-03T07:30:00Z",
                "2024-11-03T09:00:00Z",
            ],
        ),
    ];
    for (name, expr, after, want) in cases {
        let schedule = Schedule::parse(expr, zone(name)).unwrap();
        let want: Vec<DateTime<Utc>> = want.iter().map(|w| utc(w)).collect();
        assert_eq!(schedule.upcoming(utc(after), 3), want, "{expr} in {name}");
    }
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

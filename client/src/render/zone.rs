//! Which zone a time is shown in. By default a job's next fire times are shown in the
//! job's own zone, the one its schedule is written in (`0 0 2 * * *` in Europe/Paris
//! reads "02:00 CET"), and every other time (runs, events, the clock) in the viewer's
//! local zone; the user may choose local time or UTC for all instead. A time shown
//! with its date carries its zone's abbreviation at that instant ("2026-12-02 02:00
//! CET", "EDT", "+1030"), so that none is read in the wrong zone.

use chrono::{DateTime, Local, Utc};
use chrono_tz::Tz;

/// A zone to show times in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// An IANA zone, with the tz database's abbreviations.
    Named(Tz),
    /// The system's local time when it has no IANA name that can be found (a POSIX
    /// rule in `TZ`, a copied `/etc/localtime`): shown with its numeric offset
    /// ("+01:00"), as the C library computes it.
    System,
}

impl Zone {
    pub const UTC: Zone = Zone::Named(Tz::UTC);

    /// The viewer's local zone: `TZ` when it names an IANA zone (`Europe/Paris`,
    /// `:Europe/Paris` or a path into a `zoneinfo` directory; empty is UTC, as for the
    /// C library), else the system's zone (`/etc/localtime`'s link, `/etc/timezone`),
    /// else [`Zone::System`].
    pub fn local() -> Zone {
        match std::env::var("TZ") {
            Ok(tz) => tz_variable(&tz),
            // Unset (or not Unicode, which no zone name is): the system's.
            Err(_) => iana_time_zone::get_timezone()
                .ok()
                .and_then(|name| name.parse().ok())
                .map_or(Zone::System, Zone::Named),
        }
    }

    /// `t` in this zone, formatted by `pattern` (strftime), then a space and the
    /// zone's abbreviation at that instant.
    pub fn format(self, t: DateTime<Utc>, pattern: &str) -> String {
        let pattern = format!("{pattern} %Z");
        self.format_bare(t, &pattern)
    }

    /// `t` in this zone, formatted by `pattern`, without naming the zone (for columns
    /// whose zone is said once, elsewhere).
    pub fn format_bare(self, t: DateTime<Utc>, pattern: &str) -> String {
        match self {
            Zone::Named(tz) => t.with_timezone(&tz).format(pattern).to_string(),
            Zone::System => t.with_timezone(&Local).format(pattern).to_string(),
        }
    }

    /// The zone's abbreviation at `t`: "CET", "EDT", "+1030"; an offset for
    /// [`Zone::System`].
    pub fn abbreviation(self, t: DateTime<Utc>) -> String {
        self.format_bare(t, "%Z")
    }
}

/// The zone `TZ` names, as the C library reads it.
fn tz_variable(value: &str) -> Zone {
    let name = value.strip_prefix(':').unwrap_or(value);
    if name.is_empty() {
        return Zone::UTC;
    }
    // A path: /usr/share/zoneinfo/Europe/Paris names Europe/Paris.
    let name = name.rsplit_once("zoneinfo/").map_or(name, |(_, n)| n);
    name.parse().map_or(Zone::System, Zone::Named)
}

/// The zone a job's schedule is evaluated in, from the IANA name the contract carries
/// (`Schedule.timezone`): UTC when empty, and when this build's tz database does not
/// know the name (the instant shown is still right, and says UTC).
pub fn job_zone(name: &str) -> Zone {
    name.parse().map_or(Zone::UTC, Zone::Named)
}

/// Which zone times are shown in, as the user chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZoneChoice {
    /// A job's next fire times in the job's zone, every other time in local time.
    #[default]
    Job,
    /// Every time in the viewer's local zone.
    Local,
    /// Every time in UTC.
    Utc,
}

impl ZoneChoice {
    /// The choice after this one, for a key that goes round them: job's zone, local,
    /// UTC.
    pub fn next(self) -> ZoneChoice {
        match self {
            ZoneChoice::Job => ZoneChoice::Local,
            ZoneChoice::Local => ZoneChoice::Utc,
            ZoneChoice::Utc => ZoneChoice::Job,
        }
    }

    /// What the choice shows, for a sentence: "times: …".
    pub fn describe(self) -> &'static str {
        match self {
            ZoneChoice::Job => "next fire times in each job's zone, other times local",
            ZoneChoice::Local => "every time in local time",
            ZoneChoice::Utc => "every time in UTC",
        }
    }
}

/// The zones a view shows times in: the user's choice and the viewer's local zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zones {
    pub choice: ZoneChoice,
    pub local: Zone,
}

impl Zones {
    pub fn new(choice: ZoneChoice, local: Zone) -> Zones {
        Zones { choice, local }
    }

    /// The zone for the fire times of a job whose schedule is in `job_zone` (see
    /// [`job_zone`]).
    pub fn for_fires(&self, job_zone: Zone) -> Zone {
        match self.choice {
            ZoneChoice::Job => job_zone,
            ZoneChoice::Local => self.local,
            ZoneChoice::Utc => Zone::UTC,
        }
    }

    /// The zone for every other time: when runs started and ended, events, the clock.
    pub fn for_events(&self) -> Zone {
        match self.choice {
            ZoneChoice::Utc => Zone::UTC,
            ZoneChoice::Job | ZoneChoice::Local => self.local,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn abbreviations_follow_the_instant() {
        let named = |name: &str| Zone::Named(name.parse().unwrap());
        let cases = [
            (
                named("Europe/Paris"),
                at(2026, 12, 2, 1, 0),
                "2026-12-02 02:00 CET",
            ),
            (
                named("Europe/Paris"),
                at(2026, 7, 2, 0, 0),
                "2026-07-02 02:00 CEST",
            ),
            (
                named("America/New_York"),
                at(2026, 11, 1, 5, 30),
                "2026-11-01 01:30 EDT",
            ),
            (
                named("America/New_York"),
                at(2026, 11, 1, 6, 30),
                "2026-11-01 01:30 EST",
            ),
            (
                named("Australia/Lord_Howe"),
                at(2026, 7, 1, 0, 0),
                "2026-07-01 10:30 +1030",
            ),
            (Zone::UTC, at(2026, 12, 2, 1, 0), "2026-12-02 01:00 UTC"),
        ];
        for (zone, t, want) in cases {
            assert_eq!(zone.format(t, "%Y-%m-%d %H:%M"), want, "{zone:?} {t}");
        }
        assert_eq!(
            named("Europe/Paris").abbreviation(at(2026, 12, 2, 1, 0)),
            "CET"
        );
        assert_eq!(
            named("Europe/Paris").format_bare(at(2026, 12, 2, 1, 0), "%H:%M"),
            "02:00"
        );
    }

    #[test]
    fn tz_variable_as_the_c_library_reads_it() {
        let paris = Zone::Named(chrono_tz::Europe::Paris);
        let cases = [
            ("Europe/Paris", paris),
            (":Europe/Paris", paris),
            ("/usr/share/zoneinfo/Europe/Paris", paris),
            ("", Zone::UTC),
            ("UTC", Zone::UTC),
            // A POSIX rule: only the C library knows what it means.
            ("CET-1CEST,M3.5.0,M10.5.0/3", Zone::System),
            ("Mars/Olympus", Zone::System),
        ];
        for (value, want) in cases {
            assert_eq!(tz_variable(value), want, "{value:?}");
        }
    }

    #[test]
    fn job_zones_default_to_utc() {
        assert_eq!(job_zone(""), Zone::UTC);
        assert_eq!(job_zone("Mars/Olympus"), Zone::UTC);
        assert_eq!(
            job_zone("America/New_York"),
            Zone::Named(chrono_tz::America::New_York)
        );
    }

    #[test]
    fn choices_pick_zones() {
        let local = Zone::Named(chrono_tz::Asia::Tokyo);
        let paris = Zone::Named(chrono_tz::Europe::Paris);
        let cases = [
            (ZoneChoice::Job, paris, local),
            (ZoneChoice::Local, local, local),
            (ZoneChoice::Utc, Zone::UTC, Zone::UTC),
        ];
        for (choice, fires, events) in cases {
            let zones = Zones::new(choice, local);
            assert_eq!(
                zones.for_fires(job_zone("Europe/Paris")),
                fires,
                "{choice:?}"
            );
            assert_eq!(zones.for_events(), events, "{choice:?}");
        }
        let mut choice = ZoneChoice::default();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(choice);
            choice = choice.next();
        }
        assert_eq!(seen, [ZoneChoice::Job, ZoneChoice::Local, ZoneChoice::Utc]);
        assert_eq!(choice, ZoneChoice::Job);
    }
}

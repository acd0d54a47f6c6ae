//! The instants a backfill (or a catch-up) stands for: pure schedule arithmetic, bounded
//! so that a huge range costs a bounded time to refuse.

use chrono::{DateTime, Utc};

use crate::core::Schedule;

/// Instants one backfill may queue at most.
pub const MAX_INSTANTS: usize = 10_000;
/// How far a refused range is counted before saying "more than".
const COUNT_CAP: usize = 100_000;

/// Why a range was refused: how many instants it holds (`None`: more than
/// `COUNT_CAP`, not counted further).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooMany(pub Option<usize>);

impl std::fmt::Display for TooMany {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "the range holds {n} fire instants"),
            None => write!(f, "the range holds more than {COUNT_CAP} fire instants"),
        }?;
        write!(f, "; at most {MAX_INSTANTS} at once (split it)")
    }
}

/// The schedule's instants in `[from, to]`, oldest first, at most `limit` of them.
pub fn instants_between(
    schedule: &Schedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<DateTime<Utc>>, TooMany> {
    let mut instants = Vec::new();
    let mut cursor = schedule.next_after(from - chrono::Duration::nanoseconds(1));
    while let Some(at) = cursor.filter(|at| *at <= to) {
        if instants.len() == COUNT_CAP {
            return Err(TooMany(None));
        }
        instants.push(at);
        cursor = schedule.next_after(at);
    }
    if instants.len() > limit {
        return Err(TooMany(Some(instants.len())));
    }
    Ok(instants)
}

/// The last `keep` of the schedule's instants in `[from, to]`, oldest first, looking
/// at no more than `cap` instants from `to` backwards in effect (a catch-up of an
/// every-second job over a long window keeps the newest ones, in bounded time).
pub fn latest_between(
    schedule: &Schedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    keep: usize,
) -> Vec<DateTime<Utc>> {
    let mut kept = std::collections::VecDeque::with_capacity(keep.min(1024));
    let mut cursor = schedule.next_after(from - chrono::Duration::nanoseconds(1));
    let mut seen = 0usize;
    while let Some(at) = cursor.filter(|at| *at <= to) {
        seen += 1;
        if seen > COUNT_CAP * 10 {
            break;
        }
        if kept.len() == keep {
            kept.pop_front();
        }
        kept.push_back(at);
        cursor = schedule.next_after(at);
    }
    kept.into()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, h, m, 0).unwrap()
    }

    #[test]
    fn a_range_includes_both_ends_and_refuses_too_many_with_the_count() {
        let hourly = Schedule::parse("0 0 * * * *", chrono_tz::UTC).unwrap();
        assert_eq!(
            instants_between(&hourly, at(1, 0), at(3, 0), 10).unwrap(),
            [at(1, 0), at(2, 0), at(3, 0)]
        );
        assert_eq!(
            instants_between(&hourly, at(1, 30), at(2, 59), 10).unwrap(),
            [at(2, 0)]
        );
        assert!(instants_between(&hourly, at(3, 0), at(1, 0), 10)
            .unwrap()
            .is_empty());
        assert_eq!(
            instants_between(&hourly, at(0, 0), at(23, 0), 10),
            Err(TooMany(Some(24)))
        );
        let every_second = Schedule::parse("* * * * * *", chrono_tz::UTC).unwrap();
        let year = at(0, 0) + chrono::Duration::days(365);
        let refused = instants_between(&every_second, at(0, 0), year, MAX_INSTANTS);
        assert_eq!(
            refused,
            Err(TooMany(None)),
            "counted no further than the cap"
        );
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("more than 100000"));
    }

    #[test]
    fn latest_keeps_the_newest_instants() {
        let hourly = Schedule::parse("0 0 * * * *", chrono_tz::UTC).unwrap();
        assert_eq!(
            latest_between(&hourly, at(0, 0), at(23, 30), 2),
            [at(22, 0), at(23, 0)]
        );
        assert!(latest_between(&hourly, at(1, 30), at(1, 45), 2).is_empty());
    }
}

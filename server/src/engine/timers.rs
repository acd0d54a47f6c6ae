//! The timer table: the next fire instant of every scheduled job. Pure: the engine's
//! owner task asks it for the earliest instant, sleeps on its clock until then, and
//! hands it the time it woke at to learn what is due.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::core::JobDef;

/// A fire taken from the table: the job, the instant, and the job's new upcoming list.
pub type Due = (Arc<JobDef>, DateTime<Utc>, Arc<[DateTime<Utc>]>);

/// Next fire instants listed per job (the API shows them).
pub const UPCOMING: usize = 5;

struct Entry {
    job: Arc<JobDef>,
    next: Option<DateTime<Utc>>,
    /// Paused on its own: not armed, not listed.
    paused: bool,
    /// The job's `jitter` drawn for `next`: the fire happens this much after it.
    delay: chrono::Duration,
}

impl Entry {
    /// Arms the entry for `next`, drawing its jitter delay: up to the job's `jitter`,
    /// and never up to the instant after `next` (a fire is never held past the next).
    fn arm(&mut self, next: Option<DateTime<Utc>>) {
        self.next = next;
        self.delay = chrono::Duration::zero();
        let (Some(jitter), Some(at)) = (self.job.jitter, next) else {
            return;
        };
        let schedule = self.job.schedule.as_ref().expect("entries have schedules");
        let mut bound = chrono::Duration::from_std(jitter).unwrap_or(chrono::Duration::MAX);
        if let Some(after) = schedule.next_after(at) {
            bound = bound.min(after - at - chrono::Duration::milliseconds(1));
        }
        let bound_ms = bound.num_milliseconds();
        if bound_ms > 0 {
            use rand::Rng;
            self.delay = chrono::Duration::milliseconds(rand::rng().random_range(0..bound_ms));
        }
    }

    /// When the armed fire happens: its instant plus its jitter delay.
    fn due_at(&self) -> Option<DateTime<Utc>> {
        self.next.map(|at| at + self.delay)
    }
}

/// The next fire of each enabled job that has a schedule.
pub struct Timers {
    entries: Vec<Entry>,
}

impl Timers {
    /// The table over `jobs` (those enabled and scheduled), armed from `now`.
    pub fn new(jobs: impl IntoIterator<Item = Arc<JobDef>>, now: DateTime<Utc>) -> Timers {
        let entries = jobs
            .into_iter()
            .filter(|j| j.enabled && j.schedule.is_some())
            .map(|job| Entry {
                job,
                next: None,
                paused: false,
                delay: chrono::Duration::zero(),
            })
            .collect();
        let mut timers = Timers { entries };
        timers.reset(now);
        timers
    }

    /// The earliest next fire of any job not paused.
    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.entries
            .iter()
            .filter(|e| !e.paused)
            .filter_map(Entry::due_at)
            .min()
    }

    /// Pauses or resumes one job's fires; a resumed job is armed from `now` (what fell
    /// due while it was paused is not made up). Whether the job has a timer.
    pub fn set_paused(&mut self, job_id: &str, paused: bool, now: DateTime<Utc>) -> bool {
        let Some(e) = self.entries.iter_mut().find(|e| e.job.id == job_id) else {
            return false;
        };
        if e.paused && !paused {
            let next = e.job.schedule.as_ref().and_then(|s| s.next_after(now));
            e.arm(next);
        }
        e.paused = paused;
        true
    }

    /// Recomputes every next fire from `now` (after a resume or a clock step): what
    /// fell due in between is not made up.
    pub fn reset(&mut self, now: DateTime<Utc>) {
        for e in &mut self.entries {
            let next = e.job.schedule.as_ref().and_then(|s| s.next_after(now));
            e.arm(next);
        }
    }

    /// Each job's next `UPCOMING` fire instants, starting with its armed one (none
    /// for a paused job).
    pub fn upcoming(&self) -> HashMap<String, Arc<[DateTime<Utc>]>> {
        self.entries
            .iter()
            .map(|e| (e.job.id.clone(), Self::upcoming_of(e)))
            .collect()
    }

    /// One job's upcoming fire instants, as `upcoming` lists them.
    pub fn upcoming_of_job(&self, job_id: &str) -> Option<Arc<[DateTime<Utc>]>> {
        self.entries
            .iter()
            .find(|e| e.job.id == job_id)
            .map(Self::upcoming_of)
    }

    fn upcoming_of(e: &Entry) -> Arc<[DateTime<Utc>]> {
        let Some(first) = e.next.filter(|_| !e.paused) else {
            return Arc::from([]);
        };
        let schedule = e.job.schedule.as_ref().expect("entries have schedules");
        let mut list = vec![first];
        list.extend(schedule.upcoming(first, UPCOMING - 1));
        Arc::from(list)
    }

    /// Takes every fire due at `now`, once each (job, instant), moving each such job to
    /// its next instant; also returns the changed jobs' new upcoming lists. A job more
    /// than one period late (a suspended machine) fires once and skips the instants it
    /// missed (those before `now`; one at `now` is due, not missed).
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<Due> {
        let mut due = Vec::new();
        for e in self.entries.iter_mut().filter(|e| !e.paused) {
            let job = e.job.clone();
            let schedule = job.schedule.as_ref().expect("entries have schedules");
            // At most twice: the instant due, then one falling exactly on `now`.
            while let Some(at) = e.next.filter(|_| e.due_at().is_some_and(|due| due <= now)) {
                let mut next = schedule.next_after(at);
                if matches!(next, Some(n) if n < now) {
                    tracing::warn!(job = %e.job.id, "missed fires between {at} and {now}; skipping to the next one");
                    next = schedule.next_after(now - chrono::Duration::nanoseconds(1));
                }
                e.arm(next);
                due.push((e.job.clone(), at, Self::upcoming_of(e)));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::TimeZone;

    use super::*;
    use crate::config::{parse_job, GlobalConfig};

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, s)
            .single()
            .expect("valid time")
    }

    /// A table over one job, armed at `now`.
    fn timers(schedule: &str, now: DateTime<Utc>) -> Timers {
        let yaml =
            format!("id: j\nschedule: '{schedule}'\ntasks:\n  - {{id: t, command: 'true'}}\n");
        let job =
            Arc::new(parse_job(&yaml, Path::new("j.yaml"), &GlobalConfig::default()).expect("job"));
        Timers::new([job], now)
    }

    fn fired(due: Vec<Due>) -> Vec<DateTime<Utc>> {
        due.into_iter().map(|(_, at, _)| at).collect()
    }

    #[test]
    fn fires_what_is_due_once_and_moves_on() {
        // (schedule, armed at, woken at, fired instants, next fire)
        let cases = [
            // On time.
            (
                "0 */5 * * * *",
                at(10, 0, 1),
                at(10, 5, 0),
                vec![at(10, 5, 0)],
                at(10, 10, 0),
            ),
            // Woken early (nothing is due yet).
            (
                "0 */5 * * * *",
                at(10, 0, 1),
                at(10, 4, 59),
                vec![],
                at(10, 5, 0),
            ),
            // Three periods late (a suspended machine, a clock stepped forward): the due
            // fire happens once and the missed ones are skipped.
            (
                "0 */5 * * * *",
                at(10, 0, 1),
                at(10, 17, 0),
                vec![at(10, 5, 0)],
                at(10, 20, 0),
            ),
            (
                "@every 30s",
                at(10, 0, 1),
                at(10, 0, 30),
                vec![at(10, 0, 30)],
                at(10, 1, 0),
            ),
        ];
        for (schedule, armed, woken, want_fired, want_next) in cases {
            let mut timers = timers(schedule, armed);
            assert_eq!(
                fired(timers.take_due(woken)),
                want_fired,
                "{schedule} woken at {woken}"
            );
            assert_eq!(
                timers.next(),
                Some(want_next),
                "{schedule} woken at {woken}"
            );
            assert_eq!(
                timers.upcoming()["j"][0],
                want_next,
                "{schedule} woken at {woken}"
            );
        }
    }

    #[test]
    fn a_clock_set_back_recomputes_the_next_fire() {
        // Armed for 02:00 while the clock read 01:59; the clock is then set back a day
        // and a half (a Pi that booted with a time from the future learns the real one).
        let mut timers = timers("0 0 2 * * *", at(1, 59, 0));
        assert_eq!(timers.next(), Some(at(2, 0, 0)));
        let now = at(14, 0, 0) - chrono::Duration::days(2);
        assert!(timers.take_due(now).is_empty());
        timers.reset(now);
        assert_eq!(timers.next(), Some(at(2, 0, 0) - chrono::Duration::days(1)));
    }
}

#[cfg(test)]
mod upcoming_tests {
    use std::path::Path;

    use chrono::TimeZone;

    use super::*;
    use crate::config::{parse_job, GlobalConfig};

    #[test]
    fn upcoming_lists_start_at_the_armed_fire_and_skip_unscheduled_jobs() {
        let global = GlobalConfig::default();
        let every = parse_job(
            "id: e\nschedule: '@every 10s'\ntasks:\n  - {id: t, command: 'true'}\n",
            Path::new("e.yaml"),
            &global,
        )
        .unwrap();
        let manual = parse_job(
            "id: m\ntasks:\n  - {id: t, command: 'true'}\n",
            Path::new("m.yaml"),
            &global,
        )
        .unwrap();
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 1).unwrap();
        let timers = Timers::new([Arc::new(every), Arc::new(manual)], now);
        let upcoming = timers.upcoming();
        assert!(!upcoming.contains_key("m"));
        let list = &upcoming["e"];
        assert_eq!(list.len(), UPCOMING);
        assert_eq!(Some(list[0]), timers.next());
        for pair in list.windows(2) {
            assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(10));
        }
    }

    #[test]
    fn jitter_delays_a_fire_within_its_bound_and_never_past_the_next() {
        let global = GlobalConfig::default();
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 1).unwrap();
        for (schedule, jitter, bound) in
            [("@every 1m", "30s", 30_000), ("* * * * * *", "30s", 1_000)]
        {
            let yaml = format!(
                "id: j\nschedule: '{schedule}'\njitter: {jitter}\ntasks:\n  - {{id: t, command: 'true'}}\n"
            );
            let job = Arc::new(parse_job(&yaml, Path::new("j.yaml"), &global).unwrap());
            for _ in 0..50 {
                let mut timers = Timers::new([job.clone()], now);
                let nominal = timers.upcoming()["j"][0];
                let due = timers.next().unwrap();
                let delay = (due - nominal).num_milliseconds();
                assert!((0..bound).contains(&delay), "{schedule}: delay {delay} ms");
                assert!(
                    timers
                        .take_due(due - chrono::Duration::milliseconds(1))
                        .is_empty()
                        || delay == 0
                );
                let fired = timers.take_due(due);
                assert_eq!(fired.len(), 1);
                assert_eq!(
                    fired[0].1, nominal,
                    "the run stands for the nominal instant"
                );
            }
        }
    }
}

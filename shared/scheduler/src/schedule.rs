//! When a job's slots are: cron expressions in an IANA time zone, or fixed intervals aligned to
//! the Unix epoch. A slot is the scheduled instant, in UTC.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::errors::CronError;
use croner::Cron;

/// A schedule that is not usable, with the input that was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cron expression {expr:?} is not valid: {source}")]
    Cron {
        expr: String,
        #[source]
        source: CronError,
    },
    #[error("cron expression {expr:?} never fires: {source}")]
    NeverFires {
        expr: String,
        #[source]
        source: CronError,
    },
    #[error("unknown time zone {0:?} (expected an IANA name such as \"Asia/Seoul\")")]
    TimeZone(String),
    #[error("interval {0:?} is not a whole number of seconds of at least one second")]
    Interval(Duration),
}

/// The slots of a job.
#[derive(Clone)]
pub enum Schedule {
    /// A cron expression (5 fields, or 6 with seconds first) evaluated in a time zone.
    /// Across daylight-saving changes a fixed wall-clock time that falls into the gap fires at
    /// the first instant after it, and one that occurs twice fires once (the first time); a
    /// wildcard or stepped field fires at every matching instant that exists.
    Cron {
        expr: String,
        cron: Box<Cron>,
        tz: Tz,
    },
    /// Every `interval`, at the instants that are whole multiples of it since the Unix epoch
    /// (so `every(1h)` fires at the top of every UTC hour, on every replica alike).
    Every { interval_secs: i64 },
}

/// The slots found in a range, at most `limit` of them listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRange {
    /// The first slots of the range, in order (at most the limit).
    pub listed: Vec<DateTime<Utc>>,
    /// Slots in the range, counted up to [`SlotRange::COUNT_LIMIT`].
    pub count: u64,
    /// More slots than [`SlotRange::COUNT_LIMIT`] are in the range.
    pub count_capped: bool,
    /// The latest slot of the range.
    pub latest: Option<DateTime<Utc>>,
}

impl SlotRange {
    /// Counting stops here: a long outage of an every-second job must not stall the scheduler.
    pub const COUNT_LIMIT: u64 = 100_000;
}

impl Schedule {
    /// A cron expression in the IANA time zone `tz` (e.g. `cron("0 12 * * *", "Asia/Seoul")`).
    pub fn cron(expr: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        let zone = Tz::from_str(tz).map_err(|_| ScheduleError::TimeZone(tz.to_owned()))?;
        Schedule::cron_in(expr, zone)
    }

    /// A cron expression in an already parsed time zone.
    pub fn cron_in(expr: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let cron = Cron::from_str(expr).map_err(|source| ScheduleError::Cron {
            expr: expr.to_owned(),
            source,
        })?;
        // A pattern such as "0 0 30 2 *" parses but has no instant: refuse it now rather than
        // failing every time the scheduler asks for the next slot.
        let probe = DateTime::<Utc>::UNIX_EPOCH.with_timezone(&tz);
        cron.find_next_occurrence(&probe, false)
            .map_err(|source| ScheduleError::NeverFires {
                expr: expr.to_owned(),
                source,
            })?;
        Ok(Schedule::Cron {
            expr: expr.to_owned(),
            cron: Box::new(cron),
            tz,
        })
    }

    /// Every `interval` (whole seconds, at least one), aligned to the Unix epoch.
    pub fn every(interval: Duration) -> Result<Schedule, ScheduleError> {
        let secs = interval.as_secs();
        if secs == 0 || interval.subsec_nanos() != 0 {
            return Err(ScheduleError::Interval(interval));
        }
        let interval_secs = i64::try_from(secs).map_err(|_| ScheduleError::Interval(interval))?;
        Ok(Schedule::Every { interval_secs })
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, tz, .. } => cron
                .find_next_occurrence(&t.with_timezone(tz), false)
                .ok()
                .map(|at| at.with_timezone(&Utc)),
            Schedule::Every { interval_secs } => {
                let n = t.timestamp().div_euclid(*interval_secs);
                DateTime::from_timestamp(n.checked_add(1)?.checked_mul(*interval_secs)?, 0)
            }
        }
    }

    /// The latest slot at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, tz, .. } => cron
                .find_previous_occurrence(&t.with_timezone(tz), true)
                .ok()
                .map(|at| at.with_timezone(&Utc)),
            Schedule::Every { interval_secs } => {
                // Slots are whole seconds: a fraction past one still belongs to it.
                let n = t.timestamp().div_euclid(*interval_secs);
                DateTime::from_timestamp(n.checked_mul(*interval_secs)?, 0)
            }
        }
    }

    /// The slots in `(after, until]`, the first `list_limit` of them listed.
    pub fn slots_in(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        list_limit: usize,
    ) -> SlotRange {
        let latest = self
            .latest_at_or_before(until)
            .filter(|latest| *latest > after);
        let mut range = SlotRange {
            listed: Vec::new(),
            count: 0,
            count_capped: false,
            latest,
        };
        if latest.is_none() {
            return range;
        }
        if let Schedule::Every { interval_secs } = self {
            // Arithmetic instead of walking: exact for any length of outage.
            let first = after.timestamp().div_euclid(*interval_secs) + 1;
            let last = until.timestamp().div_euclid(*interval_secs);
            let count = u64::try_from(last - first + 1).unwrap_or(0);
            range.count = count.min(SlotRange::COUNT_LIMIT);
            range.count_capped = count > SlotRange::COUNT_LIMIT;
            range.listed = (first..=last)
                .take(list_limit)
                .filter_map(|n| DateTime::from_timestamp(n * interval_secs, 0))
                .collect();
            return range;
        }
        let mut cursor = after;
        while let Some(slot) = self.next_after(cursor).filter(|slot| *slot <= until) {
            if range.count == SlotRange::COUNT_LIMIT {
                range.count_capped = true;
                break;
            }
            range.count += 1;
            if range.listed.len() < list_limit {
                range.listed.push(slot);
            }
            cursor = slot;
        }
        range
    }

    /// The distance between two slots, for fixed-interval schedules.
    #[cfg(test)]
    fn interval(&self) -> Option<chrono::TimeDelta> {
        match self {
            Schedule::Every { interval_secs } => Some(chrono::TimeDelta::seconds(*interval_secs)),
            Schedule::Cron { .. } => None,
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron { expr, tz, .. } => write!(f, "cron {expr:?} in {}", tz.name()),
            Schedule::Every { interval_secs } => write!(f, "every {interval_secs}s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        match Utc.with_ymd_and_hms(y, mo, d, h, mi, s) {
            chrono::LocalResult::Single(t) => t,
            other => panic!("bad test time: {other:?}"),
        }
    }

    fn cron(expr: &str, tz: &str) -> Schedule {
        match Schedule::cron(expr, tz) {
            Ok(s) => s,
            Err(e) => panic!("{expr} in {tz}: {e}"),
        }
    }

    fn next_n(s: &Schedule, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = from;
        for _ in 0..n {
            match s.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    #[test]
    fn noon_in_seoul_is_three_utc() {
        let s = cron("0 12 * * *", "Asia/Seoul");
        assert_eq!(
            s.next_after(utc(2026, 12, 1, 0, 0, 0)),
            Some(utc(2026, 12, 1, 3, 0, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 12, 1, 3, 0, 0)),
            Some(utc(2026, 12, 2, 3, 0, 0))
        );
        assert_eq!(
            s.latest_at_or_before(utc(2026, 12, 1, 3, 0, 0)),
            Some(utc(2026, 12, 1, 3, 0, 0))
        );
        assert_eq!(
            s.latest_at_or_before(utc(2026, 12, 1, 2, 59, 59)),
            Some(utc(2026, 11, 30, 3, 0, 0))
        );
    }

    #[test]
    fn berlin_spring_forward_fixed_time_in_the_gap_fires_right_after_it() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist that day.
        let s = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            next_n(&s, utc(2026, 3, 27, 12, 0, 0), 3),
            vec![
                utc(2026, 3, 28, 1, 30, 0), // 02:30 CET
                utc(2026, 3, 29, 1, 0, 0),  // 03:00 CEST, the first instant after the gap
                utc(2026, 3, 30, 0, 30, 0), // 02:30 CEST
            ]
        );
    }

    #[test]
    fn berlin_fall_back_fixed_time_in_the_repeated_hour_fires_once() {
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET, so 02:30 happens twice.
        let s = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            next_n(&s, utc(2026, 10, 24, 12, 0, 0), 2),
            vec![
                utc(2026, 10, 25, 0, 30, 0), // 02:30 CEST, the first pass only
                utc(2026, 10, 26, 1, 30, 0), // 02:30 CET
            ]
        );
    }

    #[test]
    fn berlin_stepped_minutes_follow_real_time_through_both_transitions() {
        let s = cron("*/30 * * * *", "Europe/Berlin");
        // Spring: 01:30 CET is followed by 03:00 CEST, one real half hour later.
        assert_eq!(
            next_n(&s, utc(2026, 3, 29, 0, 0, 0), 3),
            vec![
                utc(2026, 3, 29, 0, 30, 0),
                utc(2026, 3, 29, 1, 0, 0),
                utc(2026, 3, 29, 1, 30, 0),
            ]
        );
        // Autumn: both passes of 02:00-02:59 fire, again every real half hour.
        assert_eq!(
            next_n(&s, utc(2026, 10, 24, 23, 45, 0), 5),
            vec![
                utc(2026, 10, 25, 0, 0, 0),
                utc(2026, 10, 25, 0, 30, 0),
                utc(2026, 10, 25, 1, 0, 0),
                utc(2026, 10, 25, 1, 30, 0),
                utc(2026, 10, 25, 2, 0, 0),
            ]
        );
    }

    #[test]
    fn every_is_aligned_to_the_epoch() {
        let s = match Schedule::every(Duration::from_secs(15 * 60)) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            s.next_after(utc(2026, 12, 1, 10, 7, 12)),
            Some(utc(2026, 12, 1, 10, 15, 0))
        );
        assert_eq!(
            s.latest_at_or_before(utc(2026, 12, 1, 10, 7, 12)),
            Some(utc(2026, 12, 1, 10, 0, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 12, 1, 10, 15, 0)),
            Some(utc(2026, 12, 1, 10, 30, 0))
        );
    }

    #[test]
    fn slots_in_counts_and_lists_a_range() {
        let every = match Schedule::every(Duration::from_secs(3600)) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let hourly = cron("0 * * * *", "UTC");
        for s in [&every, &hourly] {
            let range = s.slots_in(utc(2026, 12, 1, 0, 0, 0), utc(2026, 12, 1, 5, 30, 0), 2);
            assert_eq!(range.count, 5, "{s}");
            assert!(!range.count_capped);
            assert_eq!(
                range.listed,
                vec![utc(2026, 12, 1, 1, 0, 0), utc(2026, 12, 1, 2, 0, 0)]
            );
            assert_eq!(range.latest, Some(utc(2026, 12, 1, 5, 0, 0)));
            let empty = s.slots_in(utc(2026, 12, 1, 5, 0, 0), utc(2026, 12, 1, 5, 30, 0), 2);
            assert_eq!(empty.count, 0);
            assert_eq!(empty.latest, None);
        }
    }

    #[test]
    fn cron_errors_name_the_expression() {
        for bad in [
            "",
            "not a cron",
            "61 * * * *",
            "* * * *",
            "0 25 * * *",
            "0 0 * 13 *",
        ] {
            match Schedule::cron(bad, "UTC") {
                Err(e @ ScheduleError::Cron { .. }) => {
                    assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
                    assert!(std::error::Error::source(&e).is_some());
                }
                other => panic!("{bad:?}: expected a cron error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_cron_that_never_fires_is_refused() {
        match Schedule::cron("0 0 30 2 *", "UTC") {
            Err(ScheduleError::NeverFires { .. }) | Err(ScheduleError::Cron { .. }) => {}
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn unknown_time_zones_and_bad_intervals_are_clear_errors() {
        match Schedule::cron("0 12 * * *", "Mars/Olympus_Mons") {
            Err(e @ ScheduleError::TimeZone(_)) => assert!(e.to_string().contains("Mars")),
            other => panic!("expected a time-zone error, got {other:?}"),
        }
        for bad in [Duration::ZERO, Duration::from_millis(1500)] {
            assert!(matches!(
                Schedule::every(bad),
                Err(ScheduleError::Interval(_))
            ));
        }
    }

    fn arb_schedule() -> impl Strategy<Value = Schedule> {
        let zones = prop::sample::select(vec![
            "UTC",
            "Europe/Berlin",
            "Asia/Seoul",
            "America/New_York",
            "Australia/Lord_Howe",
        ]);
        let exprs = prop::sample::select(vec![
            "0 12 * * *",
            "30 2 * * *",
            "*/30 * * * *",
            "15 1-3 * * *",
            "0 0 1 * *",
            "0 9 * * MON-FRI",
            "*/7 * * * * *",
        ]);
        prop_oneof![
            (exprs, zones).prop_map(|(e, z)| cron(e, z)),
            (1u64..200_000).prop_map(|secs| match Schedule::every(Duration::from_secs(secs)) {
                Ok(s) => s,
                Err(e) => panic!("{e}"),
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// No slot lies strictly between the latest slot at or before `t` and the next one
        /// after `t`, whatever the zone or transition: the scheduler neither skips nor repeats.
        #[test]
        fn next_and_latest_bracket_every_instant(
            s in arb_schedule(),
            secs in 946_684_800i64..4_102_444_800i64,
        ) {
            let t = DateTime::from_timestamp(secs, 0).unwrap_or_default();
            let next = s.next_after(t);
            prop_assert!(next.is_some());
            let next = next.unwrap_or_default();
            prop_assert!(next > t);
            if let Some(latest) = s.latest_at_or_before(t) {
                prop_assert!(latest <= t);
                prop_assert_eq!(s.next_after(latest), Some(next));
                prop_assert_eq!(s.latest_at_or_before(latest), Some(latest));
            }
            prop_assert_eq!(s.latest_at_or_before(next), Some(next));
            if let Some(step) = s.interval() {
                prop_assert_eq!(next.timestamp() % step.num_seconds(), 0);
            }
        }

        /// Counting a range agrees with walking it slot by slot.
        #[test]
        fn slots_in_agrees_with_walking_next_after(
            s in arb_schedule(),
            start in 946_684_800i64..4_102_444_800i64,
            length in 0i64..200_000,
        ) {
            let after = DateTime::from_timestamp(start, 0).unwrap_or_default();
            let until = DateTime::from_timestamp(start + length, 0).unwrap_or_default();
            let mut walked = Vec::new();
            let mut cursor = after;
            while let Some(slot) = s.next_after(cursor).filter(|slot| *slot <= until) {
                walked.push(slot);
                cursor = slot;
                if walked.len() > 5_000 {
                    break;
                }
            }
            prop_assume!(walked.len() <= 5_000);
            let range = s.slots_in(after, until, 3);
            prop_assert_eq!(range.count, walked.len() as u64);
            prop_assert_eq!(&range.listed[..], &walked[..walked.len().min(3)]);
            prop_assert_eq!(range.latest, walked.last().copied());
        }

        /// Arbitrary text never panics the parser; it is accepted or refused with an error.
        #[test]
        fn any_text_is_accepted_or_refused(expr in ".{0,40}", tz in "[A-Za-z/_]{0,20}") {
            let _ = Schedule::cron(&expr, &tz);
            let _ = Schedule::cron(&expr, "UTC");
        }
    }
}

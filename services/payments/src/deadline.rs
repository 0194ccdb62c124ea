//! Payment deadlines against the storefront's auto-cancel.
//!
//! The storefront cancels an unpaid order `auto_cancel_after` after it was placed (906, from
//! `created_at`; `STOREFRONT_AUTO_CANCEL_AFTER_SECS`, default 30 min). A payment method must
//! therefore stop taking money before that instant, or the customer pays for a cancelled order.
//! The relation this module enforces, for every attempt:
//!
//! ```text
//! end of the bank's validity  <=  order placed + auto_cancel_after - margin
//! ```
//!
//! - ATM: `ATMParam.ExpireDate` is a *date* (`yyyyMMdd`, bank local time); the account takes
//!   transfers until the end of that day. We pick the latest date whose end satisfies the
//!   relation, at most `atm_max_days` after today; if even today ends too late, ATM is not
//!   offered for this order (409 with the reason). With the storefront's default 30 minutes ATM is
//!   effectively unavailable: deployments that offer ATM set the storefront's auto-cancel to
//!   days and this service's `PAYMENTS_STOREFRONT_AUTO_CANCEL_AFTER_SECS` to the same value
//!   (checked at start-up, see [`Deadlines::startup_warnings`]).
//! - Card: `CardParam.ExpMinutes` (1-30) is the card page's life from now; we use the configured
//!   minutes, cut to what is left before the relation's bound.
//!
//! So the storefront never cancels an order while its account or card page is still valid, and
//! once that validity has ended unpaid the sweep marks the attempt `expired` and the
//! storefront's own auto-cancel (later, by construction) cancels the order.

use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};

/// The settings the relation needs.
#[derive(Debug, Clone)]
pub struct Deadlines {
    /// The storefront's `STOREFRONT_AUTO_CANCEL_AFTER_SECS`.
    pub auto_cancel_after: Duration,
    /// Safety margin before the auto-cancel (clock skew, the storefront's sweep interval).
    pub margin: Duration,
    /// Longest ATM validity in days after today (bank local), even if the auto-cancel allows more.
    pub atm_max_days: u32,
    /// Card page validity wished for (1-30 minutes).
    pub card_minutes: u8,
    /// The bank's local offset from UTC in hours (Taiwan +8).
    pub utc_offset_hours: i64,
}

/// Why a method cannot be offered for this order now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("ATM is not offered: the virtual account would stay valid until {account_end} (end of the bank's day) but the storefront cancels this unpaid order at {cancel_at}; raise STOREFRONT_AUTO_CANCEL_AFTER_SECS (and PAYMENTS_STOREFRONT_AUTO_CANCEL_AFTER_SECS) to at least a day, or pay by card")]
    Atm {
        account_end: DateTime<Utc>,
        cancel_at: DateTime<Utc>,
    },
    #[error("card payment is no longer possible: the storefront cancels this unpaid order at {cancel_at}")]
    Card { cancel_at: DateTime<Utc> },
}

impl Deadlines {
    fn chrono(d: Duration) -> ChronoDuration {
        ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
    }

    /// The last instant a payment may be taken for an order placed at `placed`.
    pub fn bound(&self, placed: DateTime<Utc>) -> DateTime<Utc> {
        placed + Self::chrono(self.auto_cancel_after) - Self::chrono(self.margin)
    }

    /// When the storefront cancels the order if it stays unpaid.
    pub fn cancel_at(&self, placed: DateTime<Utc>) -> DateTime<Utc> {
        placed + Self::chrono(self.auto_cancel_after)
    }

    /// The end (exclusive, UTC) of the bank day `date`: the next local midnight.
    pub fn end_of_bank_day(&self, date: NaiveDate) -> DateTime<Utc> {
        let next = date.succ_opt().unwrap_or(date).and_hms_opt(0, 0, 0);
        next.map_or(DateTime::<Utc>::MAX_UTC, |t| {
            (t - ChronoDuration::hours(self.utc_offset_hours)).and_utc()
        })
    }

    fn bank_today(&self, now: DateTime<Utc>) -> NaiveDate {
        (now + ChronoDuration::hours(self.utc_offset_hours)).date_naive()
    }

    /// `ATMParam.ExpireDate` for an order placed at `placed`, asked for at `now`, with the end
    /// of its validity.
    pub fn atm_expire_date(
        &self,
        placed: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(NaiveDate, DateTime<Utc>), Unavailable> {
        let today = self.bank_today(now);
        let bound = self.bound(placed);
        let mut best = None;
        for days in 0..=self.atm_max_days {
            let Some(date) = today.checked_add_days(chrono::Days::new(u64::from(days))) else {
                break;
            };
            let end = self.end_of_bank_day(date);
            if end <= bound {
                best = Some((date, end));
            } else {
                break;
            }
        }
        best.ok_or(Unavailable::Atm {
            account_end: self.end_of_bank_day(today),
            cancel_at: self.cancel_at(placed),
        })
    }

    /// `CardParam.ExpMinutes` for an order placed at `placed`, asked for at `now`, with the end
    /// of the card page's validity.
    pub fn card_minutes(
        &self,
        placed: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(u8, DateTime<Utc>), Unavailable> {
        let left = (self.bound(placed) - now).num_minutes();
        let minutes = left.min(i64::from(self.card_minutes.clamp(1, 30)));
        if minutes < 1 {
            return Err(Unavailable::Card {
                cancel_at: self.cancel_at(placed),
            });
        }
        let minutes = u8::try_from(minutes).unwrap_or(30);
        Ok((minutes, now + ChronoDuration::minutes(i64::from(minutes))))
    }

    /// What start-up should tell the operator about the relation.
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.auto_cancel_after < self.margin + Duration::from_secs(24 * 3600) {
            out.push(format!(
                "ATM is offered only to orders whose bank day ends before their auto-cancel: with PAYMENTS_STOREFRONT_AUTO_CANCEL_AFTER_SECS={} (must equal the storefront's STOREFRONT_AUTO_CANCEL_AFTER_SECS) and a margin of {} s, ATM needs at least {} s to be offered all day",
                self.auto_cancel_after.as_secs(),
                self.margin.as_secs(),
                24 * 3600 + self.margin.as_secs()
            ));
        }
        if self.auto_cancel_after <= self.margin + Duration::from_secs(60) {
            out.push(format!(
                "card payment cannot be offered: the auto-cancel ({} s) leaves less than a minute after the margin ({} s)",
                self.auto_cancel_after.as_secs(),
                self.margin.as_secs()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(auto: u64) -> Deadlines {
        Deadlines {
            auto_cancel_after: Duration::from_secs(auto),
            margin: Duration::from_secs(300),
            atm_max_days: 3,
            card_minutes: 10,
            utc_offset_hours: 8,
        }
    }

    #[test]
    fn default_thirty_minutes_refuses_atm_and_cuts_card() {
        let placed = DateTime::parse_from_rfc3339("2026-12-01T02:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert!(d(1800).atm_expire_date(placed, placed).is_err());
        let (m, _) = d(1800).card_minutes(placed, placed).unwrap_or((0, placed));
        assert_eq!(m, 10);
        let late = placed + ChronoDuration::minutes(20);
        let (m, _) = d(1800).card_minutes(placed, late).unwrap_or((0, placed));
        assert_eq!(m, 5);
        assert!(d(1800)
            .card_minutes(placed, placed + ChronoDuration::minutes(26))
            .is_err());
    }

    #[test]
    fn three_days_gives_a_date_ending_before_the_cancel() {
        // 2026-12-01 10:00 Taiwan = 02:00 UTC; cancel at 12-04 02:00 UTC (10:00 Taiwan);
        // bound 01:55 UTC; the latest bank day ending before it is 12-03 (ends 12-03 16:00 UTC).
        let placed = DateTime::parse_from_rfc3339("2026-12-01T02:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let r = d(3 * 86400).atm_expire_date(placed, placed);
        let Ok((date, end)) = r else {
            panic!("expected a date, got {r:?}");
        };
        assert_eq!(date.to_string(), "2026-12-03");
        assert_eq!(end.to_rfc3339(), "2026-12-03T16:00:00+00:00");
    }

    proptest! {
        #[test]
        fn the_account_always_ends_before_the_cancel(
            placed_s in 1_700_000_000i64..1_900_000_000,
            wait_s in 0i64..200_000,
            auto in 0u64..1_000_000,
        ) {
            let placed = DateTime::from_timestamp(placed_s, 0).unwrap_or_default();
            let now = placed + ChronoDuration::seconds(wait_s);
            let dl = d(auto);
            if let Ok((_, end)) = dl.atm_expire_date(placed, now) {
                prop_assert!(end <= dl.cancel_at(placed));
                prop_assert!(end > now);
            }
            if let Ok((m, end)) = dl.card_minutes(placed, now) {
                prop_assert!((1..=30).contains(&m));
                prop_assert!(end <= dl.cancel_at(placed));
            }
        }
    }
}

//! The scheduler's notion of time. Slots, leases, retry delays and retention all read this clock,
//! so a test can drive a whole day of schedules with a [`ManualClock`] without waiting for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

/// A future returned by [`Clock::sleep_until`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Wall-clock time and sleeping until an instant of it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_>;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    /// Sleeps are cut into steps of at most this, so a wall clock that is stepped (NTP, a
    /// suspended VM) is noticed within one step instead of after the whole monotonic sleep.
    const MAX_STEP: Duration = Duration::from_secs(30);
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                let left = deadline - Utc::now();
                let Ok(left) = left.to_std() else {
                    return;
                };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(Self::MAX_STEP)).await;
            }
        })
    }
}

/// A clock that only moves when the test moves it; advancing it wakes every sleeper whose
/// deadline has come.
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    now: Mutex<DateTime<Utc>>,
    changed: watch::Sender<()>,
    sleepers: AtomicUsize,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        let (changed, _) = watch::channel(());
        ManualClock {
            inner: Arc::new(ManualInner {
                now: Mutex::new(start),
                changed,
                sleepers: AtomicUsize::new(0),
            }),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        self.update(|now| now.checked_add_signed(by).unwrap_or(now));
    }

    /// Sets the clock to `to` (earlier or later).
    pub fn set(&self, to: DateTime<Utc>) {
        self.update(|_| to);
    }

    /// How many [`Clock::sleep_until`] futures are waiting right now. A test waits for the
    /// number of loops it started to be asleep before it advances the clock, so that every
    /// loop sees the new time at once.
    pub fn sleepers(&self) -> usize {
        self.inner.sleepers.load(Ordering::SeqCst)
    }

    fn update(&self, f: impl FnOnce(DateTime<Utc>) -> DateTime<Utc>) {
        {
            let mut now = self.inner.now.lock().unwrap_or_else(|p| p.into_inner());
            *now = f(*now);
        }
        self.inner.changed.send_replace(());
    }
}

/// Counts a sleeper while it waits.
struct SleeperGuard<'a>(&'a AtomicUsize);

impl Drop for SleeperGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.inner.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        Box::pin(async move {
            // Subscribe before reading the time: an advance between the two is not lost.
            let mut changed = self.inner.changed.subscribe();
            if self.now() >= deadline {
                return;
            }
            self.inner.sleepers.fetch_add(1, Ordering::SeqCst);
            let _guard = SleeperGuard(&self.inner.sleepers);
            while self.now() < deadline {
                if changed.changed().await.is_err() {
                    // The sender lives as long as the clock; it cannot go away while we hold it.
                    return;
                }
            }
        })
    }
}

/// `t + d`, saturating at the end of representable time.
pub(crate) fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, saturating at the start of representable time.
pub(crate) fn sub(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced_past_their_deadline() {
        let start = DateTime::<Utc>::UNIX_EPOCH;
        let clock = ManualClock::new(start);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(
                async move { clock.sleep_until(add(start, Duration::from_secs(60))).await },
            )
        };
        while clock.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        assert_eq!(clock.sleepers(), 1);
        clock.advance(Duration::from_secs(1));
        let woke = tokio::time::timeout(Duration::from_secs(10), sleeper).await;
        assert!(matches!(woke, Ok(Ok(()))));
        assert_eq!(clock.sleepers(), 0);
    }

    #[tokio::test]
    async fn a_deadline_already_passed_returns_at_once() {
        let clock = ManualClock::new(DateTime::<Utc>::UNIX_EPOCH);
        clock.sleep_until(DateTime::<Utc>::UNIX_EPOCH).await;
        assert_eq!(clock.sleepers(), 0);
    }
}

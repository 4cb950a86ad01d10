//! Time, one type end to end: every moment past the edge is a [`jiff::Timestamp`], and [`Clock`] reads it.
//!
//! Due times must mean the same after a restart, so they are wall-clock moments; waiting is done on tokio's
//! monotonic clock. [`Clock`] derives one from the other, which keeps them consistent and lets unit tests run
//! the scheduler on tokio's paused clock: advancing it advances [`Clock::now`] too. Moments become integers
//! only inside a store backend, as the way it writes them down.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall0: Timestamp,
    mono0: Instant,
}

impl Clock {
    /// A clock reading the real time now.
    pub fn system() -> Self {
        Self::starting_at(Timestamp::now())
    }

    /// A clock that reads `wall` now and advances with tokio's clock.
    pub fn starting_at(wall: Timestamp) -> Self {
        Self {
            wall0: wall,
            mono0: Instant::now(),
        }
    }

    /// Now, to the millisecond (what the store keeps).
    pub fn now(&self) -> Timestamp {
        let ms = self.wall0.as_millisecond() + self.mono0.elapsed().as_millis() as i64;
        Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX)
    }

    /// The tokio instant at which the clock reads `wall` (now, if that is in the past).
    pub fn instant_at(&self, wall: Timestamp) -> Instant {
        let offset = until(self.wall0, wall);
        (self.mono0 + offset).max(Instant::now())
    }
}

/// `t` plus a std duration, saturating at the end of time.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// How long from `from` until `to`; zero when `to` is not later.
pub fn until(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// Milliseconds from `from` to `to`, negative when `to` is earlier: for log fields and answers.
pub fn millis_between(from: Timestamp, to: Timestamp) -> i64 {
    to.as_millisecond() - from.as_millisecond()
}

/// A moment from milliseconds since the Unix epoch, clamped to what [`Timestamp`] can hold (store rows).
pub fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Writes a moment as RFC 3339 (`2026-11-26T09:30:00Z`) in JSON answers.
pub fn serialize_rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_saturates_and_until_never_goes_negative() {
        let t = from_millis(1_000);
        assert_eq!(add(t, Duration::from_millis(500)), from_millis(1_500));
        assert_eq!(add(Timestamp::MAX, Duration::from_secs(1)), Timestamp::MAX);
        assert_eq!(until(t, from_millis(1_250)), Duration::from_millis(250));
        assert_eq!(until(t, from_millis(10)), Duration::ZERO);
        assert_eq!(millis_between(t, from_millis(10)), -990);
        assert_eq!(from_millis(i64::MAX), Timestamp::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_advances_with_tokio() {
        let clock = Clock::starting_at(from_millis(5_000));
        tokio::time::advance(Duration::from_millis(1_234)).await;
        assert_eq!(clock.now(), from_millis(6_234));
        let at = clock.instant_at(from_millis(7_000));
        assert_eq!(at - Instant::now(), Duration::from_millis(766));
    }
}

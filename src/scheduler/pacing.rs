//! Pacing: a token bucket per session, and the retry backoff.
//!
//! The bucket lets a session send `burst` receipts at once after being idle, then `rate` per second; a 429
//! pauses it for as long as the API asked. Backoff is exponential with full jitter: the wait before retry `n`
//! is drawn uniformly from zero to `min(max, initial * 2^(n-1))`, so many failing receipts spread out instead of
//! retrying in step.

use std::time::Duration;

use rand::{Rng, RngExt};

use crate::settings::Rate;

#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    last_ms: i64,
    paused_until_ms: i64,
}

impl Bucket {
    pub fn new(burst: u32, now_ms: i64) -> Self {
        Self {
            tokens: burst as f64,
            last_ms: now_ms,
            paused_until_ms: i64::MIN,
        }
    }

    /// Takes a token, or says when one will be there.
    pub fn try_take(&mut self, rate: Rate, burst: u32, now_ms: i64) -> Result<(), i64> {
        if now_ms < self.paused_until_ms {
            return Err(self.paused_until_ms);
        }
        let Rate::PerSecond(per_s) = rate else {
            return Ok(());
        };
        let elapsed = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * per_s).min(burst as f64);
        self.last_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait_ms = ((1.0 - self.tokens) / per_s * 1000.0).ceil() as i64;
            Err(now_ms + wait_ms.max(1))
        }
    }

    /// Stops the session until `until_ms` (a 429 told us to) and empties the bucket, so it restarts gently.
    pub fn pause(&mut self, until_ms: i64) {
        self.paused_until_ms = self.paused_until_ms.max(until_ms);
        self.tokens = 0.0;
        self.last_ms = self.last_ms.max(until_ms);
    }
}

/// The ceiling of the wait before retry `attempt` (1 = the first retry).
pub fn backoff_ceiling(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
    initial.saturating_mul(factor).min(max)
}

/// The wait before retry `attempt`: full jitter under [`backoff_ceiling`].
pub fn backoff(attempt: u32, initial: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let ceiling = backoff_ceiling(attempt, initial, max).as_millis() as u64;
    Duration::from_millis(rng.random_range(0..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::new(3, 0);
        let rate = Rate::PerSecond(2.0);
        for _ in 0..3 {
            assert_eq!(b.try_take(rate, 3, 0), Ok(()));
        }
        assert_eq!(b.try_take(rate, 3, 0), Err(500));
        assert_eq!(b.try_take(rate, 3, 500), Ok(()));
        assert_eq!(b.try_take(rate, 3, 600), Err(1000));
    }

    #[test]
    fn an_unlimited_bucket_never_waits_unless_paused() {
        let mut b = Bucket::new(1, 0);
        for _ in 0..1000 {
            assert_eq!(b.try_take(Rate::Off, 1, 0), Ok(()));
        }
        b.pause(5_000);
        assert_eq!(b.try_take(Rate::Off, 1, 10), Err(5_000));
        assert_eq!(b.try_take(Rate::Off, 1, 5_000), Ok(()));
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling_with_jitter_below_it() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(1));
        let ceilings: Vec<u128> = (1..=6)
            .map(|a| backoff_ceiling(a, i, m).as_millis())
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff_ceiling(200, i, m), m);
        let mut rng = rand::rng();
        for attempt in 1..10 {
            assert!(backoff(attempt, i, m, &mut rng) <= backoff_ceiling(attempt, i, m));
        }
    }
}

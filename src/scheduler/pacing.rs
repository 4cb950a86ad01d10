//! Pacing: a token bucket per session, and the retry backoff.
//!
//! The bucket lets a session send `burst` receipts at once after being idle, then `rate` per second; a 429
//! pauses it for as long as the API asked. Backoff is exponential with full jitter: the wait before retry `n`
//! is drawn uniformly from zero to `min(max, initial * 2^(n-1))`, so many failing receipts spread out instead of
//! retrying in step.

use std::time::Duration;

use jiff::Timestamp;
use rand::{Rng, RngExt};
use serde::Deserialize;

use crate::time::{add, until};

/// A sending rate: so many calls per second, or no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Off,
    PerSecond(f64),
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "off" {
            return Ok(Rate::Off);
        }
        let hint = || format!("`{s}` is not a rate; write \"N/s\", \"N/min\", \"N/h\" or \"off\"");
        let (n, unit) = s.split_once('/').ok_or_else(hint)?;
        let n: f64 = n.trim().parse().map_err(|_| hint())?;
        let seconds = match unit.trim() {
            "s" | "sec" => 1.0,
            "min" | "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(hint()),
        };
        if !(n.is_finite() && n > 0.0) {
            return Err(format!("rate `{s}` must be above zero (or \"off\")"));
        }
        Ok(Rate::PerSecond(n / seconds))
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Off => f.write_str("off"),
            Rate::PerSecond(n) => write!(f, "{n}/s"),
        }
    }
}

impl serde::Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    last: Timestamp,
    paused_until: Option<Timestamp>,
}

impl Bucket {
    pub fn new(burst: u32, now: Timestamp) -> Self {
        Self {
            tokens: burst as f64,
            last: now,
            paused_until: None,
        }
    }

    /// Takes a token, or says when one will be there.
    pub fn try_take(&mut self, rate: Rate, burst: u32, now: Timestamp) -> Result<(), Timestamp> {
        if let Some(until) = self.paused_until.filter(|&u| now < u) {
            return Err(until);
        }
        let Rate::PerSecond(per_s) = rate else {
            return Ok(());
        };
        let elapsed = until(self.last, now).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_s).min(burst as f64);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait_ms = ((1.0 - self.tokens) / per_s * 1000.0).ceil() as u64;
            Err(add(now, Duration::from_millis(wait_ms.max(1))))
        }
    }

    /// Stops the session until `until` (a 429 or a refused key told us to) and empties the bucket, so it
    /// restarts gently.
    pub fn pause(&mut self, until: Timestamp) {
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
        self.tokens = 0.0;
        self.last = self.last.max(until);
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

    use crate::time::from_millis as t;

    #[test]
    fn a_bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::new(3, t(0));
        let rate = Rate::PerSecond(2.0);
        for _ in 0..3 {
            assert_eq!(b.try_take(rate, 3, t(0)), Ok(()));
        }
        assert_eq!(b.try_take(rate, 3, t(0)), Err(t(500)));
        assert_eq!(b.try_take(rate, 3, t(500)), Ok(()));
        assert_eq!(b.try_take(rate, 3, t(600)), Err(t(1000)));
    }

    #[test]
    fn an_unlimited_bucket_never_waits_unless_paused() {
        let mut b = Bucket::new(1, t(0));
        for _ in 0..1000 {
            assert_eq!(b.try_take(Rate::Off, 1, t(0)), Ok(()));
        }
        b.pause(t(5_000));
        assert_eq!(b.try_take(Rate::Off, 1, t(10)), Err(t(5_000)));
        assert_eq!(b.try_take(Rate::Off, 1, t(5_000)), Ok(()));
    }

    #[test]
    fn rates_parse_in_every_unit() {
        assert_eq!("off".parse::<Rate>(), Ok(Rate::Off));
        assert_eq!("2/s".parse::<Rate>(), Ok(Rate::PerSecond(2.0)));
        assert_eq!("60/min".parse::<Rate>(), Ok(Rate::PerSecond(1.0)));
        assert_eq!("3600/h".parse::<Rate>(), Ok(Rate::PerSecond(1.0)));
        assert!("0/s".parse::<Rate>().is_err());
        assert!("5".parse::<Rate>().is_err());
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

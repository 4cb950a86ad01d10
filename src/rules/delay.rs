//! Delays written `"5s"` or `"2s..10s"`: a fixed wait, or a uniform random one drawn per chat batch.

use std::time::Duration;

use rand::{Rng, RngExt};

/// A closed range of waits; `min == max` for a fixed delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayRange {
    pub min: Duration,
    pub max: Duration,
}

impl DelayRange {
    pub const ZERO: DelayRange = DelayRange {
        min: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// The delay wherever neither a rule nor `[defaults]` sets one: `"2s..10s"`.
    pub const BUILT_IN: DelayRange = DelayRange {
        min: Duration::from_secs(2),
        max: Duration::from_secs(10),
    };

    /// Parses `"5s"` or `"2s..10s"`; durations as `250ms`, `10s`, `2m`, `1h`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let one = |s: &str| {
            humantime::parse_duration(s.trim()).map_err(|_| {
                format!(
                    "`{}` is not a duration; write it like \"250ms\", \"10s\", \"2m\" or \"1h\"",
                    s.trim()
                )
            })
        };
        let (min, max) = match raw.split_once("..") {
            Some((a, b)) => (one(a)?, one(b)?),
            None => {
                let d = one(raw)?;
                (d, d)
            }
        };
        if min > max {
            return Err(format!(
                "`{raw}` starts above where it ends; write the smaller delay first, like \"2s..10s\""
            ));
        }
        Ok(Self { min, max })
    }

    /// A wait drawn uniformly from the range.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        if self.min == self.max {
            return self.min;
        }
        let (lo, hi) = (self.min.as_millis() as u64, self.max.as_millis() as u64);
        Duration::from_millis(rng.random_range(lo..=hi))
    }
}

impl std::fmt::Display for DelayRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = humantime::format_duration;
        if self.min == self.max {
            write!(f, "{}", h(self.min))
        } else {
            write!(f, "{}..{}", h(self.min), h(self.max))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_ranged_delays_parse() {
        assert_eq!(DelayRange::parse("0s").unwrap(), DelayRange::ZERO);
        let r = DelayRange::parse("2s..10s").unwrap();
        assert_eq!(
            (r.min, r.max),
            (Duration::from_secs(2), Duration::from_secs(10))
        );
        let r = DelayRange::parse("250ms .. 2m").unwrap();
        assert_eq!(
            (r.min, r.max),
            (Duration::from_millis(250), Duration::from_secs(120))
        );
    }

    #[test]
    fn a_range_that_runs_backwards_or_garbage_is_refused() {
        assert!(
            DelayRange::parse("10s..2s")
                .unwrap_err()
                .contains("smaller delay first")
        );
        assert!(
            DelayRange::parse("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(DelayRange::parse("1s..").is_err());
    }

    #[test]
    fn samples_stay_inside_the_range() {
        let r = DelayRange::parse("1s..3s").unwrap();
        let mut rng = rand::rng();
        for _ in 0..1000 {
            let d = r.sample(&mut rng);
            assert!(d >= r.min && d <= r.max, "{d:?}");
        }
    }
}

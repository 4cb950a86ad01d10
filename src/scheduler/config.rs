//! The `[delivery]` settings: how the scheduler paces, retries and bounds its sends.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::pacing::Rate;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// Attempts per receipt before it moves to the dead letters.
    pub max_attempts: u32,
    /// First retry waits up to this long (full jitter); each further one doubles the ceiling.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Ceiling of the retry wait.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// sendSeen calls per session: `"N/s"`, `"N/min"`, `"N/h"` or `"off"`.
    pub rate_per_session: Rate,
    /// Calls a session may make at once after being idle.
    pub burst: u32,
    /// sendSeen calls in flight at once, across sessions.
    pub max_in_flight: usize,
    /// When Wasend refuses a session's API key (401/403), that session pauses this long; others go on.
    #[serde(with = "humantime_serde")]
    pub auth_pause: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            rate_per_session: Rate::PerSecond(1.0),
            burst: 5,
            max_in_flight: 32,
            auth_pause: Duration::from_secs(60),
        }
    }
}

impl DeliverySettings {
    pub(crate) fn check(&self, out: &mut crate::settings::Problems) {
        if self.max_attempts == 0 {
            out.bad("delivery.max_attempts", "must be at least 1");
        }
        if self.backoff_initial.is_zero() || self.backoff_initial > self.backoff_max {
            out.bad(
                "delivery.backoff_initial",
                "must be above zero and at most `delivery.backoff_max`",
            );
        }
        if self.burst == 0 {
            out.bad("delivery.burst", "must be at least 1");
        }
        if self.max_in_flight == 0 {
            out.bad("delivery.max_in_flight", "must be at least 1");
        }
    }
}

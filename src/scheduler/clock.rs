//! The service's clock: wall-clock milliseconds derived from tokio's monotonic `Instant`.
//!
//! Due times are stored as wall-clock milliseconds (they must mean the same after a restart), but waiting is
//! done on tokio's clock. Deriving one from the other keeps them consistent, and lets unit tests run the
//! scheduler on tokio's paused clock: advancing it advances `now_ms` too.

use jiff::Timestamp;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall0_ms: i64,
    mono0: Instant,
}

impl Clock {
    /// A clock reading the real time now.
    pub fn system() -> Self {
        Self::starting_at(Timestamp::now().as_millisecond())
    }

    /// A clock that reads `wall_ms` now and advances with tokio's clock.
    pub fn starting_at(wall_ms: i64) -> Self {
        Self {
            wall0_ms: wall_ms,
            mono0: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.wall0_ms + self.mono0.elapsed().as_millis() as i64
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from_millisecond(self.now_ms()).unwrap_or(Timestamp::MAX)
    }

    /// The tokio instant at which the clock reads `wall_ms` (now, if that is in the past).
    pub fn instant_at(&self, wall_ms: i64) -> Instant {
        let offset = (wall_ms - self.wall0_ms).max(0) as u64;
        (self.mono0 + std::time::Duration::from_millis(offset)).max(Instant::now())
    }
}

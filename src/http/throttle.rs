//! Throttled credentials: wrong console sign-ins and admin or bot tokens count per client address, and an
//! address that made `server.auth_failures` of them within `server.auth_failure_window` is locked out for a
//! while: every attempt from it, right or wrong, answers 429 with `Retry-After`, so a guess cannot be told
//! apart from the right token while locked (no oracle). The lock lasts 1 s, then doubles with each further
//! failure up to 15 minutes. A right credential outside a lock forgets the address's failures.
//!
//! The table is per replica and bounded: at most [`MAX_CLIENTS`] addresses, the least recently seen forgotten
//! first, so a flood from many addresses costs bounded memory.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

/// Client addresses remembered at most.
pub const MAX_CLIENTS: usize = 10_000;
/// The first lock.
const FIRST_LOCK: Duration = Duration::from_secs(1);
/// The longest lock.
const LONGEST_LOCK: Duration = Duration::from_secs(15 * 60);

/// One address's record.
#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

pub struct AuthThrottle {
    max_failures: u32,
    window: Duration,
    clients: Mutex<LruCache<IpAddr, Record>>,
}

impl AuthThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self::with_capacity(max_failures, window, MAX_CLIENTS)
    }

    /// As `server.auth_failures` and `server.auth_failure_window` say.
    pub fn from_settings(server: &crate::settings::ServerSettings) -> Self {
        Self::new(server.auth_failures, server.auth_failure_window)
    }

    fn with_capacity(max_failures: u32, window: Duration, capacity: usize) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            clients: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).expect("capacity above zero"),
            )),
        }
    }

    /// `Err(wait)` while `client` is locked out: answer 429 with this `Retry-After`, check nothing.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        match clients.get(&client).and_then(|r| r.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// A wrong credential from `client`; answers the lock it now has, if any.
    pub fn fail(&self, client: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let record = clients.get_or_insert_mut(client, || Record {
            failures: 0,
            last_failure: now,
            locked_until: None,
        });
        if now.duration_since(record.last_failure) > self.window {
            record.failures = 0;
        }
        record.failures += 1;
        record.last_failure = now;
        let over = record.failures.checked_sub(self.max_failures)?;
        let lock = FIRST_LOCK
            .saturating_mul(1 << over.min(20))
            .min(LONGEST_LOCK);
        record.locked_until = Some(now + lock);
        Some(lock)
    }

    /// A right credential from `client`: its failures are forgotten.
    pub fn succeed(&self, client: IpAddr) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop(&client);
    }
}

/// Whole seconds to put in `Retry-After`, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[tokio::test(start_paused = true)]
    async fn failures_lock_an_address_for_one_second_then_doubling_up_to_fifteen_minutes() {
        let t = AuthThrottle::new(3, Duration::from_secs(900));
        assert_eq!((t.fail(ip(1)), t.fail(ip(1))), (None, None));
        assert_eq!(t.check(ip(1)), Ok(()));

        assert_eq!(t.fail(ip(1)), Some(Duration::from_secs(1)));
        assert_eq!(t.check(ip(1)), Err(Duration::from_secs(1)));
        assert_eq!(t.check(ip(2)), Ok(()), "another address is not locked");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(t.check(ip(1)), Ok(()));
        assert_eq!(t.fail(ip(1)), Some(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(t.fail(ip(1)), Some(Duration::from_secs(4)));
        for _ in 0..30 {
            tokio::time::advance(Duration::from_secs(1)).await;
            t.fail(ip(1));
        }
        assert_eq!(t.check(ip(1)), Err(LONGEST_LOCK));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_age_out_after_the_window_and_a_success_forgets_them() {
        let t = AuthThrottle::new(2, Duration::from_secs(60));
        t.fail(ip(1));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(t.fail(ip(1)), None, "the first failure aged out");

        t.succeed(ip(1));
        assert_eq!(t.fail(ip(1)), None, "the success forgot the second");
        assert_eq!(t.fail(ip(1)), Some(FIRST_LOCK));
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_forgets_the_least_recently_seen_address_first() {
        let t = AuthThrottle::with_capacity(1, Duration::from_secs(60), 2);
        t.fail(ip(1));
        t.fail(ip(2));
        t.check(ip(1)).unwrap_err();
        t.fail(ip(3));

        assert!(t.check(ip(1)).is_err(), "recently seen: kept");
        assert_eq!(t.check(ip(2)), Ok(()), "least recently seen: forgotten");
        assert!(t.check(ip(3)).is_err());
    }

    #[test]
    fn retry_after_rounds_up() {
        let s = |ms| retry_after_secs(Duration::from_millis(ms));
        assert_eq!((s(0), s(1), s(1000), s(1001)), (1, 1, 1, 2));
    }
}

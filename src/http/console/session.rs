//! Console sign-in: a session per sign-in, kept in this process's memory and named by a random id in an
//! `HttpOnly`, `SameSite=Strict` cookie (never in a URL or in `localStorage`), with its own CSRF token that
//! every form posts back. Signing out forgets the session; so does a restart (sign in again).
//!
//! A session ends 12 hours after sign-in, or after 30 minutes without a request (an open live feed counts as
//! activity). When it ends, by sign-out or expiry, its live feeds are closed too. Feeds are bounded: at most
//! [`FEEDS_PER_SESSION`] per session and [`FEEDS_IN_ALL`] in all. Over HTTPS the cookie is `Secure` and
//! carries the `__Secure-` prefix, which browsers accept only from a secure origin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The cookie naming the session over plain HTTP.
pub const COOKIE: &str = "console_session";
/// The cookie naming the session over HTTPS.
pub const SECURE_COOKIE: &str = "__Secure-console_session";
/// How long a sign-in lasts at most.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long a session lasts without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// Sessions kept at most; the oldest is forgotten beyond this (a flood of sign-ins costs bounded memory).
const MAX_SESSIONS: usize = 1000;
/// Live feeds one session may hold open.
pub const FEEDS_PER_SESSION: usize = 4;
/// Live feeds open at once, all sessions together.
pub const FEEDS_IN_ALL: usize = 64;

struct Entry {
    csrf: String,
    expires: Instant,
    last_seen: Instant,
    feeds: usize,
    /// Cancelled when the session ends: its feeds stop.
    ended: CancellationToken,
}

impl Entry {
    fn alive(&self, now: Instant) -> bool {
        self.expires > now && now.duration_since(self.last_seen) < IDLE
    }
}

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Entry>,
    feeds: usize,
}

/// The signed-in sessions of this process.
#[derive(Default, Clone)]
pub struct Sessions {
    table: Arc<Mutex<Table>>,
}

/// A signed-in request: its session id and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub id: String,
    pub csrf: String,
}

/// Why a live feed was not opened.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedRefused {
    /// The session ended meanwhile.
    SignedOut,
    /// Too many feeds open (this session's or all).
    TooMany,
}

/// An open live feed: ends with its session; gives its place back when dropped.
pub struct Feed {
    sessions: Sessions,
    id: String,
    /// Cancelled when the session ends.
    pub ended: CancellationToken,
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session; answers the cookie that names it (`Secure` when the browser came over HTTPS).
    pub fn start(&self, secure: bool) -> Cookie<'static> {
        let id = random_token();
        let now = Instant::now();
        let mut table = self.lock();
        table.by_id.retain(|_, e| {
            let keep = e.alive(now);
            if !keep {
                e.ended.cancel();
            }
            keep
        });
        if table.by_id.len() >= MAX_SESSIONS
            && let Some(oldest) = table
                .by_id
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| k.clone())
            && let Some(e) = table.by_id.remove(&oldest)
        {
            e.ended.cancel();
        }
        let entry = Entry {
            csrf: random_token(),
            expires: now + LIFETIME,
            last_seen: now,
            feeds: 0,
            ended: CancellationToken::new(),
        };
        table.by_id.insert(id.clone(), entry);
        Cookie::build((if secure { SECURE_COOKIE } else { COOKIE }, id))
            .path("/ui")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(secure)
            .max_age(LIFETIME.try_into().expect("12 hours fit"))
            .build()
    }

    /// The session the request's cookie names, if it is signed in; the request counts as activity.
    pub fn find(&self, jar: &CookieJar) -> Option<SignedIn> {
        let cookie = jar.get(SECURE_COOKIE).or_else(|| jar.get(COOKIE))?;
        let id = cookie.value();
        let now = Instant::now();
        let mut table = self.lock();
        let entry = table.by_id.get_mut(id).filter(|e| e.alive(now))?;
        entry.last_seen = now;
        Some(SignedIn {
            id: id.to_owned(),
            csrf: entry.csrf.clone(),
        })
    }

    /// Ends the session and its feeds; answers the cookies that clear it in the browser (`Max-Age=0`).
    pub fn end(&self, session: &SignedIn) -> [Cookie<'static>; 2] {
        if let Some(e) = self.lock().by_id.remove(&session.id) {
            e.ended.cancel();
        }
        [COOKIE, SECURE_COOKIE].map(|name| {
            let mut cookie = Cookie::build((name, ""))
                .path("/ui")
                .http_only(true)
                .same_site(SameSite::Strict)
                .max_age(Duration::ZERO.try_into().expect("zero fits"))
                .build();
            cookie.set_secure(name == SECURE_COOKIE);
            cookie
        })
    }

    /// Opens a live feed for `session`, within the bounds.
    pub fn open_feed(&self, session: &SignedIn) -> Result<Feed, FeedRefused> {
        let now = Instant::now();
        let mut table = self.lock();
        let in_all = table.feeds;
        let entry = table
            .by_id
            .get_mut(&session.id)
            .filter(|e| e.alive(now))
            .ok_or(FeedRefused::SignedOut)?;
        if entry.feeds >= FEEDS_PER_SESSION || in_all >= FEEDS_IN_ALL {
            return Err(FeedRefused::TooMany);
        }
        entry.feeds += 1;
        let ended = entry.ended.clone();
        table.feeds += 1;
        Ok(Feed {
            sessions: self.clone(),
            id: session.id.clone(),
            ended,
        })
    }

    /// Whether the session is still signed in; an open feed asks now and then, and keeps it from idling out.
    fn keep_alive(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut table = self.lock();
        match table.by_id.get_mut(id) {
            Some(e) if e.expires > now => {
                e.last_seen = now;
                true
            }
            _ => false,
        }
    }
}

impl Feed {
    /// Completes when the session ends: signed out (at once), or expired (noticed within `every`).
    pub async fn ended(&self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = self.ended.cancelled() => return,
                _ = tick.tick() => if !self.sessions.keep_alive(&self.id) { return },
            }
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let mut table = self.sessions.lock();
        table.feeds -= 1;
        if let Some(e) = table.by_id.get_mut(&self.id) {
            e.feeds -= 1;
        }
    }
}

impl SignedIn {
    /// Whether `given` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| g.as_bytes().ct_eq(self.csrf.as_bytes()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_session_is_found_by_its_cookie_until_it_ends() {
        let sessions = Sessions::default();
        let cookie = sessions.start(false);
        let jar = CookieJar::new().add(cookie.clone());

        let signed_in = sessions.find(&jar).expect("signed in");
        let cleared = sessions.end(&signed_in);

        assert!(cookie.http_only() == Some(true) && cookie.same_site() == Some(SameSite::Strict));
        assert_eq!(cookie.name(), COOKIE);
        assert!(signed_in.csrf_matches(Some(&signed_in.csrf.clone())));
        assert!(!signed_in.csrf_matches(Some("nope")) && !signed_in.csrf_matches(None));
        assert!(sessions.find(&jar).is_none(), "ended");
        for c in &cleared {
            assert_eq!(
                (c.value(), c.max_age().map(|d| d.is_zero())),
                ("", Some(true))
            );
        }
        let forged = CookieJar::new().add(Cookie::new(COOKIE, "0".repeat(64)));
        assert!(sessions.find(&forged).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn over_https_the_cookie_is_secure_and_prefixed() {
        let sessions = Sessions::default();
        let cookie = sessions.start(true);
        assert_eq!(
            (cookie.name(), cookie.secure()),
            (SECURE_COOKIE, Some(true))
        );
        assert!(sessions.find(&CookieJar::new().add(cookie)).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn thirty_idle_minutes_end_a_session_and_requests_keep_it() {
        let sessions = Sessions::default();
        let jar = CookieJar::new().add(sessions.start(false));
        tokio::time::advance(IDLE - Duration::from_secs(1)).await;
        assert!(sessions.find(&jar).is_some(), "a request in time");
        tokio::time::advance(IDLE - Duration::from_secs(1)).await;
        assert!(sessions.find(&jar).is_some(), "the last request counts");
        tokio::time::advance(IDLE).await;
        assert!(sessions.find(&jar).is_none(), "idle for 30 minutes");
    }

    #[tokio::test(start_paused = true)]
    async fn feeds_are_bounded_and_end_with_their_session() {
        let sessions = Sessions::default();
        let jar = CookieJar::new().add(sessions.start(false));
        let me = sessions.find(&jar).unwrap();
        let feeds: Vec<Feed> = (0..FEEDS_PER_SESSION)
            .map(|_| sessions.open_feed(&me).unwrap())
            .collect();
        assert_eq!(sessions.open_feed(&me).err(), Some(FeedRefused::TooMany));
        drop(feeds);
        let feed = sessions.open_feed(&me).expect("places given back");

        sessions.end(&me);

        tokio::time::timeout(
            Duration::from_millis(1),
            feed.ended(Duration::from_secs(10)),
        )
        .await
        .expect("sign-out ends the feed at once");
        assert_eq!(sessions.open_feed(&me).err(), Some(FeedRefused::SignedOut));
    }

    #[tokio::test(start_paused = true)]
    async fn a_feed_ends_when_its_session_expires() {
        let sessions = Sessions::default();
        let jar = CookieJar::new().add(sessions.start(false));
        let me = sessions.find(&jar).unwrap();
        let feed = sessions.open_feed(&me).unwrap();
        let started = Instant::now();
        feed.ended(Duration::from_secs(10)).await;
        let lasted = started.elapsed();
        assert!(
            lasted >= LIFETIME && lasted <= LIFETIME + Duration::from_secs(10),
            "{lasted:?}"
        );
    }
}

//! Console sign-in: a session per sign-in, kept in this process's memory and named by a random id in an
//! `HttpOnly`, `SameSite=Strict` cookie (never in a URL or in `localStorage`), with its own CSRF token that
//! every form posts back. Signing out forgets the session; so does a restart (sign in again).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use subtle::ConstantTimeEq;

/// The cookie naming the session.
pub const COOKIE: &str = "console_session";
/// How long a sign-in lasts.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest is forgotten beyond this (a flood of sign-ins costs bounded memory).
const MAX_SESSIONS: usize = 1000;

struct Entry {
    csrf: String,
    expires: Instant,
}

/// The signed-in sessions of this process.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Entry>>,
}

/// A signed-in request: its session id and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub id: String,
    pub csrf: String,
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    /// Starts a session; answers the cookie that names it (`Secure` when the browser came over HTTPS).
    pub fn start(&self, secure: bool) -> Cookie<'static> {
        let id = random_token();
        let now = Instant::now();
        let mut by_id = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        by_id.retain(|_, e| e.expires > now);
        if by_id.len() >= MAX_SESSIONS
            && let Some(oldest) = by_id
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
        {
            by_id.remove(&oldest);
        }
        let entry = Entry {
            csrf: random_token(),
            expires: now + LIFETIME,
        };
        by_id.insert(id.clone(), entry);
        Cookie::build((COOKIE, id))
            .path("/ui")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(secure)
            .max_age(LIFETIME.try_into().expect("12 hours fit"))
            .build()
    }

    /// The session the request's cookie names, if it is signed in.
    pub fn find(&self, jar: &CookieJar) -> Option<SignedIn> {
        let id = jar.get(COOKIE)?.value();
        let by_id = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let entry = by_id.get(id).filter(|e| e.expires > Instant::now())?;
        Some(SignedIn {
            id: id.to_owned(),
            csrf: entry.csrf.clone(),
        })
    }

    /// Ends the session; answers the cookie that clears it in the browser.
    pub fn end(&self, session: &SignedIn) -> Cookie<'static> {
        self.by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session.id);
        Cookie::build((COOKIE, "")).path("/ui").build()
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

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_ends() {
        let sessions = Sessions::default();
        let cookie = sessions.start(false);
        let jar = CookieJar::new().add(cookie.clone());

        let signed_in = sessions.find(&jar).expect("signed in");
        let cleared = sessions.end(&signed_in);

        assert!(cookie.http_only() == Some(true) && cookie.same_site() == Some(SameSite::Strict));
        assert!(signed_in.csrf_matches(Some(&signed_in.csrf.clone())));
        assert!(!signed_in.csrf_matches(Some("nope")) && !signed_in.csrf_matches(None));
        assert!(sessions.find(&jar).is_none(), "ended");
        assert_eq!(cleared.value(), "");
        let forged = CookieJar::new().add(Cookie::new(COOKIE, "0".repeat(64)));
        assert!(sessions.find(&forged).is_none());
    }
}

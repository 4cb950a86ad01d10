//! What this replica did lately, for the console: a feed of decisions and sends as they happen, and per
//! session the last hour's sends, failures and confirmations by minute and how long its sends are paused.
//!
//! Kept in this process's memory, so every figure here is "this replica" (the store's figures are the
//! cluster's). Nothing here ever holds a message's text: a [`Happening`] names the chat, the message id, the
//! rule and what became of it, no more. The feed costs nothing while nobody watches it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::domain::{ChatId, MessageId, SessionName};

/// Minutes of counts kept per session.
pub const MINUTES: usize = 60;
/// Happenings a slow watcher may fall behind by before it misses some.
const FEED_CAPACITY: usize = 1024;

/// One thing that happened to a message or a session.
#[derive(Debug, Clone, Serialize)]
pub struct Happening {
    pub at: Timestamp,
    pub session: SessionName,
    pub chat: Option<ChatId>,
    pub message_id: Option<MessageId>,
    pub what: What,
    pub rule: Option<Arc<str>>,
    /// Why, in the service's own words (an ignore reason, an API error); never message text.
    pub detail: Option<String>,
}

/// What happened to a message or a session; in the feed as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    /// Decisions on an incoming message.
    Scheduled,
    OnReply,
    Ignored,
    Duplicate,
    /// A send's outcomes.
    Sent,
    Retry,
    Paused,
    Dead,
    /// An ack: a sent receipt confirmed, waiting ones cancelled.
    Confirmed,
    Cancelled,
}

/// One minute's counts of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub sent: u64,
    pub failed: u64,
    pub confirmed: u64,
}

/// One session's last hour, as the overview shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionActivity {
    pub session: SessionName,
    pub last_hour: Counts,
    /// Sends per minute, oldest first, the current minute last.
    pub sent_per_minute: Vec<u64>,
    pub paused_until: Option<Timestamp>,
}

#[derive(Default)]
struct Session {
    /// (minute since the epoch, its counts), oldest first, at most [`MINUTES`].
    minutes: VecDeque<(i64, Counts)>,
    paused_until: Option<Timestamp>,
}

impl Session {
    /// Whether anything here still shows at `now`: a count within the hour, or a pause.
    fn shows(&self, now: Timestamp) -> bool {
        self.minutes
            .back()
            .is_some_and(|(m, _)| minute(now) - m < MINUTES as i64)
            || self.paused_until.is_some_and(|u| u > now)
    }
}

/// The record and the feed. Cheap to clone.
#[derive(Clone)]
pub struct Activity {
    feed: broadcast::Sender<Happening>,
    sessions: Arc<Mutex<HashMap<SessionName, Session>>>,
    /// Sessions recorded at most (`metrics.max_sessions`); past it, further sessions only feed.
    max_sessions: usize,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new(crate::settings::MetricsSettings::default().max_sessions)
    }
}

/// `session`'s record, made if there is room: sessions that no longer show make room first.
fn entry<'a>(
    sessions: &'a mut HashMap<SessionName, Session>,
    session: &SessionName,
    now: Timestamp,
    max: usize,
) -> Option<&'a mut Session> {
    if !sessions.contains_key(session) {
        if sessions.len() >= max {
            sessions.retain(|_, s| s.shows(now));
        }
        if sessions.len() >= max {
            return None;
        }
    }
    Some(sessions.entry(session.clone()).or_default())
}

fn minute(t: Timestamp) -> i64 {
    t.as_second().div_euclid(60)
}

impl Activity {
    /// A record of at most `max_sessions` sessions at once.
    pub fn new(max_sessions: usize) -> Self {
        Self {
            feed: broadcast::channel(FEED_CAPACITY).0,
            sessions: Arc::default(),
            max_sessions,
        }
    }

    /// Whether anybody watches the feed (else a happening need not even be built).
    pub fn watched(&self) -> bool {
        self.feed.receiver_count() > 0
    }

    /// A watcher of happenings from now on.
    pub fn watch(&self) -> broadcast::Receiver<Happening> {
        self.feed.subscribe()
    }

    /// Counts `h` (sends, failures and confirmations count; decisions only feed) and tells the watchers.
    pub fn record(&self, h: Happening) {
        let add = |c: &mut Counts| match h.what {
            What::Sent => c.sent += 1,
            What::Retry | What::Dead => c.failed += 1,
            What::Confirmed => c.confirmed += 1,
            _ => {}
        };
        if matches!(
            h.what,
            What::Sent | What::Retry | What::Dead | What::Confirmed
        ) {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = entry(&mut sessions, &h.session, h.at, self.max_sessions) {
                let m = minute(h.at);
                match s.minutes.back_mut() {
                    Some((last, counts)) if *last == m => add(counts),
                    _ => {
                        let mut counts = Counts::default();
                        add(&mut counts);
                        s.minutes.push_back((m, counts));
                        while s.minutes.len() > MINUTES {
                            s.minutes.pop_front();
                        }
                    }
                }
            }
        }
        if self.watched() {
            let _ = self.feed.send(h);
        }
    }

    /// The session's sends wait until `until` (a 429, or a refused API key).
    pub fn pause(&self, session: &SessionName, now: Timestamp, until: Timestamp) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = entry(&mut sessions, session, now, self.max_sessions) {
            s.paused_until = s.paused_until.max(Some(until));
        }
    }

    /// Every session seen in the last hour (or still paused at `now`), by name.
    pub fn summary(&self, now: Timestamp) -> Vec<SessionActivity> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let current = minute(now);
        let mut out: Vec<SessionActivity> = sessions
            .iter()
            .filter_map(|(name, s)| {
                let mut per_minute = vec![0; MINUTES];
                let mut last_hour = Counts::default();
                for (m, c) in &s.minutes {
                    let age = current - m;
                    if (0..MINUTES as i64).contains(&age) {
                        per_minute[MINUTES - 1 - age as usize] = c.sent;
                        last_hour.sent += c.sent;
                        last_hour.failed += c.failed;
                        last_hour.confirmed += c.confirmed;
                    }
                }
                let paused_until = s.paused_until.filter(|&u| u > now);
                (last_hour != Counts::default() || paused_until.is_some()).then(|| {
                    SessionActivity {
                        session: name.clone(),
                        last_hour,
                        sent_per_minute: per_minute,
                        paused_until,
                    }
                })
            })
            .collect();
        out.sort_by(|a, b| a.session.cmp(&b.session));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_millis;

    fn at(minutes: i64, seconds: i64) -> Timestamp {
        from_millis(1_800_000_000_000 / 60_000 * 60_000 + (minutes * 60 + seconds) * 1000)
    }

    fn happening(what: What, t: Timestamp) -> Happening {
        Happening {
            at: t,
            session: SessionName::parse("s").unwrap(),
            chat: None,
            message_id: None,
            what,
            rule: None,
            detail: None,
        }
    }

    #[test]
    fn counts_fall_into_their_minute_and_age_out_after_an_hour() {
        let a = Activity::default();
        a.record(happening(What::Sent, at(0, 1)));
        a.record(happening(What::Sent, at(0, 59)));
        a.record(happening(What::Dead, at(1, 0)));
        a.record(happening(What::Scheduled, at(1, 0)));
        a.record(happening(What::Sent, at(2, 0)));

        let now = a.summary(at(2, 30));
        let later = a.summary(at(61, 0));
        let gone = a.summary(at(63, 0));

        assert_eq!(now.len(), 1);
        let s = &now[0];
        let counts = (s.last_hour.sent, s.last_hour.failed, s.last_hour.confirmed);
        assert_eq!(counts, (3, 1, 0));
        assert_eq!(s.sent_per_minute[MINUTES - 3..], [2, 0, 1]);
        assert_eq!(later[0].last_hour.sent, 1, "minutes 0 and 1 aged out");
        assert!(gone.is_empty(), "{gone:?}");
    }

    #[test]
    fn the_record_holds_at_most_its_sessions_and_forgets_those_gone_quiet() {
        let a = Activity::new(2);
        let of = |name: &str, t| Happening {
            session: SessionName::parse(name).unwrap(),
            ..happening(What::Sent, t)
        };
        a.record(of("a", at(0, 0)));
        a.record(of("b", at(0, 0)));
        a.record(of("c", at(1, 0)));
        let full: Vec<String> = a
            .summary(at(1, 0))
            .iter()
            .map(|s| s.session.to_string())
            .collect();
        a.record(of("c", at(70, 0)));
        let later: Vec<String> = a
            .summary(at(70, 0))
            .iter()
            .map(|s| s.session.to_string())
            .collect();

        assert_eq!(full, ["a", "b"], "no room for c while a and b show");
        assert_eq!(later, ["c"], "a and b went quiet and made room");
    }

    #[tokio::test]
    async fn watchers_get_every_happening_and_a_pause_shows_until_it_ends() {
        let a = Activity::default();
        let mut feed = a.watch();
        a.record(happening(What::Scheduled, at(0, 0)));
        a.pause(&SessionName::parse("s").unwrap(), at(0, 0), at(5, 0));

        assert_eq!(feed.recv().await.unwrap().what, What::Scheduled);
        assert_eq!(a.summary(at(4, 0))[0].paused_until, Some(at(5, 0)));
        assert!(a.summary(at(5, 0)).is_empty());
    }
}

//! Rules: which messages get blue ticks, after how long, and when.
//!
//! `file` reads and compiles the TOML rule files; `decide(&message, now)` walks the compiled rules top to bottom
//! and the first whose every condition holds decides, else `[defaults]` does. Deciding is pure: no clock, no
//! randomness, no I/O; the random delay is drawn by the caller from the range the decision carries.

mod delay;
pub mod file;
mod parse;
mod pattern;
pub mod reload;
mod window;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use globset::GlobSet;
use jiff::Timestamp;
use serde::Deserialize;

pub use delay::DelayRange;
pub use file::{RuleError, RulesError, compile, load, read_sources, rule_files};
pub use pattern::normalize_chat_pattern;
pub use reload::Reloader;
pub use window::{Window, next_open};

use crate::domain::{ChatId, ChatType, IncomingMessage};

/// What to do with a matching message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Seen,
    Ignore,
    /// Keep the receipt without a timer until a reply of ours in the chat (or the bot endpoint) releases it.
    OnReply,
}

/// What happens to a message that arrives while every window of its rule is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutsideWindows {
    /// Mark it seen when the next window opens, plus the delay.
    Wait,
    /// Never mark it seen.
    Ignore,
}

/// The outcome part of a rule, with what the rule left out filled in from `[defaults]`.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub action: Action,
    pub delay: DelayRange,
    pub read_on_reply: bool,
    /// Empty means always open.
    pub windows: Vec<Window>,
    pub outside_windows: OutsideWindows,
    /// With `action = "on_reply"`: send anyway after this long; without it the receipt expires unsent.
    pub max_wait: Option<std::time::Duration>,
}

impl Outcome {
    /// What applies when `[defaults]` says nothing. The delay is the README's believable range: a file without
    /// `[defaults]` must not mark messages seen the instant they arrive, as a bot would.
    pub const BUILT_IN: Outcome = Outcome {
        action: Action::Seen,
        delay: DelayRange::BUILT_IN,
        read_on_reply: true,
        windows: Vec::new(),
        outside_windows: OutsideWindows::Wait,
        max_wait: None,
    };
}

/// The conditions of a rule; `None` means "any". Pattern lists keep their text for the shadowing check.
#[derive(Debug, Clone)]
pub struct Conditions {
    sessions: Option<(BTreeSet<String>, GlobSet)>,
    chats: Option<(BTreeSet<String>, GlobSet)>,
    senders: Option<(BTreeSet<String>, GlobSet)>,
    chat_types: Option<BTreeSet<ChatType>>,
    text: Option<regex::Regex>,
    has_media: Option<bool>,
}

impl Conditions {
    fn matches(&self, m: &IncomingMessage) -> bool {
        let glob = |c: &Option<(BTreeSet<String>, GlobSet)>, s: &str| {
            c.as_ref().is_none_or(|(_, g)| g.is_match(s))
        };
        // A chat or sender matches by its id (a LID for LID contacts) or by the phone number beside it.
        let either =
            |c: &Option<(BTreeSet<String>, GlobSet)>, id: &ChatId, phone: &Option<ChatId>| {
                glob(c, &id.for_matching()) || phone.as_ref().is_some_and(|p| glob(c, p.as_str()))
            };
        glob(&self.sessions, m.session.as_str())
            && either(&self.chats, &m.chat, &m.chat_phone)
            && either(&self.senders, &m.sender, &m.sender_phone)
            && self
                .chat_types
                .as_ref()
                .is_none_or(|t| t.contains(&m.chat.chat_type()))
            && self.has_media.is_none_or(|h| h == m.has_media)
            && self
                .text
                .as_ref()
                .is_none_or(|r| m.text.as_deref().is_some_and(|t| r.is_match(t)))
    }

    /// True when every message that `later` matches is certainly matched by `self` (so `later`, placed after,
    /// can never decide). Conservative: only same-or-broader condition lists count.
    fn covers(&self, later: &Conditions) -> bool {
        fn list<T: Ord>(a: Option<&BTreeSet<T>>, b: Option<&BTreeSet<T>>) -> bool {
            match (a, b) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => b.is_subset(a),
            }
        }
        list(
            self.sessions.as_ref().map(|s| &s.0),
            later.sessions.as_ref().map(|s| &s.0),
        ) && list(
            self.chats.as_ref().map(|s| &s.0),
            later.chats.as_ref().map(|s| &s.0),
        ) && list(
            self.senders.as_ref().map(|s| &s.0),
            later.senders.as_ref().map(|s| &s.0),
        ) && list(self.chat_types.as_ref(), later.chat_types.as_ref())
            && match (&self.text, &later.text) {
                (None, _) => true,
                (Some(a), Some(b)) => a.as_str() == b.as_str(),
                (Some(_), None) => false,
            }
            && (self.has_media.is_none() || self.has_media == later.has_media)
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Arc<str>,
    pub file: PathBuf,
    pub line: usize,
    conditions: Conditions,
    pub outcome: Outcome,
}

/// The compiled rule set in force.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<Rule>,
    defaults: Outcome,
    source: file::Source,
}

/// Where a rule's delay comes from, as `explain` shows it: `rule`, `defaults` or `built-in default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DelaySource {
    /// The rule's own `delay`.
    Rule,
    /// `[defaults]`.
    Defaults,
    /// Neither: [`DelayRange::BUILT_IN`].
    #[serde(rename = "built-in default")]
    BuiltIn,
}

/// Name under which `[defaults]` decides.
pub const DEFAULTS_RULE: &str = "defaults";

/// What to do with one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Mark it seen at `not_before` plus a delay drawn from `delay`.
    Seen {
        rule: Arc<str>,
        /// Now, or when the rule's next window opens.
        not_before: Timestamp,
        delay: DelayRange,
        read_on_reply: bool,
    },
    Ignore {
        /// `None` when no rule was consulted (our own messages).
        rule: Option<Arc<str>>,
        reason: IgnoreReason,
    },
    /// Keep it, without a timer, until a reply of ours in the chat or the bot endpoint releases it; after
    /// `max_wait` send it anyway, and without one drop it when the dedup window ends.
    OnReply {
        rule: Arc<str>,
        max_wait: Option<std::time::Duration>,
    },
}

impl Decision {
    /// The decision's name in answers, `explain` and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Seen { .. } => "seen",
            Decision::Ignore { .. } => "ignore",
            Decision::OnReply { .. } => "on_reply",
        }
    }
}

/// Why a message will not be marked seen; appears in webhook answers, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    FromMe,
    Rule,
    OutsideWindow,
}

impl IgnoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::FromMe => "from_me",
            IgnoreReason::Rule => "rule",
            IgnoreReason::OutsideWindow => "outside_window",
        }
    }
}

impl Rules {
    /// Number of `[[rules]]` (not counting `[defaults]`).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The `[[rules]]` in the order they are tried.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// What applies when no rule matches.
    pub fn defaults(&self) -> &Outcome {
        &self.defaults
    }

    /// Where the delay of the rule named `rule` (or of `[defaults]`) comes from.
    pub fn delay_source(&self, rule: &str) -> DelaySource {
        self.source.delay_source(rule)
    }

    /// What `check` points out without refusing the rules.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.source.sets_no_defaults() {
            out.push(format!(
                "{} sets nothing in [defaults]: a message no rule decides is marked seen after the \
                 built-in delay of {}; write [defaults] with the action and delay you want",
                file::RULES_FILE,
                DelayRange::BUILT_IN
            ));
        }
        out
    }

    /// The rules as one TOML file (phone numbers written as chat ids); compiling it gives the same rules.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.source).expect("rule sources serialize")
    }

    /// Whether two rule sets say the same thing, written the same way (after normalization).
    pub fn same_as(&self, other: &Rules) -> bool {
        self.source == other.source
    }

    /// Decides what to do with `message` at `now`. Our own messages are never marked seen.
    pub fn decide(&self, message: &IncomingMessage, now: Timestamp) -> Decision {
        if message.from_me {
            return Decision::Ignore {
                rule: None,
                reason: IgnoreReason::FromMe,
            };
        }
        let (name, outcome) = self
            .rules
            .iter()
            .find(|r| r.conditions.matches(message))
            .map_or((Arc::from(DEFAULTS_RULE), &self.defaults), |r| {
                (r.name.clone(), &r.outcome)
            });
        match outcome.action {
            Action::Ignore => {
                return Decision::Ignore {
                    rule: Some(name),
                    reason: IgnoreReason::Rule,
                };
            }
            Action::OnReply => {
                return Decision::OnReply {
                    rule: name,
                    max_wait: outcome.max_wait,
                };
            }
            Action::Seen => {}
        }
        let not_before = if outcome.windows.is_empty() {
            Some(now)
        } else {
            next_open(&outcome.windows, now)
                .filter(|&t| t == now || outcome.outside_windows == OutsideWindows::Wait)
        };
        match not_before {
            Some(not_before) => Decision::Seen {
                rule: name,
                not_before,
                delay: outcome.delay,
                read_on_reply: outcome.read_on_reply,
            },
            None => Decision::Ignore {
                rule: Some(name),
                reason: IgnoreReason::OutsideWindow,
            },
        }
    }
}

#[cfg(test)]
mod tests;

/// The rules in force, swapped whole on reload: readers always see one complete rule set.
#[derive(Clone)]
pub struct LiveRules(Arc<std::sync::RwLock<Arc<Rules>>>);

impl LiveRules {
    pub fn new(rules: Rules) -> Self {
        Self(Arc::new(std::sync::RwLock::new(Arc::new(rules))))
    }

    pub fn get(&self) -> Arc<Rules> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, rules: Rules) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
    }
}

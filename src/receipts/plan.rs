//! Planning, pure: what an authenticated event should become, given the rules in force and the moment. The
//! webhook carries a plan out (`Receipts::take`) and `explain` shows the same plan, so the two cannot differ.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::domain::Event;
use crate::domain::{Ack, IncomingMessage};
use crate::rules::{Decision, DelayRange, IgnoreReason, Rules};
use crate::time::add;

/// Why an event is not marked seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// An event that is not a message or an ack (named as the gateway names it).
    OtherEvent(String),
    /// Our own message: never marked, but it tells that the chat was read (read on reply).
    FromMe,
    /// A rule said `ignore`.
    Rule,
    /// The rule's window is closed and it says to ignore what arrives then.
    OutsideWindow,
    /// An ack of a message we sent: not about what we received.
    AckOfOwnMessage,
    /// An ack below READ (delivered, played on another device is READ too).
    AckNotRead,
    /// The session's gateway cannot mark this kind of chat read (Meta: groups).
    UnsupportedByGateway,
}

impl Ignored {
    /// The stable code in answers and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Ignored::OtherEvent(_) => "event",
            Ignored::FromMe => "from_me",
            Ignored::Rule => "rule",
            Ignored::OutsideWindow => "outside_window",
            Ignored::AckOfOwnMessage => "ack_of_own_message",
            Ignored::AckNotRead => "ack_not_read",
            Ignored::UnsupportedByGateway => "unsupported_by_gateway",
        }
    }

    /// What the sender reads: the code, except for other events, which are named.
    pub fn reason(&self) -> String {
        match self {
            Ignored::OtherEvent(event) => format!("event `{event}` is not a message"),
            other => other.code().into(),
        }
    }
}

impl From<IgnoreReason> for Ignored {
    fn from(reason: IgnoreReason) -> Self {
        match reason {
            IgnoreReason::FromMe => Ignored::FromMe,
            IgnoreReason::Rule => Ignored::Rule,
            IgnoreReason::OutsideWindow => Ignored::OutsideWindow,
        }
    }
}

/// What happens to a held message when its wait ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnreleased {
    /// Sent anyway (the rule's `max_wait`).
    SendAnyway(Duration),
    /// Dropped unsent when the dedup window ends.
    Drop,
}

/// What an event should become.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// A receipt due at a moment drawn from `delay` after `not_before`.
    Schedule {
        rule: Arc<str>,
        /// Now, or when the rule's next window opens.
        not_before: Timestamp,
        delay: DelayRange,
        read_on_reply: bool,
    },
    /// A receipt kept until a reply of ours (or the bot endpoint) releases it; at `until`, `then`.
    Hold {
        rule: Arc<str>,
        until: Timestamp,
        then: WhenUnreleased,
    },
    /// Our own message: the chat's read-on-reply receipts are due now.
    FlushReplies,
    /// This account read a message we received: its chat's waiting receipts up to it are cancelled, a sent
    /// one is confirmed.
    Ack,
    /// Its sender deleted a message: its receipt, when not yet handed to the gateway, is cancelled.
    Forget,
    /// Nothing to mark.
    Ignore {
        reason: Ignored,
        rule: Option<Arc<str>>,
    },
}

/// The plan for `event` at `now`; a held message without `max_wait` waits at most `dedup_window`.
pub fn plan(event: &Event, rules: &Rules, dedup_window: Duration, now: Timestamp) -> Plan {
    match event {
        Event::Message(m) => message(m, rules, dedup_window, now),
        Event::Ack(a) => ack(a),
        Event::Deleted(_) => Plan::Forget,
        Event::Other { event } => Plan::Ignore {
            reason: Ignored::OtherEvent(event.clone()),
            rule: None,
        },
    }
}

fn message(m: &IncomingMessage, rules: &Rules, dedup_window: Duration, now: Timestamp) -> Plan {
    if m.from_me {
        return Plan::FlushReplies;
    }
    if !m.gateway.marks(m.chat.chat_type()) {
        return Plan::Ignore {
            reason: Ignored::UnsupportedByGateway,
            rule: None,
        };
    }
    match rules.decide(m, now) {
        Decision::Seen {
            rule,
            not_before,
            delay,
            read_on_reply,
        } => Plan::Schedule {
            rule,
            not_before,
            delay,
            read_on_reply,
        },
        // No timer that sends: held until a reply, sent anyway at `max_wait`, or dropped when the dedup window
        // ends.
        Decision::OnReply { rule, max_wait } => Plan::Hold {
            rule,
            until: add(now, max_wait.unwrap_or(dedup_window)),
            then: max_wait.map_or(WhenUnreleased::Drop, WhenUnreleased::SendAnyway),
        },
        Decision::Ignore { rule, reason } => Plan::Ignore {
            reason: reason.into(),
            rule,
        },
    }
}

fn ack(a: &Ack) -> Plan {
    let ignore = |reason| Plan::Ignore { reason, rule: None };
    if a.from_me {
        ignore(Ignored::AckOfOwnMessage)
    } else if !a.level.is_read() {
        ignore(Ignored::AckNotRead)
    } else {
        Plan::Ack
    }
}

impl Plan {
    /// The decision's name in answers, `explain` and metrics.
    pub fn decision(&self) -> &'static str {
        match self {
            Plan::Schedule { .. } => "seen",
            Plan::Hold { .. } => "on_reply",
            Plan::Ack => "ack",
            Plan::Forget => "deleted",
            Plan::FlushReplies | Plan::Ignore { .. } => "ignore",
        }
    }

    /// The rule that decided, if one did.
    pub fn rule(&self) -> Option<&Arc<str>> {
        match self {
            Plan::Schedule { rule, .. } | Plan::Hold { rule, .. } => Some(rule),
            Plan::Ignore { rule, .. } => rule.as_ref(),
            Plan::FlushReplies | Plan::Ack | Plan::Forget => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::domain::{AckLevel, BareMessageId, ChatId, MessageId, SessionName};

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn rules(text: &str) -> Rules {
        crate::rules::compile(&[(PathBuf::from("rules.toml"), text.to_string())]).unwrap()
    }

    fn now() -> Timestamp {
        "2026-11-25T10:00:00Z".parse().unwrap()
    }

    fn message(from_me: bool) -> Event {
        let chat = ChatId::parse("491511234567@c.us").unwrap();
        Event::Message(IncomingMessage {
            session: SessionName::parse("default").unwrap(),
            sender: chat.clone(),
            chat,
            id: MessageId::parse("false_491511234567@c.us_A1").unwrap(),
            from_me,
            text: Some("hello".into()),
            has_media: false,
            sent_at: None,
            chat_phone: None,
            sender_phone: None,
            engine: None,
            gateway: crate::domain::Gateway::Wasend,
        })
    }

    fn ack(from_me: bool, level: AckLevel) -> Event {
        Event::Ack(Ack {
            session: SessionName::parse("default").unwrap(),
            chat: ChatId::parse("491511234567@c.us").unwrap(),
            bare: BareMessageId::parse("A1").unwrap(),
            from_me,
            level,
        })
    }

    #[test]
    fn a_message_is_scheduled_held_or_ignored_as_the_rules_say() {
        let seen = rules("[defaults]\ndelay = \"2s..10s\"\n");
        let held = rules("[defaults]\naction = \"on_reply\"\nmax_wait = \"1h\"\n");
        let held_forever = rules("[defaults]\naction = \"on_reply\"\n");
        let ignore = rules("[defaults]\naction = \"ignore\"\n");

        let plan_with = |r: &Rules| plan(&message(false), r, DAY, now());

        assert!(matches!(
            plan_with(&seen),
            Plan::Schedule { not_before, delay, .. } if not_before == now() && delay.max == Duration::from_secs(10)
        ));
        assert_eq!(
            plan_with(&held),
            Plan::Hold {
                rule: "defaults".into(),
                until: add(now(), Duration::from_secs(3600)),
                then: WhenUnreleased::SendAnyway(Duration::from_secs(3600)),
            }
        );
        assert!(matches!(
            plan_with(&held_forever),
            Plan::Hold { until, then: WhenUnreleased::Drop, .. } if until == add(now(), DAY)
        ));
        assert!(matches!(
            plan_with(&ignore),
            Plan::Ignore {
                reason: Ignored::Rule,
                ..
            }
        ));
    }

    #[test]
    fn our_own_messages_flush_and_acks_act_only_when_read_and_not_ours() {
        let r = rules("[defaults]\ndelay = \"0s\"\n");
        let p = |e: &Event| plan(e, &r, DAY, now());

        assert_eq!(p(&message(true)), Plan::FlushReplies);
        assert_eq!(p(&ack(false, AckLevel::Read)), Plan::Ack);
        assert_eq!(p(&ack(false, AckLevel::Played)), Plan::Ack);
        let reason = |plan: Plan| match plan {
            Plan::Ignore { reason, .. } => reason.code(),
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(p(&ack(true, AckLevel::Read))), "ack_of_own_message");
        assert_eq!(reason(p(&ack(false, AckLevel::Device))), "ack_not_read");
        let other = p(&Event::Other {
            event: "session.status".into(),
        });
        assert_eq!(reason(other.clone()), "event");
        assert!(
            matches!(other, Plan::Ignore { reason, .. } if reason.reason() == "event `session.status` is not a message")
        );
    }
}

//! `autoseen explain`, shared by the command line and the console: what the service would do with an event
//! (the decision, the rule, the reason, the earliest and latest moment), computed by the same `decide` the
//! webhook uses. The answer never holds the message's text.

use jiff::Timestamp;
use serde_json::json;

use crate::domain::{Ack, IncomingMessage};
use crate::rules::{Decision, Rules};
use crate::settings::{Flavor, Settings};
use crate::time::add;
use crate::webhook::Event;

/// What the service would do with `event` at `now`.
pub fn event(
    settings: &Settings,
    rules: &Rules,
    event: &Event,
    now: Timestamp,
) -> serde_json::Value {
    match event {
        Event::Message(m) => message(settings, rules, m, now),
        Event::Ack(a) => ack(a),
        Event::Other { event: kind } => {
            json!({"decision": "ignore", "rule": null, "reason": format!("event `{kind}` is not a message")})
        }
    }
}

/// What the service would do with a message: the chat it files it under, the decision and why.
pub fn message(
    settings: &Settings,
    rules: &Rules,
    m: &IncomingMessage,
    now: Timestamp,
) -> serde_json::Value {
    let mut out = match rules.decide(m, now) {
        Decision::Ignore { rule, reason } => {
            json!({"decision": "ignore", "rule": rule, "reason": reason.as_str()})
        }
        Decision::Seen {
            rule,
            not_before,
            delay,
            ..
        } => json!({
            "decision": "seen",
            "rule": rule,
            "reason": if not_before == now { "matched" } else { "matched; waits for the next window" },
            "delay": delay.to_string(),
            "earliest": add(not_before, delay.min).to_string(),
            "latest": add(not_before, delay.max).to_string(),
        }),
        Decision::OnReply { rule, max_wait } => {
            let (reason, latest) = match max_wait {
                Some(w) => (
                    "held until a reply of ours in the chat or the bot endpoint; sent anyway at `latest`",
                    Some(add(now, w).to_string()),
                ),
                None => (
                    "held until a reply of ours in the chat or the bot endpoint; dropped unsent when store.dedup_window ends",
                    None,
                ),
            };
            json!({"decision": "on_reply", "rule": rule, "reason": reason, "latest": latest})
        }
    };
    out["chat"] = json!(m.chat);
    out["chat_phone"] = json!(m.chat_phone);
    out["sender"] = json!(m.sender);
    out["sender_phone"] = json!(m.sender_phone);
    let mut notes = Vec::new();
    if m.lid_without_phone() {
        notes.push("the chat or sender is a LID that came without its phone number: phone-number rules (`chats`, `senders`) cannot match it; rules naming the LID can");
    }
    let flavor = settings
        .wasend
        .sessions
        .get(m.session.as_str())
        .and_then(|o| o.flavor)
        .unwrap_or(settings.wasend.flavor);
    if flavor == Flavor::Waha && m.engine.as_deref() == Some("WEBJS") {
        notes.push("WAHA's WEBJS engine ignores `messageIds`: its sendSeen marks the whole chat read, not just this message");
    }
    out["notes"] = json!(notes);
    out
}

/// What the service would do with an ack.
pub fn ack(ack: &Ack) -> serde_json::Value {
    let (decision, reason) = if ack.from_me {
        ("ignore", "ack_of_own_message")
    } else if !ack.level.is_read() {
        ("ignore", "ack_not_read")
    } else {
        (
            "ack",
            "this account read the message: waiting receipts of its chat up to it are cancelled, a sent one is confirmed",
        )
    };
    json!({"decision": decision, "rule": null, "reason": reason, "chat": ack.chat, "message": ack.bare})
}

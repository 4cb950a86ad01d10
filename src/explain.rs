//! `autoseen explain`, shared by the command line and the console: the plan the webhook would carry out for
//! an event (`receipts::plan`, the same function), shown as the decision, the rule, the reason and the earliest
//! and latest moment. The answer never holds the message's text.

use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;

use crate::domain::Event;
use crate::domain::{BareMessageId, ChatId, IncomingMessage};
use crate::receipts::{Ignored, Plan, WhenUnreleased, plan};
use crate::rules::{DelaySource, Rules};
use crate::settings::{Flavor, Settings};
use crate::time::add;

/// What the service would do with an event.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// `seen`, `on_reply`, `ack` or `ignore`.
    pub decision: &'static str,
    pub rule: Option<Arc<str>>,
    pub reason: String,
    /// The rule's delay (`seen`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Where the delay comes from: `rule`, `defaults` or `built-in default` (neither sets one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_from: Option<DelaySource>,
    /// The earliest moment it is marked (`seen`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earliest: Option<String>,
    /// The latest moment it is marked (`seen`; `on_reply` with `max_wait`, else null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<Option<String>>,
    /// The chat of a message or an ack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatId>,
    /// Where a message is filed: its sender, and the phone numbers beside LIDs.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub filed: Option<Filed>,
    /// The message an ack is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<BareMessageId>,
}

/// A message's sender and phone numbers, as rules see them; notes on what they cannot see.
#[derive(Debug, Serialize)]
pub struct Filed {
    pub chat_phone: Option<ChatId>,
    pub sender: ChatId,
    pub sender_phone: Option<ChatId>,
    pub notes: Vec<&'static str>,
}

/// What `explain` makes of a webhook body: one explanation for a WAHA event, one per item for a Meta body.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Explained {
    One(Box<Explanation>),
    Items(Vec<ExplainedItem>),
}

/// One item of a Meta body: where it is, and what the service would do with it or why it skips it.
#[derive(Debug, Serialize)]
pub struct ExplainedItem {
    pub item: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// What the service would do with a webhook body at `now`: a Meta body (it has `object`), a Green API
/// notification (`typeWebhook`) or a WAHA event.
pub fn body(
    settings: &Settings,
    rules: &Rules,
    body: &[u8],
    now: Timestamp,
) -> Result<Explained, String> {
    #[derive(serde::Deserialize, Default)]
    struct Shape {
        /// Meta's bodies say `"object": "whatsapp_business_account"`.
        object: Option<serde::de::IgnoredAny>,
        /// Green's notifications name their type.
        #[serde(rename = "typeWebhook")]
        green: Option<serde::de::IgnoredAny>,
        /// Evolution's envelope names its instance.
        instance: Option<serde::de::IgnoredAny>,
    }
    let shape = serde_json::from_slice::<Shape>(body).unwrap_or_default();
    if shape.object.is_none() {
        let event = match (shape.green, shape.instance) {
            (Some(_), _) => crate::gateway::green::parse(body).map_err(|e| e.to_string())?,
            (None, Some(_)) => crate::gateway::evolution::parse(body).map_err(|e| e.to_string())?,
            (None, None) => crate::gateway::wasend::parse(body).map_err(|e| e.to_string())?,
        };
        let explained = self::event(settings, rules, &event, now);
        return Ok(Explained::One(Box::new(explained)));
    }
    let items = crate::gateway::meta::parse(body).map_err(|e| e.to_string())?;
    let explained = items.into_iter().map(|item| {
        let (explanation, skipped) = match &item.what {
            Ok(e) => (Some(self::event(settings, rules, e, now)), None),
            Err(s) => (None, Some(format!("{}: {}", s.code, s.reason))),
        };
        ExplainedItem {
            item: item.path,
            id: item.id,
            explanation,
            skipped,
        }
    });
    Ok(Explained::Items(explained.collect()))
}

/// What the service would do with `event` at `now`.
pub fn event(settings: &Settings, rules: &Rules, event: &Event, now: Timestamp) -> Explanation {
    let planned = plan(event, rules, settings.store.dedup_window, now);
    let mut out = shown(planned, now);
    if out.delay.is_some() {
        out.delay_from = out.rule.as_deref().map(|rule| rules.delay_source(rule));
    }
    match event {
        Event::Message(m) => {
            out.chat = Some(m.chat.clone());
            out.filed = Some(filed(settings, m));
        }
        Event::Ack(a) => {
            out.chat = Some(a.chat.clone());
            out.message = Some(a.bare.clone());
        }
        Event::Deleted(d) => {
            out.chat = Some(d.chat.clone());
            out.message = Some(d.bare.clone());
        }
        Event::Other { .. } => {}
    }
    out
}

/// A plan in words.
fn shown(planned: Plan, now: Timestamp) -> Explanation {
    let mut out = Explanation {
        decision: planned.decision(),
        rule: planned.rule().cloned(),
        reason: String::new(),
        delay: None,
        delay_from: None,
        earliest: None,
        latest: None,
        chat: None,
        filed: None,
        message: None,
    };
    match planned {
        Plan::Schedule {
            not_before, delay, ..
        } => {
            out.reason = if not_before == now {
                "matched"
            } else {
                "matched; waits for the next window"
            }
            .into();
            out.delay = Some(delay.to_string());
            out.earliest = Some(add(not_before, delay.min).to_string());
            out.latest = Some(Some(add(not_before, delay.max).to_string()));
        }
        Plan::Hold { until, then, .. } => {
            let (reason, latest) = match then {
                WhenUnreleased::SendAnyway(_) => (
                    "held until a reply of ours in the chat or the bot endpoint; sent anyway at `latest`",
                    Some(until.to_string()),
                ),
                WhenUnreleased::Drop => (
                    "held until a reply of ours in the chat or the bot endpoint; dropped unsent when store.dedup_window ends",
                    None,
                ),
            };
            out.reason = reason.into();
            out.latest = Some(latest);
        }
        Plan::FlushReplies => out.reason = Ignored::FromMe.reason(),
        Plan::Ack => {
            out.reason = "this account read the message: waiting receipts of its chat up to it are cancelled, a sent one is confirmed".into();
        }
        Plan::Forget => {
            out.reason = "its sender deleted the message: its receipt is cancelled unless already sent; earlier ones stay".into();
        }
        Plan::Ignore { reason, .. } => out.reason = reason.reason(),
    }
    out
}

/// Where a message is filed, and what rules cannot see of it.
fn filed(settings: &Settings, m: &IncomingMessage) -> Filed {
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
    Filed {
        chat_phone: m.chat_phone.clone(),
        sender: m.sender.clone(),
        sender_phone: m.sender_phone.clone(),
        notes,
    }
}

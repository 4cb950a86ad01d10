//! The console's HTML: one function per page, each a complete document in the shared layout. `maud`
//! escapes every value it prints. Only what the store, the rules and this replica's activity hold is shown;
//! none of them holds a message's text.

use jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};

use crate::activity::{MINUTES, SessionActivity};
use crate::domain::{ChatId, MessageId, SessionName};
use crate::gateway::Choice;
use crate::rules::Rules;
use crate::rules::reload::ReloadReport;
use crate::store::{DeadReceipt, PendingStats, Receipt};

const PAGES: [(&str, &str); 6] = [
    ("/ui", "Overview"),
    ("/ui/pending", "Pending"),
    ("/ui/dead", "Dead letters"),
    ("/ui/rules", "Rules"),
    ("/ui/explain", "Explain"),
    ("/ui/live", "Live"),
];

fn layout(title: &str, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "autoseen · " (title) }
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/console.js" defer {}
            }
            body {
                header {
                    strong.brand { "autoseen" }
                    @if let Some(csrf) = csrf {
                        nav {
                            @for (href, name) in PAGES {
                                a href=(href) aria-current=[(name == title).then_some("page")] { (name) }
                            }
                        }
                        (post_button("/ui/logout", csrf, &[], "Sign out"))
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A form of one button that posts `fields` and the session's CSRF token to `action`.
fn post_button(action: &str, csrf: &str, fields: &[(&str, &str)], label: &str) -> Markup {
    html! {
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" { (label) }
        }
    }
}

fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text {
            p.notice role="status" { (text) }
        }
    }
}

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// How long ago (or from now) `t` is, for people.
fn relative(t: Timestamp, now: Timestamp) -> String {
    let secs = (t.as_millisecond() - now.as_millisecond()) / 1000;
    let (n, ago) = (secs.unsigned_abs(), secs <= 0);
    let amount = match n {
        0..60 => format!("{n} s"),
        60..3600 => format!("{} min", n / 60),
        _ => format!("{} h {} min", n / 3600, n % 3600 / 60),
    };
    if ago {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

pub fn sign_in(problem: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            (notice(problem))
            form.signin method="post" action="/ui/login" {
                label for="token" { "Admin token (" code { "admin.token" } ")" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// Sends per minute over the last hour, as bars.
fn chart(per_minute: &[u64]) -> Markup {
    let max = per_minute.iter().copied().max().unwrap_or(0).max(1);
    let (w, h) = (4 * MINUTES as u64, 40u64);
    html! {
        svg.chart viewBox=(format!("0 0 {w} {h}")) width=(w) height=(h) role="img"
            aria-label=(format!("sends per minute, last {MINUTES} minutes, at most {max}")) {
            @for (i, n) in per_minute.iter().enumerate() {
                @let bar = n * h / max;
                rect x=(i * 4) y=(h - bar) width="3" height=(bar) {}
            }
        }
    }
}

pub fn overview(
    csrf: &str,
    now: Timestamp,
    pending: &[PendingStats],
    activity: &[SessionActivity],
    gateways: &Choice,
) -> Markup {
    // Every session with receipts or sends, and every session the settings give a gateway of its own.
    let mut sessions: Vec<&str> = pending
        .iter()
        .map(|p| p.session.as_str())
        .chain(activity.iter().map(|a| a.session.as_str()))
        .chain(gateways.sessions.keys().map(String::as_str))
        .collect();
    sessions.sort_unstable();
    sessions.dedup();
    layout(
        "Overview",
        Some(csrf),
        html! {
            p.hint { "Pending figures come from the store (every replica). Sent, failed, confirmed, pauses and the chart are "
                     em { "this replica" } "'s last hour." }
            @if sessions.is_empty() {
                p.empty { "No pending receipts and no sends in the last hour." }
            } @else {
                table.overview {
                    thead { tr {
                        th { "Session" } th { "Gateway" } th { "Pending" } th { "Oldest pending" }
                        th { "Sent (this replica, 1 h)" } th { "Failed" } th { "Confirmed" }
                        th { "Paused until (this replica)" } th { "Sends per minute" }
                    } }
                    tbody {
                        @for s in &sessions {
                            @let p = pending.iter().find(|p| p.session.as_str() == *s);
                            @let a = activity.iter().find(|a| a.session.as_str() == *s);
                            tr data-session=(s) {
                                td { (s) }
                                td.gateway { (SessionName::parse(s).map_or(gateways.default, |s| gateways.of(&s)).as_str()) }
                                td.pending { (p.map_or(0, |p| p.count)) }
                                td { (p.map_or(String::from("–"), |p| relative(p.oldest_accepted_at, now))) }
                                td.sent { (a.map_or(0, |a| a.last_hour.sent)) }
                                td.failed { (a.map_or(0, |a| a.last_hour.failed)) }
                                td.confirmed { (a.map_or(0, |a| a.last_hour.confirmed)) }
                                td { (a.and_then(|a| a.paused_until).map_or(String::from("–"), time)) }
                                td { (chart(a.map_or(&[][..], |a| &a.sent_per_minute))) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The cells that say whose receipt a row is: session, chat, message and rule.
fn whose(session: &SessionName, chat: &ChatId, message: &MessageId, rule: &str) -> Markup {
    html! {
        td { (session) }
        td { (chat) }
        td.message { code { (message) } }
        td { (rule) }
    }
}

pub fn pending(
    csrf: &str,
    now: Timestamp,
    (session, chat): (Option<&str>, Option<&str>),
    rows: &[Receipt],
    note: Option<&str>,
) -> Markup {
    layout(
        "Pending",
        Some(csrf),
        html! {
            (notice(note))
            form.filter method="get" action="/ui/pending" {
                label { "Session " input name="session" value=[session]; }
                label { "Chat " input name="chat" value=[chat] placeholder="id or phone number"; }
                button type="submit" { "Filter" }
            }
            @if rows.is_empty() {
                p.empty { "No pending receipts" @if session.is_some() || chat.is_some() { " match the filter" } "." }
            } @else {
                table.pending {
                    thead { tr {
                        th { "Session" } th { "Chat" } th { "Message" } th { "Rule" } th { "Due" }
                        th { "Attempts" } th { "Last error" } th {}
                    } }
                    tbody {
                        @for r in rows {
                            tr data-message=(r.message_id) {
                                (whose(&r.session, &r.chat, &r.message_id, &r.rule))
                                td title=(time(r.due_at)) {
                                    @if r.on_reply { "on reply, at the latest " }
                                    (relative(r.due_at, now))
                                }
                                td { (r.attempts) }
                                td { (r.last_error.as_deref().unwrap_or("")) }
                                td {
                                    (post_button("/ui/pending/send", csrf,
                                        &[("session", r.session.as_str()), ("chat", r.chat.as_str())], "Send now"))
                                }
                            }
                        }
                    }
                }
                p.hint { "“Send now” makes every pending receipt of that chat due now, as the bot endpoint does." }
            }
        },
    )
}

pub fn dead(csrf: &str, rows: &[DeadReceipt], note: Option<&str>) -> Markup {
    layout(
        "Dead letters",
        Some(csrf),
        html! {
            (notice(note))
            @if rows.is_empty() {
                p.empty { "No dead letters." }
            } @else {
                (post_button("/ui/dead/replay", csrf, &[], "Replay all"))
                table.dead {
                    thead { tr {
                        th { "Session" } th { "Chat" } th { "Message" } th { "Rule" } th { "Attempts" }
                        th { "Last error" } th { "Died" } th {}
                    } }
                    tbody {
                        @for d in rows {
                            tr data-message=(d.message_id) {
                                (whose(&d.session, &d.chat, &d.message_id, &d.rule))
                                td { (d.attempts) }
                                td.error { (d.last_error) }
                                td { (time(d.died_at)) }
                                td {
                                    (post_button("/ui/dead/replay", csrf, &[("id", &d.id.to_string())], "Replay"))
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn rules(csrf: &str, rules: &Rules, report: Option<&ReloadReport>) -> Markup {
    layout(
        "Rules",
        Some(csrf),
        html! {
            h2 { "Last reload" }
            @match report {
                None => p { "The rules loaded at start are in force; no reload since." },
                Some(r) => {
                    @match &r.result {
                        Ok(n) => p.ok { "Reloaded " (n) " rule(s) at " (time(r.at)) " (" (r.trigger) ")." },
                        Err(problems) => {
                            p.problem { "Refused at " (time(r.at)) " (" (r.trigger) "); the rules below stay in force:" }
                            ul.problems {
                                @for p in problems {
                                    li {
                                        code { (p.file.display()) @if let Some(line) = p.line { ":" (line) } }
                                        @if let Some(rule) = &p.rule { " rule " code { (rule) } }
                                        ": " (p.message)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "In force, in the order they are tried" }
            ol.rules {
                @for rule in rules.iter() {
                    li { code { (rule.name) } " · " (rule.file.display()) ":" (rule.line) }
                }
                li { code { "defaults" } " · when no rule matches" }
            }
            details {
                summary { "As one TOML file" }
                pre { (rules.to_toml()) }
            }
        },
    )
}

pub fn explain(csrf: &str, answer: Option<&Result<serde_json::Value, String>>) -> Markup {
    layout(
        "Explain",
        Some(csrf),
        html! {
            @match answer {
                None => {}
                Some(Err(problem)) => p.problem role="alert" { (problem) },
                Some(Ok(value)) => {
                    section.answer {
                        h2 { "Decision: " span.decision { (value["decision"].as_str().unwrap_or("?")) } }
                        dl {
                            @if let Some(obj) = value.as_object() {
                                @for (key, v) in obj {
                                    @if let Some(shown) = shown(key, v) {
                                        dt { (key) }
                                        dd { (shown) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p.hint { "What the service would do with this event now, by the rules in force (the same code as "
                     code { "autoseen explain" } "). The text is used to decide and is never shown, logged or streamed." }
            form.explain method="post" action="/ui/explain" {
                input type="hidden" name="csrf" value=(csrf);
                fieldset {
                    legend { "A webhook body" }
                    textarea name="body" rows="8" placeholder="{\"event\":\"message\",\"session\":\"default\",\"payload\":{…}}" {}
                }
                fieldset {
                    legend { "…or a message" }
                    label { "Session " input name="session" value="default"; }
                    label { "Chat " input name="chat" placeholder="id or phone number"; }
                    label { "Chat type "
                        select name="chat_type" {
                            @for t in ["direct", "group", "channel", "status", "broadcast"] { option value=(t) { (t) } }
                        }
                    }
                    label { "Text " input name="text" type="text" autocomplete="off"; }
                }
                button type="submit" { "Explain" }
            }
        },
    )
}

/// How one field of explain's answer reads on the page; `None` for the decision (the heading) and for
/// nothing to say.
fn shown(key: &str, v: &serde_json::Value) -> Option<String> {
    match v {
        _ if key == "decision" => None,
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) if items.is_empty() => None,
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().filter_map(|i| shown("", i)).collect();
            Some(items.join("; "))
        }
        other => Some(other.to_string()),
    }
}

pub fn live(csrf: &str) -> Markup {
    layout(
        "Live",
        Some(csrf),
        html! {
            p.hint { "Decisions and sends of " em { "this replica" } " as they happen; never message text." }
            p #live-status { "connecting…" }
            table.live {
                thead { tr { th { "Time" } th { "Session" } th { "Chat" } th { "Message" } th { "What" } th { "Rule" } th { "Detail" } } }
                tbody #feed {}
            }
        },
    )
}

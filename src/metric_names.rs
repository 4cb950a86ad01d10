//! Every metric autoseen exports, named once: the code records under these constants, the exporter is told
//! what each means from [`ALL`], and the tests check the docs' metrics table and the Grafana dashboard against
//! the same list, so a metric cannot be emitted without being described.

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Declares each metric as a constant and lists them all, with their kind and help text, in [`ALL`].
macro_rules! metrics {
    ($($kind:ident { $($name:ident = $metric:literal: $help:literal,)* })*) => {
        $($(pub const $name: &str = $metric;)*)*

        /// Every metric with its kind and the help text the exporter serves.
        pub const ALL: &[(&str, Kind, &str)] = &[$($(($name, Kind::$kind, $help),)*)*];
    };
}

metrics! {
    // What comes in (webhooks, the decisions on them, the rules deciding) and what goes out.
    Counter {
        WEBHOOKS = "autoseen_webhooks_total": "Webhooks answered, by result and, for ignored ones, reason.",
        DECISIONS = "autoseen_decisions_total": "Rule decisions on incoming messages, by rule and decision (seen, ignore, on_reply).",
        LID_WITHOUT_PHONE = "autoseen_lid_without_phone_total": "Messages from a LID chat or sender that came without its phone number: phone-number rules cannot match them.",
        RULE_RELOADS = "autoseen_rule_reloads_total": "Rule reloads, by result (ok or error).",
        // What goes out: each receipt's outcome, per session.
        RECEIPTS_SENT = "autoseen_receipts_sent_total": "Receipts marked seen, by session.",
        RECEIPTS_RETRIED = "autoseen_receipts_retried_total": "Failed sendSeen calls scheduled again, by session.",
        RECEIPTS_DEAD = "autoseen_receipts_dead_total": "Receipts given up and moved to the dead letters, by session.",
        SESSION_PAUSED = "autoseen_session_paused_total": "Sends refused for the session's API key (401/403), each pausing the session, by session.",
        SEND_SEEN_RESPONSES = "autoseen_send_seen_responses_total": "sendSeen answers by HTTP status (0: no answer).",
        RECEIPTS_CANCELLED = "autoseen_receipts_cancelled_total": "Receipts dropped unsent, by reason: read_elsewhere (an ack says the chat was read), deleted (its sender deleted the message) or expired (held for a reply that never came).",
        RECEIPTS_CONFIRMED = "autoseen_receipts_confirmed_total": "Sent receipts that an ack (READ or PLAYED) confirmed.",
        // What the edge refused before any request was answered, and credentials refused.
        CONNECTIONS_CLOSED = "autoseen_connections_closed_total": "Connections closed by autoseen, by reason: silent (no request head within server.header_timeout of accept), idle (nothing in flight for server.idle_timeout), per_ip_cap (over server.max_connections_per_ip).",
        AUTH_REFUSED = "autoseen_auth_refused_total": "Console sign-ins and admin or bot requests refused, by reason: wrong (a wrong credential) or throttled (429 after server.auth_failures).",
    }
    // What waits, read from the store at scrape time.
    Gauge {
        PENDING_RECEIPTS = "autoseen_pending_receipts": "Receipts waiting to be sent, by session.",
        OLDEST_PENDING_AGE = "autoseen_oldest_pending_age_seconds": "Age of the oldest waiting receipt, by session.",
    }
    // How long things take.
    Histogram {
        SEND_SEEN_DURATION = "autoseen_send_seen_duration_seconds": "Duration of one sendSeen call.",
        STORE_COMMIT_SECONDS = "autoseen_store_commit_seconds": "Duration of one store transaction (a group of writes).",
        STORE_COMMIT_WRITES = "autoseen_store_commit_writes": "Writes grouped in one store transaction.",
    }
}

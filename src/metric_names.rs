//! Every metric autoseen exports, named once: the code records under these constants, the exporter is told
//! what each means from [`ALL`], and the tests check the docs' metrics table and the Grafana dashboard against
//! the same list, so a metric cannot be emitted without being described.

pub const WEBHOOKS: &str = "autoseen_webhooks_total";
pub const DECISIONS: &str = "autoseen_decisions_total";
pub const RECEIPTS_SENT: &str = "autoseen_receipts_sent_total";
pub const RECEIPTS_RETRIED: &str = "autoseen_receipts_retried_total";
pub const RECEIPTS_DEAD: &str = "autoseen_receipts_dead_total";
pub const SESSION_PAUSED: &str = "autoseen_session_paused_total";
pub const SEND_SEEN_RESPONSES: &str = "autoseen_send_seen_responses_total";
pub const SEND_SEEN_DURATION: &str = "autoseen_send_seen_duration_seconds";
pub const PENDING_RECEIPTS: &str = "autoseen_pending_receipts";
pub const OLDEST_PENDING_AGE: &str = "autoseen_oldest_pending_age_seconds";
pub const RULE_RELOADS: &str = "autoseen_rule_reloads_total";
pub const STORE_COMMIT_SECONDS: &str = "autoseen_store_commit_seconds";
pub const STORE_COMMIT_WRITES: &str = "autoseen_store_commit_writes";

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric with its kind and the help text the exporter serves.
pub const ALL: &[(&str, Kind, &str)] = &[
    (
        WEBHOOKS,
        Kind::Counter,
        "Webhooks answered, by result and, for ignored ones, reason.",
    ),
    (
        DECISIONS,
        Kind::Counter,
        "Rule decisions on incoming messages, by rule and decision.",
    ),
    (
        RECEIPTS_SENT,
        Kind::Counter,
        "Receipts marked seen, by session.",
    ),
    (
        RECEIPTS_RETRIED,
        Kind::Counter,
        "Failed sendSeen calls scheduled again, by session.",
    ),
    (
        RECEIPTS_DEAD,
        Kind::Counter,
        "Receipts given up and moved to the dead letters, by session.",
    ),
    (
        SESSION_PAUSED,
        Kind::Counter,
        "Sends refused for the session's API key (401/403), each pausing the session, by session.",
    ),
    (
        SEND_SEEN_RESPONSES,
        Kind::Counter,
        "sendSeen answers by HTTP status (0: no answer).",
    ),
    (
        SEND_SEEN_DURATION,
        Kind::Histogram,
        "Duration of one sendSeen call.",
    ),
    (
        PENDING_RECEIPTS,
        Kind::Gauge,
        "Receipts waiting to be sent, by session.",
    ),
    (
        OLDEST_PENDING_AGE,
        Kind::Gauge,
        "Age of the oldest waiting receipt, by session.",
    ),
    (
        RULE_RELOADS,
        Kind::Counter,
        "Rule reloads, by result (ok or error).",
    ),
    (
        STORE_COMMIT_SECONDS,
        Kind::Histogram,
        "Duration of one store transaction (a group of writes).",
    ),
    (
        STORE_COMMIT_WRITES,
        Kind::Histogram,
        "Writes grouped in one store transaction.",
    ),
];

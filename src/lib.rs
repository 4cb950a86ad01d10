//! autoseen marks incoming WhatsApp messages as seen through their gateway (Wasend or WAHA, Meta's Cloud API,
//! Evolution API, Green API), when and where rules say so.
//!
//! A webhook event flows one way through the modules below: received by `http`, verified and parsed by its
//! `gateway`'s inbound half into `domain` events, planned by `receipts` under `rules`, made durable by `store`,
//! timed and paced by `scheduler`, and finally sent by the session's `gateway`'s outbound half.

/// What this replica did lately (decisions, sends, pauses), for the console; never message text.
pub mod activity;
/// Start-up: builds state, binds the listener, runs the server and the scheduler, shuts down gracefully.
pub mod app;
/// Command line: `serve`, `check`, `explain`.
pub mod cli;
/// Parsed types used past the webhook edge: sessions, chats, message ids, incoming messages.
pub mod domain;
/// `explain`: what the service would do with an event, for the command line and the console.
pub mod explain;
/// The gateways (Wasend/WAHA, Meta, Green, Evolution): each one's inbound half (authentication, bodies into events) and outbound half
/// (marking a batch read, answers classified); which gateway serves a session.
pub mod gateway;
/// The axum router: webhook, health and admin routes, and how errors become responses.
pub mod http;
/// Every exported metric's name and meaning, in one place.
pub mod metric_names;
/// The application layer: what an authenticated event becomes (a pure plan), carried out (commit, wake,
/// announce, record); flushes, replays and acks.
pub mod receipts;
/// Rule files, their compilation, `decide(&message, now)`, and hot reload.
pub mod rules;
/// Pending receipts in time: per-chat batches, timers, pacing, retries, read-on-reply.
pub mod scheduler;
/// API keys, HMAC keys and tokens: compared in constant time, never printed.
pub mod secret;
/// Settings from `autoseen.toml` and the environment, checked at start.
pub mod settings;
/// Durable pending receipts, dead letters and dedup ids behind two traits (queue, operator); SQLite by default,
/// PostgreSQL for several replicas, with the leases that share sessions among them.
pub mod store;
/// The tracing subscriber (JSON or pretty lines) and the Prometheus recorder.
pub mod telemetry;
/// One time type end to end (`jiff::Timestamp`) and the clock that reads it.
pub mod time;
/// File-and-line positions for TOML errors, shared by settings and rule files.
pub mod toml_span;

//! The outbound Wasend API client: one `POST /sendSeen` per message, and what its answer means.
//!
//! The scheduler hands over a chat's batch ([`SendSeen`]); Wasend's API marks one message per call, so the
//! client makes one call per message of the batch, concurrently. It makes a single attempt of each and
//! classifies the result; retrying, backing off and pacing are the
//! scheduler's job, because retries must survive restarts. Error bodies are read only up to a few KiB, so a
//! misbehaving upstream cannot make us buffer megabytes. One connection pool serves every session.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Serialize;

use crate::domain::{ChatId, MessageId, SessionName};
use crate::secret::Secret;
use crate::settings::WasendSettings;

/// How much of an error body is kept for logs and dead letters.
const MAX_ERROR_BODY: usize = 2048;

/// Why a sendSeen call did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again: connection errors, timeouts, 408, 429, 5xx.
    #[error("{reason}")]
    Retryable {
        reason: String,
        status: Option<u16>,
        /// What the API asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Wasend refused the session's credentials (401, 403): the session should pause, its receipts wait.
    #[error("HTTP {status}: {message}")]
    Unauthorized { status: u16, message: String },
    /// Trying again will not help: 400, 404 and other 4xx.
    #[error("HTTP {status}: {message}")]
    Permanent { status: u16, message: String },
    /// No API key is configured for the session, so nothing was sent.
    #[error("no API key for session `{session}`; set wasend.api_key")]
    NoApiKey { session: SessionName },
}

impl SendError {
    pub fn status(&self) -> Option<u16> {
        match self {
            SendError::Retryable { status, .. } => *status,
            SendError::Permanent { status, .. } | SendError::Unauthorized { status, .. } => {
                Some(*status)
            }
            SendError::NoApiKey { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    api_key: Option<Secret>,
}

/// The answer for one message: `Ok(Some(status))` on a 2xx, `Ok(None)` when nothing was sent (dry run).
pub type SendResult = Result<Option<u16>, SendError>;

/// Marks a chat's due messages seen: what the scheduler needs from the outbound side. [`WasendClient`] is the
/// real one; scheduler tests use a fake on tokio's paused clock.
#[async_trait::async_trait]
pub trait SendSeen: Send + Sync + 'static {
    /// How many API calls marking `ids` messages of one chat takes for this session: what pacing counts.
    fn calls_for(&self, session: &SessionName, ids: usize) -> usize;

    /// Marks `ids` (all of `chat`, due together) seen; one result per id, in the same order.
    async fn send_seen(
        &self,
        session: &SessionName,
        chat: &ChatId,
        ids: &[MessageId],
    ) -> Vec<SendResult>;
}

/// Calls `sendSeen` for any session, with that session's base URL and key.
#[derive(Debug, Clone)]
pub struct WasendClient {
    http: reqwest::Client,
    default: Endpoint,
    sessions: HashMap<String, Endpoint>,
    dry_run: bool,
}

#[derive(Serialize)]
struct SendSeenBody<'a> {
    session: &'a str,
    to: &'a str,
    #[serde(rename = "messageId")]
    message_id: &'a str,
}

fn send_seen_url(base: &str) -> String {
    format!("{}/sendSeen", base.trim_end_matches('/'))
}

impl WasendClient {
    pub fn new(settings: &WasendSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("autoseen/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let default = Endpoint {
            url: send_seen_url(&settings.base_url),
            api_key: settings.api_key.clone(),
        };
        let sessions = settings
            .sessions
            .iter()
            .map(|(name, o)| {
                let endpoint = Endpoint {
                    url: o
                        .base_url
                        .as_deref()
                        .map_or_else(|| default.url.clone(), send_seen_url),
                    api_key: o.api_key.clone().or_else(|| default.api_key.clone()),
                };
                (name.clone(), endpoint)
            })
            .collect();
        Ok(Self {
            http,
            default,
            sessions,
            dry_run: settings.dry_run,
        })
    }
}

#[async_trait::async_trait]
impl SendSeen for WasendClient {
    fn calls_for(&self, _: &SessionName, ids: usize) -> usize {
        ids
    }

    async fn send_seen(
        &self,
        session: &SessionName,
        chat: &ChatId,
        ids: &[MessageId],
    ) -> Vec<SendResult> {
        futures_util::future::join_all(ids.iter().map(|id| self.send_one(session, chat, id))).await
    }
}

impl WasendClient {
    async fn send_one(
        &self,
        session: &SessionName,
        chat: &ChatId,
        message_id: &MessageId,
    ) -> SendResult {
        if self.dry_run {
            return Ok(None);
        }
        let endpoint = self.sessions.get(session.as_str()).unwrap_or(&self.default);
        let Some(key) = &endpoint.api_key else {
            return Err(SendError::NoApiKey {
                session: session.clone(),
            });
        };
        let body = SendSeenBody {
            session: session.as_str(),
            to: chat.as_str(),
            message_id: message_id.as_str(),
        };
        let response = self
            .http
            .post(&endpoint.url)
            .bearer_auth(key.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| SendError::Retryable {
                reason: describe_transport_error(&e),
                status: None,
                retry_after: None,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(Some(status.as_u16()));
        }
        let retry_after = retry_after(response.headers(), jiff::Timestamp::now());
        let message = read_capped(response).await;
        Err(classify(status, message, retry_after))
    }
}

fn classify(status: StatusCode, message: String, retry_after: Option<Duration>) -> SendError {
    let code = status.as_u16();
    if code == 408 || code == 429 || status.is_server_error() {
        SendError::Retryable {
            reason: format!("HTTP {code}: {message}"),
            status: Some(code),
            retry_after,
        }
    } else if code == 401 || code == 403 {
        SendError::Unauthorized {
            status: code,
            message,
        }
    } else {
        SendError::Permanent {
            status: code,
            message,
        }
    }
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of an error body, as lossy text on one line.
async fn read_capped(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk[..chunk.len().min(MAX_ERROR_BODY - body.len())])
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body).replace(['\n', '\r'], " ");
    if text.trim().is_empty() {
        "(empty body)".into()
    } else {
        text.trim().to_string()
    }
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        // Walk to the root cause without the URL (which could carry a key in its query).
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        format!("transport error: {cause}")
    }
}

/// `Retry-After` as seconds or an HTTP date, as a wait from `now`.
fn retry_after(headers: &HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let wait = at.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 25 Nov 2026 10:00:30 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(
            RETRY_AFTER,
            "Wed, 25 Nov 2026 09:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn statuses_are_classified() {
        let c = |code: u16| classify(StatusCode::from_u16(code).unwrap(), "x".into(), None);
        for code in [408, 429, 500, 502, 503] {
            assert!(matches!(c(code), SendError::Retryable { .. }), "{code}");
        }
        for code in [400, 404, 422] {
            assert!(matches!(c(code), SendError::Permanent { .. }), "{code}");
        }
        for code in [401, 403] {
            assert!(matches!(c(code), SendError::Unauthorized { .. }), "{code}");
        }
    }

    #[test]
    fn base_urls_get_the_path_appended_once() {
        assert_eq!(
            send_seen_url("https://api.wasend.dev"),
            "https://api.wasend.dev/sendSeen"
        );
        assert_eq!(
            send_seen_url("http://127.0.0.1:3000/api/"),
            "http://127.0.0.1:3000/api/sendSeen"
        );
    }
}

//! The outbound API client: sendSeen in Wasend's shape or WAHA's, and what its answer means.
//!
//! The scheduler hands over a chat's batch ([`SendSeen`]). Wasend's API (`POST /sendSeen`, bearer key) marks one
//! message per call, so the client makes one call per message of the batch, concurrently; WAHA's own API
//! (`POST /api/sendSeen`, `X-Api-Key`) takes up to 100 message ids of one chat per call. It makes a single attempt of each and
//! classifies the result; retrying, backing off and pacing are the
//! scheduler's job, because retries must survive restarts. Error bodies are read only up to a few KiB, so a
//! misbehaving upstream cannot make us buffer megabytes. One connection pool serves every session.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Serialize;

use crate::domain::{ChatId, MessageId, SessionName};
mod config;

pub use config::{Flavor, SessionOverride, WasendSettings, origin};

use crate::secret::Secret;

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
    flavor: Flavor,
}

/// Most message ids WAHA takes in one sendSeen call.
const WAHA_MAX_IDS: usize = 100;

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

/// Calls sendSeen for any session, with that session's base URL, key and flavor.
#[derive(Debug, Clone)]
pub struct WasendClient {
    http: reqwest::Client,
    default: Endpoint,
    sessions: HashMap<String, Endpoint>,
    dry_run: bool,
}

/// Wasend's body: one message.
#[derive(Serialize)]
struct WasendBody<'a> {
    session: &'a str,
    to: &'a str,
    #[serde(rename = "messageId")]
    message_id: &'a str,
}

/// WAHA's body: several messages of one chat, and the group sender when they share one.
#[derive(Serialize)]
struct WahaBody<'a> {
    session: &'a str,
    #[serde(rename = "chatId")]
    chat_id: &'a str,
    #[serde(rename = "messageIds")]
    message_ids: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    participant: Option<ChatId>,
}

fn send_seen_url(flavor: Flavor, base: &str) -> String {
    let base = base.trim_end_matches('/');
    match flavor {
        Flavor::Wasend => format!("{base}/sendSeen"),
        Flavor::Waha => format!("{base}/api/sendSeen"),
    }
}

impl WasendClient {
    pub fn new(settings: &WasendSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("autoseen/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry the key (`X-Api-Key` is not stripped) to whatever host it names.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let default = Endpoint {
            url: send_seen_url(settings.flavor, &settings.base_url),
            api_key: settings.api_key.clone(),
            flavor: settings.flavor,
        };
        let sessions = settings
            .sessions
            .iter()
            .map(|(name, o)| {
                let flavor = o.flavor.unwrap_or(settings.flavor);
                let base = o.base_url.as_deref().unwrap_or(&settings.base_url);
                // The default key goes only to the default's server (`check` refuses an override elsewhere
                // without a key of its own).
                let same_server = origin(base) == origin(&settings.base_url);
                let endpoint = Endpoint {
                    url: send_seen_url(flavor, base),
                    api_key: o
                        .api_key
                        .clone()
                        .or_else(|| default.api_key.clone().filter(|_| same_server)),
                    flavor,
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

    fn endpoint(&self, session: &SessionName) -> &Endpoint {
        self.sessions.get(session.as_str()).unwrap_or(&self.default)
    }

    /// One Wasend call for one message.
    async fn send_one(
        &self,
        endpoint: &Endpoint,
        session: &SessionName,
        chat: &ChatId,
        message_id: &MessageId,
    ) -> SendResult {
        let Some(key) = &endpoint.api_key else {
            return Err(SendError::NoApiKey {
                session: session.clone(),
            });
        };
        let body = WasendBody {
            session: session.as_str(),
            to: chat.as_str(),
            message_id: message_id.as_str(),
        };
        let request = self
            .http
            .post(&endpoint.url)
            .bearer_auth(key.expose())
            .json(&body);
        answer(request).await
    }

    /// One WAHA call for up to [`WAHA_MAX_IDS`] messages of one chat.
    async fn send_chunk(
        &self,
        endpoint: &Endpoint,
        session: &SessionName,
        chat: &ChatId,
        ids: &[MessageId],
    ) -> SendResult {
        let senders: Vec<Option<ChatId>> = ids
            .iter()
            .map(|id| id.parts().and_then(|p| p.participant))
            .collect();
        let participant = match senders.split_first() {
            Some((first @ Some(_), rest)) if rest.iter().all(|s| s == first) => first.clone(),
            _ => None,
        };
        let body = WahaBody {
            session: session.as_str(),
            chat_id: chat.as_str(),
            message_ids: ids.iter().map(MessageId::as_str).collect(),
            participant,
        };
        let mut request = self.http.post(&endpoint.url).json(&body);
        if let Some(key) = &endpoint.api_key {
            request = request.header("X-Api-Key", key.expose());
        }
        answer(request).await
    }
}

#[async_trait::async_trait]
impl SendSeen for WasendClient {
    fn calls_for(&self, session: &SessionName, ids: usize) -> usize {
        match self.endpoint(session).flavor {
            Flavor::Wasend => ids,
            Flavor::Waha => ids.div_ceil(WAHA_MAX_IDS),
        }
    }

    async fn send_seen(
        &self,
        session: &SessionName,
        chat: &ChatId,
        ids: &[MessageId],
    ) -> Vec<SendResult> {
        if self.dry_run {
            return ids.iter().map(|_| Ok(None)).collect();
        }
        let endpoint = self.endpoint(session);
        match endpoint.flavor {
            Flavor::Wasend => {
                let calls = ids
                    .iter()
                    .map(|id| self.send_one(endpoint, session, chat, id));
                futures_util::future::join_all(calls).await
            }
            Flavor::Waha => {
                let chunks = ids.chunks(WAHA_MAX_IDS);
                let calls = chunks.map(|chunk| async move {
                    let result = self.send_chunk(endpoint, session, chat, chunk).await;
                    vec![result; chunk.len()]
                });
                futures_util::future::join_all(calls).await.concat()
            }
        }
    }
}

/// Sends a request and reads what its answer means: any 2xx is success.
async fn answer(request: reqwest::RequestBuilder) -> SendResult {
    let response = request.send().await.map_err(|e| SendError::Retryable {
        reason: describe_transport_error(&e),
        status: None,
        retry_after: None,
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(Some(status.as_u16()));
    }
    if status.is_redirection() {
        let to = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(no Location)");
        return Err(SendError::Permanent {
            status: status.as_u16(),
            message: format!(
                "redirected to {to}; redirects are not followed (they would carry the API key): set base_url to the final address"
            ),
        });
    }
    let retry_after = retry_after(response.headers(), jiff::Timestamp::now());
    let message = read_capped(response).await;
    Err(classify(status, message, retry_after))
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
    fn base_urls_get_their_flavors_path_appended_once() {
        let url = send_seen_url;
        assert_eq!(
            url(Flavor::Wasend, "https://api.wasend.dev"),
            "https://api.wasend.dev/sendSeen"
        );
        assert_eq!(
            url(Flavor::Wasend, "http://127.0.0.1:3000/x/"),
            "http://127.0.0.1:3000/x/sendSeen"
        );
        assert_eq!(
            url(Flavor::Waha, "http://waha:3000/"),
            "http://waha:3000/api/sendSeen"
        );
    }
}

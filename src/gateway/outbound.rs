//! What every gateway's outbound half shares: the [`MarkRead`] contract the scheduler calls, the errors a call
//! ends in ([`SendError`]), and how an HTTP answer is read (status, `Retry-After`, a capped error body).
//!
//! A gateway makes a single attempt of each call and classifies the result; retrying, backing off and pacing
//! are the scheduler's job, because retries must survive restarts. Error bodies are read only up to a few KiB,
//! so a misbehaving upstream cannot make us buffer megabytes.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::domain::{ChatId, MessageId, SessionName};

/// How much of an error body is kept for logs and dead letters.
const MAX_ERROR_BODY: usize = 2048;

/// Why a mark-read call did not succeed.
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
    /// The gateway refused the session's credentials (401, 403): the session should pause, its receipts wait.
    #[error("HTTP {status}: {message}")]
    Unauthorized { status: u16, message: String },
    /// Trying again will not help: 400, 404 and other 4xx.
    #[error("HTTP {status}: {message}")]
    Permanent { status: u16, message: String },
    /// No API key is configured for the session, so nothing was sent.
    #[error("no API key for session `{session}`; set {key}")]
    NoApiKey {
        session: SessionName,
        /// The setting that holds it, e.g. `wasend.api_key`.
        key: &'static str,
    },
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

/// The answer for one message: `Ok(Some(status))` on a 2xx, `Ok(None)` when nothing was sent (dry run).
pub type SendResult = Result<Option<u16>, SendError>;

/// Marks a chat's due messages read: what the scheduler needs from a gateway's outbound half. Each gateway has
/// one; [`super::Gateways`] picks the session's; scheduler tests use a fake on tokio's paused clock.
#[async_trait::async_trait]
pub trait MarkRead: Send + Sync + 'static {
    /// How many API calls marking `ids` messages of one chat takes for this session: what pacing counts.
    fn calls_for(&self, session: &SessionName, ids: usize) -> usize;

    /// Whether the session's credentials would be taken, by a call that marks nothing, where the gateway
    /// offers one (`autoseen credentials`).
    async fn check_credentials(&self, session: &SessionName) -> Verdict {
        let _ = session;
        Verdict::NotOffered(
            "this gateway offers no call that checks credentials without marking".into(),
        )
    }

    /// Marks `ids` (all of `chat`, due together, in the order they were accepted) read; one result per id, in
    /// the same order.
    /// `phone` is the chat's phone-number form when `chat` is a LID and it is known.
    async fn mark_read(
        &self,
        session: &SessionName,
        chat: &ChatId,
        phone: Option<&ChatId>,
        ids: &[MessageId],
    ) -> Vec<SendResult>;
}

/// What a credentials check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The gateway took them.
    Valid(String),
    /// The gateway refused them, or the session.
    Refused(String),
    /// No answer that says either.
    Unknown(String),
    /// The gateway has no harmless call to check them with.
    NotOffered(String),
}

/// A credentials check's GET, read: 2xx valid, 401 and 403 refused (with what the gateway said), anything
/// else unknown.
pub(crate) async fn check_get(request: reqwest::RequestBuilder, valid: &str) -> Verdict {
    match request.send().await {
        Ok(r) if r.status().is_success() => Verdict::Valid(valid.into()),
        Ok(r) if matches!(r.status().as_u16(), 401 | 403 | 404) => {
            let status = r.status().as_u16();
            Verdict::Refused(format!("HTTP {status}: {}", read_capped(r).await))
        }
        Ok(r) => {
            let status = r.status().as_u16();
            Verdict::Unknown(format!("HTTP {status}: {}", read_capped(r).await))
        }
        Err(e) => Verdict::Unknown(describe_transport_error(&e)),
    }
}

/// Classifies an error answer: its status, its body (capped), what `Retry-After` asked.
pub(crate) type Classify = fn(StatusCode, String, Option<Duration>) -> SendError;

/// The HTTP client a gateway's outbound half uses: its timeout, no redirects (a redirect would carry the key,
/// `X-Api-Key` or a bearer token, to whatever host it names), one pool for every session.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("autoseen/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Sends a request and reads what its answer means: any 2xx is success, an error answer is `classify`'s.
pub(crate) async fn answer(request: reqwest::RequestBuilder, classify: Classify) -> SendResult {
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

/// The usual reading of an error status: 408, 429 and 5xx retry; 401 and 403 are the credentials; the rest is
/// permanent.
pub(crate) fn classify(
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
) -> SendError {
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
pub(crate) async fn read_capped(mut response: reqwest::Response) -> String {
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

pub(crate) fn describe_transport_error(e: &reqwest::Error) -> String {
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
pub(crate) fn retry_after(headers: &HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
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
}
